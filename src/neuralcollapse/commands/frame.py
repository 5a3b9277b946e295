"""``neuralcollapse frame etf|spread``: build a fixed frame, print its geometry, save it."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from neuralcollapse.frames import (
    FrameGeometry,
    describe,
    hierarchy_aware_frame,
    hierarchy_similarity,
    simplex_etf,
    spread_frame,
)
from neuralcollapse.hierarchy import Hierarchy

KINDS = ("etf", "spread", "haframe")
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
        choices=KINDS,
        help="etf: simplex ETF; spread: spread frame; haframe: hierarchy-aware frame",
    )
    parser.add_argument("--classes", type=int, metavar="K", help="classes K >= 2 (etf, spread)")
    parser.add_argument(
        "--dim", type=int, metavar="D", help="feature dim d (haframe: default rank of S)"
    )
    parser.add_argument(
        "--hierarchy",
        type=Path,
        metavar="FILE",
        help="haframe: class tree (CSV child,parent; nested .json; or CSV leaf,level1,...)",
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
        raise ValueError(f"--out must end in .pt or .npy, got {str(path)!r}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"--out folder {str(path.parent)!r} does not exist")


def _save(frame: torch.Tensor, path: Path) -> None:
    """Write atomically: a crash never leaves a half-written frame under the final name."""
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            if path.suffix == ".pt":
                torch.save(frame.cpu(), tmp)
            else:
                np.save(tmp, frame.cpu().numpy())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


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
    if args.kind == "haframe":
        if args.hierarchy is None:
            raise ValueError("haframe needs --hierarchy FILE (the class tree)")
        if args.classes is not None:
            raise ValueError("haframe takes its classes from --hierarchy; drop --classes")
        tree = Hierarchy.load(args.hierarchy)
        target = hierarchy_similarity(tree, gamma=args.gamma)
        frame = hierarchy_aware_frame(
            tree, gamma=args.gamma, dim=args.dim, seed=args.seed, dtype=dtype
        )
        by_height = target.by_lca_height(tree.lca_heights())
        extra = {
            "gamma": args.gamma,
            "s": target.s,
            "similarity_rank": target.rank,
            "cosine_by_lca_height": {str(h): c for h, c in by_height.items()},
        }
        return frame, target, extra
    for name in ("classes", "dim"):
        if getattr(args, name) is None:
            raise ValueError(f"{args.kind} needs --{name}")
    if args.kind == "etf":
        return simplex_etf(args.classes, args.dim, seed=args.seed, dtype=dtype), None, {}
    frame = spread_frame(args.classes, args.dim, seed=args.seed, steps=args.steps, dtype=dtype)
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
        print(json.dumps(payload, indent=2))
    else:
        if extra:
            print(_format_haframe(extra))
        print(format_geometry(args.kind, geometry))
        if args.out is not None:
            print(f"saved the ({geometry.num_classes}, {geometry.dim}) frame to {args.out}")
    return 0
