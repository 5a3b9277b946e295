"""Names the command line shows before anything heavy is imported: the frame kinds, the
LCA distance conventions and the shipped class trees. Their modules (``frames``,
``hierarchy``) import torch; these tuples and dicts are defined here, once, so that
``--help`` pages can list them without it."""

from __future__ import annotations

__all__ = [
    "BUILTIN_HIERARCHIES",
    "BUILTIN_PREFIX",
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "FRAME_KINDS",
]

#: Frames :func:`neuralcollapse.frames.build_frame` builds.
FRAME_KINDS = ("etf", "spread", "haframe")
#: How a tree turns into LCA distances (docs/theory.md §7): "level" (deepest leaf depth
#: minus the depth of the lowest common ancestor) or "height" (the ancestor's longest
#: way down to a leaf); equal on balanced trees.
CONVENTIONS = ("level", "height")
DEFAULT_CONVENTION = "level"
#: Class trees shipped inside the package: name -> file under neuralcollapse/hierarchies.
BUILTIN_HIERARCHIES = {"cifar100": "cifar100.csv"}
BUILTIN_PREFIX = "builtin:"
