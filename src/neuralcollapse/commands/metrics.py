"""``neuralcollapse metrics FILE``: neural-collapse metrics of saved features.

numpy, torch and the metrics are imported when the command runs, not here, so that
``neuralcollapse metrics --help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuralcollapse._internal.files import check_output_file
from neuralcollapse._internal.jsonio import write_json
from neuralcollapse._internal.text import format_sci
from neuralcollapse.errors import UsageError, usage_errors

if TYPE_CHECKING:
    import torch

    from neuralcollapse.metrics import CollapseReport

# Size limits of the command, this project's setting: a 10,000-class K x K float64 matrix
# takes 800 MB, an 8,192-wide d x d one 512 MiB (--max-classes and --max-dim raise them).
MAX_CLASSES = 10_000
MAX_DIM = 8_192
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
        "and optionally 'bias', such as an nn.Linear state dict, or with 'frame', such as "
        "the state dict of the package's FixedFrameHead)",
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
    parser.add_argument(
        "--max-classes",
        type=int,
        default=MAX_CLASSES,
        metavar="K",
        help=f"refuse more classes than this (default {MAX_CLASSES:,}): the metrics hold "
        "K x K and K x d float64 matrices",
    )
    parser.add_argument(
        "--max-dim",
        type=int,
        default=MAX_DIM,
        metavar="D",
        help=f"refuse features of more dimensions than this (default {MAX_DIM:,}): the "
        "metrics hold d x d float64 matrices (512 MiB each at the default)",
    )
    return parser


def check_sizes(
    features: torch.Tensor,
    labels: torch.Tensor,
    classifier: torch.Tensor | None,
    args: argparse.Namespace,
) -> None:
    """Before anything is allocated: the class count (given, from the classifier or from
    the largest label) and the feature dimension within ``--max-classes`` and
    ``--max-dim``, so that a label of 10^9 or a 50,000-wide row is one line, not an
    out-of-memory kill."""
    dim = features.shape[-1] if features.ndim else 0
    if dim > args.max_dim:
        raise UsageError(
            f"{args.file}: features have d = {dim:,} dimensions, more than --max-dim "
            f"{args.max_dim:,} (the metrics hold d x d float64 matrices, "
            f"{8 * dim * dim / 2**30:.1f} GiB each); raise --max-dim if the memory is there"
        )
    counts = {"--num-classes": args.num_classes}
    if classifier is not None and classifier.ndim >= 1:
        counts["the classifier's rows"] = classifier.shape[0]
    if labels.numel() and not labels.is_floating_point() and not labels.is_complex():
        with contextlib.suppress(RuntimeError):  # a dtype torch cannot reduce: checked later
            counts["the largest label + 1"] = int(labels.max()) + 1
    for source, count in counts.items():
        if count is not None and count > args.max_classes:
            raise UsageError(
                f"{args.file}: {source} gives {count:,} classes, more than --max-classes "
                f"{args.max_classes:,} (the metrics hold K x K float64 matrices); check "
                "the labels, or raise --max-classes if they are right"
            )


def _require_file(path: Path, what: str, suffixes: tuple[str, ...]) -> None:
    if path.suffix not in suffixes:
        raise UsageError(f"{what} must end in one of {suffixes}, got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")


def _numpy_file(path: Path) -> Any:
    """``np.load`` of a .npy or .npz file without pickles; a damaged, foreign or pickled
    file is a UsageError naming it."""
    import zipfile
    import zlib

    import numpy as np

    kind = "NumPy .npz archive (numpy.savez)" if path.suffix == ".npz" else ".npy file"
    magic = b"PK" if path.suffix == ".npz" else b"\x93NUMPY"
    with open(path, "rb") as handle:
        if handle.read(len(magic)) != magic:
            raise UsageError(
                f"cannot read {str(path)!r} as a {kind}: it does not start like one (text or "
                "another format); save it with numpy.savez or numpy.save"
            )
    try:
        loaded = np.load(path, allow_pickle=False)
        if path.suffix != ".npz":
            return loaded
        with loaded as archive:
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not a zip archive of arrays")
            return {name: archive[name] for name in archive.files}
    except (
        OSError,
        EOFError,
        KeyError,
        ValueError,
        RuntimeError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "pickle" in reason or "Object arrays" in reason:
            reason = "it holds Python objects (pickled data), which are never loaded"
        raise UsageError(
            f"cannot read {str(path)!r} as a {kind} of numbers: {reason[:160]}"
        ) from None


def _load_mapping(path: Path) -> dict[str, Any]:
    """Arrays saved under names: a .pt dict or a .npz archive (no pickled objects)."""
    import torch

    if path.suffix == ".npz":
        return _numpy_file(path)
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

    if key not in mapping:
        keys = sorted(k for k in mapping if k)
        raise UsageError(
            f"{str(path)!r} has no {key!r} entry (it has {keys}); save it under {key!r}"
        )
    return _as_tensor(mapping[key], f"{key!r} in {str(path)!r}")


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    """``value`` (a tensor or a NumPy array of numbers) as a tensor; strings, objects,
    complex numbers and other types are a UsageError naming ``what``."""
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            kind = _KIND_NAMES.get(value.dtype.kind, "no numbers")
            raise UsageError(
                f"{what} holds {value.dtype} values ({kind}); save real numbers (features "
                "as floats, labels as integers)"
            )
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{what} is a {type(value).__name__}, not an array; save a tensor")
    if value.is_complex():
        raise UsageError(f"{what} holds complex numbers ({value.dtype}); save real numbers")
    return value


_KIND_NAMES = {
    "U": "text",
    "S": "bytes",
    "O": "Python objects",
    "c": "complex numbers",
    "M": "dates",
    "m": "time spans",
    "V": "raw records",
}


def load_features(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, labels)`` from a .pt dict or an .npz archive."""
    _require_file(path, "FILE", FEATURE_SUFFIXES)
    mapping = _load_mapping(path)
    return _tensor(mapping, "features", path), _tensor(mapping, "labels", path)


def _load_single(path: Path, what: str, key: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A tensor file, or a dict holding ``key`` (and maybe 'bias'): returns (tensor, bias)."""

    _require_file(path, what, TENSOR_SUFFIXES)
    if path.suffix == ".npy":
        return _as_tensor(_numpy_file(path), f"{what} {str(path)!r}"), None
    mapping = _load_mapping(path)
    if "" in mapping:
        return _as_tensor(mapping[""], f"{what} {str(path)!r}"), None
    if path.suffix == ".npz" and len(mapping) == 1:
        return _as_tensor(next(iter(mapping.values())), f"{what} {str(path)!r}"), None
    if key == "weight" and "weight" not in mapping and "frame" in mapping:
        # A FixedFrameHead state dict: its rows are the frame; it has no bias.
        return _tensor(mapping, "frame", path), None
    bias = mapping.get("bias") if key == "weight" else None
    if bias is not None:
        bias = _as_tensor(bias, f"'bias' in {str(path)!r}")
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

    if args.json is not None:
        check_output_file(args.json, "--json")
    features, labels = load_features(args.file)
    classifier = bias = None
    if args.classifier is not None:
        classifier, bias = _load_single(args.classifier, "--classifier", "weight")
    if args.bias is not None:
        if classifier is None:
            raise UsageError("--bias needs --classifier; pass the classifier rows too")
        bias, _ = _load_single(args.bias, "--bias", "bias")
    check_sizes(features, labels, classifier, args)
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
