"""``neuralcollapse metrics FILE``: neural-collapse metrics of saved features.

numpy, torch and the metrics are imported when the command runs, not here, so that
``neuralcollapse metrics --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuralcollapse._internal.jsonio import write_json
from neuralcollapse._internal.text import format_sci
from neuralcollapse.errors import UsageError, usage_errors

if TYPE_CHECKING:
    import torch

    from neuralcollapse.metrics import CollapseReport

FEATURE_SUFFIXES = (".pt", ".npz")
TENSOR_SUFFIXES = (".pt", ".npy", ".npz")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "metrics",
        help="neural-collapse metrics (NC1-NC4) of saved features",
        description=(
            "Compute exact float64 neural-collapse metrics of the features and labels in "
            "FILE (.pt: a dict saved with torch.save; .npz: numpy.savez), print them as a "
            "table and optionally write them as JSON. With a classifier, the classifier "
            "metrics (NC2 on W, NC3) and NC4 are included."
        ),
    )
    parser.add_argument(
        "file", type=Path, metavar="FILE", help="features (N, d) and labels (N,) in .pt or .npz"
    )
    parser.add_argument(
        "--classifier",
        type=Path,
        metavar="W",
        help="(K, d) classifier rows in .pt/.npy/.npz (a tensor, or a dict with 'weight' "
        "and optionally 'bias', such as an nn.Linear state dict)",
    )
    parser.add_argument("--bias", type=Path, metavar="B", help="(K,) classifier bias file")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the report to OUT")
    parser.add_argument(
        "--global-mean",
        choices=("weighted", "balanced"),
        default="weighted",
        help="global mean: sample-weighted or mean of class means (default weighted)",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        metavar="K",
        help="number of classes (default: classifier rows, else largest label + 1)",
    )
    return parser


def _require_file(path: Path, what: str, suffixes: tuple[str, ...]) -> None:
    if path.suffix not in suffixes:
        raise UsageError(f"{what} must end in one of {suffixes}, got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")


def _load_mapping(path: Path) -> dict[str, Any]:
    """Arrays saved under names: a .pt dict or a .npz archive (no pickled objects)."""
    import numpy as np
    import torch

    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return {name: torch.from_numpy(archive[name]) for name in archive.files}
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"cannot read {str(path)!r} as a torch.save file of tensors: {reason[:160]}"
        ) from None
    if isinstance(data, torch.Tensor):
        return {"": data}
    if not isinstance(data, dict):
        raise UsageError(f"{str(path)!r} holds a {type(data).__name__}; save a dict of tensors")
    return data


def _tensor(mapping: dict[str, Any], key: str, path: Path) -> torch.Tensor:
    import numpy as np
    import torch

    if key not in mapping:
        keys = sorted(k for k in mapping if k)
        raise UsageError(
            f"{str(path)!r} has no {key!r} entry (it has {keys}); save it under {key!r}"
        )
    value = mapping[key]
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{key!r} in {str(path)!r} is a {type(value).__name__}, not an array")
    return value


def load_features(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)`` from a .pt dict or an .npz archive."""
    _require_file(path, "FILE", FEATURE_SUFFIXES)
    mapping = _load_mapping(path)
    return _tensor(mapping, "features", path), _tensor(mapping, "labels", path)


def _load_single(path: Path, what: str, key: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A tensor file, or a dict holding ``key`` (and maybe 'bias'): returns (tensor, bias)."""
    import numpy as np
    import torch

    _require_file(path, what, TENSOR_SUFFIXES)
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path, allow_pickle=False)), None
    mapping = _load_mapping(path)
    if "" in mapping:
        return mapping[""], None
    if path.suffix == ".npz" and len(mapping) == 1:
        return next(iter(mapping.values())), None
    bias = mapping.get("bias") if key == "weight" else None
    return _tensor(mapping, key, path), bias


def format_report(report: CollapseReport) -> str:
    """A readable two-column table of the report."""
    r = report
    rows: list[tuple[str, str]] = [
        ("samples", f"{r.num_samples} in {r.num_classes} classes, d = {r.dim}"),
        ("class counts", f"min {min(c for c in r.class_counts if c)}, max {max(r.class_counts)}"),
        ("absent classes", _list(r.absent_classes) if r.absent_classes else "none"),
        ("global mean", r.global_mean),
        ("", ""),
        ("NC1  tr(Sw Sb^+)/K", _num(r.nc1)),
        ("     CDNV", _num(r.nc1_cdnv)),
        ("     tr(Sw)/tr(Sb)", _num(r.nc1_trace_ratio)),
        ("     rank of Sb used", str(r.sigma_b_rank)),
    ]
    for label, source in (("means", "means"), ("classifier", "classifier")):
        rows += [
            (f"NC2  {label}: equinorm", _num(getattr(r, f"nc2_equinorm_{source}"))),
            ("     equiangular", _num(getattr(r, f"nc2_equiangular_{source}"))),
            ("     cosine std", _num(getattr(r, f"nc2_cosine_std_{source}"))),
            ("     ETF distance", _num(getattr(r, f"nc2_etf_distance_{source}"))),
        ]
    rows += [
        ("NC3  self-duality (Papyan)", _num(r.nc3_self_duality)),
        ("     Zhu et al.", _num(r.nc3_zhu)),
        ("NC4  NCC mismatch", _num(r.nc4_ncc_mismatch)),
        ("     NCC accuracy", _num(r.ncc_accuracy)),
        ("     classifier accuracy", _num(r.classifier_accuracy)),
        ("", ""),
        ("minority classes", _list(r.minority_classes)),
        ("minority cosine", _num(r.minority_cosine)),
        ("||W mu_G + b||", _num(r.global_mean_logit_norm)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}".rstrip() for name, value in rows)


def _num(value: float | None) -> str:
    return format_sci(value, digits=6, missing="-")


def _list(values: tuple[int, ...], limit: int = 12) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def run(args: argparse.Namespace) -> int:
    from neuralcollapse.metrics import collapse_report

    features, labels = load_features(args.file)
    classifier = bias = None
    if args.classifier is not None:
        classifier, bias = _load_single(args.classifier, "--classifier", "weight")
    if args.bias is not None:
        if classifier is None:
            raise UsageError("--bias needs --classifier; pass the classifier rows too")
        bias, _ = _load_single(args.bias, "--bias", "bias")
    with usage_errors(str(args.file)):
        report = collapse_report(
            features,
            labels,
            classifier=classifier,
            bias=bias,
            global_mean=args.global_mean,
            num_classes=args.num_classes,
        )
    print(format_report(report))
    if args.json is not None:
        write_json(args.json, {"file": str(args.file), **report.to_dict()})
        print(f"wrote {args.json}")
    return 0
