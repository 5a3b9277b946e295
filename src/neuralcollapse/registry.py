"""Named extension points in the style of timm's ``register_model``: losses, data sets and
frames are each one decorated function, found by name from a config.

A registry maps a name to an :class:`Entry`: the function that builds the thing, an
optional options dataclass (the entry's own config keys, read from the config section's
``options`` mapping and checked like every other key: types, bounds, YAML 1.1 rules) and
free-form metadata the builder's caller reads (``reads="features"`` for a loss, ...).

What a builder is called with: a loss builder gets a
:class:`neuralcollapse.losses.LossContext` and returns an ``nn.Module`` (metadata
``reads="logits"`` or ``"features"``, ``weighted``, ``hierarchy``); a frame builder gets a
:class:`neuralcollapse.frames.FrameRequest` and returns the (K, d) frame (metadata
``hierarchy``, ``canonical``, ``min_dim``); a data set builder is described in
:mod:`neuralcollapse.data`.

The package's own entries live beside the code they build and are registered when their
module is imported; :data:`PROVIDERS` names those modules so that listing or looking up a
name imports them first. Entries from outside the package (a user's module, a test) are
registered by importing the module that decorates them before the config is loaded; the
``imports`` list of a config does that for the command line.

This module imports neither torch nor numpy: the command line's ``--help`` pages use it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from neuralcollapse.config import from_dict
from neuralcollapse.errors import ConfigError

__all__ = [
    "DATASETS",
    "FRAMES",
    "LOSSES",
    "PROVIDERS",
    "Entry",
    "Registry",
    "import_modules",
    "register_dataset",
    "register_frame",
    "register_loss",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """One registered name: ``build`` makes the thing, ``options`` (a dataclass type or
    None) declares the entry's own config keys, ``meta`` what its callers need to know."""

    name: str
    build: Callable[..., Any]
    options: type | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        """First line of the builder's docstring (for listings)."""
        doc = (self.build.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    def parse_options(self, values: Mapping[str, Any] | None, key: str) -> Any:
        """The options dataclass filled from ``values`` (the section's ``options``
        mapping, named ``key`` in messages); None when the entry declares no options.

        Raises:
            ConfigError: an unknown option, a bad value, or options given to an entry that
                declares none.
        """
        if self.options is None:
            if values:
                raise ConfigError(
                    f"{key}: {self.name!r} takes no options, got {', '.join(map(str, values))}"
                )
            return None
        return from_dict(self.options, dict(values or {}), prefix=f"{key}.")


class Registry(Generic[F]):
    """Names -> :class:`Entry` for one kind of thing (``kind``), chosen by the config key
    ``key`` (used in error messages: ``loss.name='x' is not registered ...``)."""

    def __init__(self, kind: str, key: str, *, also: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.key = key
        # values the config key takes besides registered names (head.kind: "learnable"),
        # listed in the unknown-name error and refused as entry names
        self.also = also
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, options: type | None = None, replace: bool = False, **meta: Any
    ) -> Callable[[F], F]:
        """Decorator: register the decorated builder under ``name``.

        ``options`` must be a dataclass type (its fields are the entry's config keys).
        Registering a taken name is an error unless ``replace`` is true, so two modules
        can never silently shadow each other.
        """
        if not isinstance(name, str) or not name or name != name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if options is not None and not dataclasses.is_dataclass(options):
            raise TypeError(f"options of {self.kind} {name!r} must be a dataclass type")

        if name in self.also:
            raise ValueError(f"{name!r} is reserved for {self.key} and cannot name a {self.kind}")

        def decorate(build: F) -> F:
            if name in self._entries and not replace:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (by "
                    f"{self._entries[name].build.__module__}); pass replace=True to override"
                )
            self._entries[name] = Entry(name, build, options, dict(meta))
            return build

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register toy entries clean up with this)."""
        self._entries.pop(name, None)

    def _load_providers(self) -> None:
        import_modules(PROVIDERS.get(self.kind, ()))

    def get(self, name: str) -> Entry:
        """The entry registered as ``name``.

        Raises:
            ConfigError: one line naming the value and every registered name.
        """
        if name not in self._entries:
            self._load_providers()
        if name not in self._entries:
            known = ", ".join((*self.also, *self.names()))
            raise ConfigError(
                f"{self.key}={name!r} is not a registered {self.kind}; choose one of {known} "
                f"(or register your own with neuralcollapse.registry.register_{self.kind} and "
                "list its module under imports:)"
            )
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted (the package's own entries included)."""
        self._load_providers()
        return tuple(sorted(self._entries))

    def entries(self) -> Iterator[Entry]:
        """Every entry, sorted by name."""
        for name in self.names():
            yield self._entries[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self.names())


#: The package modules that register each kind's own entries (imported on first lookup).
PROVIDERS: dict[str, tuple[str, ...]] = {
    "loss": ("neuralcollapse.losses",),
    "dataset": ("neuralcollapse.data",),
    "frame": ("neuralcollapse.frames",),
}

LOSSES: Registry = Registry("loss", "loss.name")
DATASETS: Registry = Registry("dataset", "data.name")
FRAMES: Registry = Registry("frame", "head.kind", also=("learnable",))

register_loss = LOSSES.register
register_dataset = DATASETS.register
register_frame = FRAMES.register


def import_modules(names: Iterator[str] | tuple[str, ...] | list[str]) -> None:
    """Import each module by dotted name (registering what it decorates).

    Raises:
        ConfigError: a module that cannot be imported, named with the reason.
    """
    for module in names:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"imports: cannot import {module!r} ({exc}); put the module on PYTHONPATH or "
                "install its package"
            ) from exc
