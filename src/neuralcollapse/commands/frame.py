"""``neuralcollapse frame etf|spread``: build a fixed frame, print its geometry, save it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from neuralcollapse._internal.names import CONVENTIONS, DEFAULT_CONVENTION, FRAME_KINDS
from neuralcollapse.errors import UsageError, usage_errors

if TYPE_CHECKING:  # torch, numpy and the frames are imported by run(), not by --help
    import torch

    from neuralcollapse.frames import FrameGeometry

SUFFIXES = (".pt", ".npy")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "frame",
        help="build a fixed class frame and print its geometry",
        description=(
            "Build a simplex ETF (needs dim >= classes - 1) or a spread frame (any size: "
            "the largest pairwise cosine minimised numerically), print its geometry, and "
            "optionally save it."
        ),
    )
    parser.add_argument(
        "kind",
        choices=FRAME_KINDS,
        help="etf: simplex ETF; spread: spread frame; haframe: hierarchy-aware frame",
    )
    parser.add_argument("--classes", type=int, metavar="K", help="classes K >= 2 (etf, spread)")
    parser.add_argument(
        "--dim", type=int, metavar="D", help="feature dim d (haframe: default rank of S)"
    )
    parser.add_argument(
        "--hierarchy",
        metavar="FILE",
        help=(
            "haframe: class tree (CSV child,parent; nested .json; CSV leaf,level1,...), "
            "builtin:cifar100, or a distance file (.npy; making-better-mistakes .pkl[.xz])"
        ),
    )
    parser.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default=DEFAULT_CONVENTION,
        help="haframe: LCA distance of a tree (default level; docs/theory.md §7)",
    )
    parser.add_argument("--gamma", type=float, default=2.0, help="haframe: gamma (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random rotation/start (default 0)")
    parser.add_argument(
        "--steps", type=int, default=1000, help="optimisation steps for spread (default 1000)"
    )
    parser.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="saved dtype"
    )
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="save the (K, d) frame to FILE.pt or FILE.npy"
    )
    parser.add_argument("--json", action="store_true", help="print the geometry as JSON")
    return parser


def _check_out(path: Path) -> None:
    if path.suffix not in SUFFIXES:
        raise UsageError(f"--out must end in .pt or .npy, got {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--out folder {str(path.parent)!r} does not exist")


def _save(frame: torch.Tensor, path: Path) -> None:
    """Write atomically: a crash never leaves a half-written frame under the final name."""
    import numpy as np
    import torch

    from neuralcollapse._internal.files import atomic_write

    if path.suffix == ".pt":
        atomic_write(path, lambda stream: torch.save(frame.cpu(), stream))
    else:
        atomic_write(path, lambda stream: np.save(stream, frame.cpu().numpy()))


def format_geometry(kind: str, geometry: FrameGeometry) -> str:
    """A human-readable table of the frame's geometry."""
    g = geometry
    rows = [
        ("frame", f"{kind}, K={g.num_classes} classes in d={g.dim} dims, rank {g.rank}"),
        ("row norms", f"{g.min_norm:.6f} .. {g.max_norm:.6f}"),
        ("cosine max", f"{g.max_cosine:+.8f}"),
        ("cosine mean", f"{g.mean_cosine:+.8f}"),
        ("cosine min", f"{g.min_cosine:+.8f}"),
        ("best possible max", f"{g.coherence_bound:+.8f}  (gap {g.coherence_gap:.2e})"),
        ("ETF distance", f"{g.etf_distance:.3e}"),
    ]
    if g.target_error is not None:
        rows.append(("max |cos - target|", f"{g.target_error:.3e}"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _build(args: argparse.Namespace, dtype: torch.dtype):
    """(frame, target similarity or None, extra JSON fields)."""
    from neuralcollapse.frames import build_frame, hierarchy_similarity
    from neuralcollapse.hierarchy import distance_matrix, load_hierarchy

    if args.kind == "haframe":
        if args.hierarchy is None:
            raise UsageError("haframe needs --hierarchy FILE (the class tree)")
        if args.classes is not None:
            raise UsageError("haframe takes its classes from --hierarchy; drop --classes")
        with usage_errors("--hierarchy"):
            tree = load_hierarchy(args.hierarchy)
        with usage_errors():
            lca = distance_matrix(tree, convention=args.convention)
            target = hierarchy_similarity(lca, gamma=args.gamma)
            frame = build_frame(
                "haframe",
                None,
                args.dim,
                hierarchy=lca,
                gamma=args.gamma,
                seed=args.seed,
                dtype=dtype,
            )
        by_height = target.by_lca_height(lca)
        extra = {
            "gamma": args.gamma,
            "s": target.s,
            "similarity_rank": target.rank,
            "cosine_by_lca_height": {str(h): c for h, c in by_height.items()},
        }
        return frame, target, extra
    for name in ("classes", "dim"):
        if getattr(args, name) is None:
            raise UsageError(f"{args.kind} needs --{name}")
    with usage_errors():
        frame = build_frame(
            args.kind, args.classes, args.dim, seed=args.seed, steps=args.steps, dtype=dtype
        )
    return frame, None, {}


def _format_haframe(extra: dict) -> str:
    lines = [
        f"HAFrame offset s    {extra['s']:+.6f}  (gamma {extra['gamma']}, rank of S "
        f"{extra['similarity_rank']})",
        "target cosine by LCA height:",
    ]
    lines += [f"  height {h}: {c:+.6f}" for h, c in extra["cosine_by_lca_height"].items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from neuralcollapse._internal.jsonio import dumps
    from neuralcollapse.frames import describe

    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    if args.out is not None:
        _check_out(args.out)  # before the (possibly long) construction
    frame, target, extra = _build(args, dtype)
    geometry = describe(frame, target)
    if args.out is not None:
        _save(frame, args.out)
    if args.json:
        payload = {"kind": args.kind, "seed": args.seed, **extra, **geometry.to_dict()}
        if args.out is not None:
            payload["saved_to"] = str(args.out)
        print(dumps(payload, indent=2))
    else:
        if extra:
            print(_format_haframe(extra))
        print(format_geometry(args.kind, geometry))
        if args.out is not None:
            print(f"saved the ({geometry.num_classes}, {geometry.dim}) frame to {args.out}")
    return 0
