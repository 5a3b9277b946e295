"""``neuralcollapse eval``: re-evaluate a run directory or a checkpoint.

The training modules (and torch) are imported by :func:`run`, not here, so that
``neuralcollapse eval --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from neuralcollapse._internal.files import check_output_file
from neuralcollapse._internal.jsonio import write_json
from neuralcollapse._internal.names import ACCURACY_KEYS, COLLAPSE_KEYS
from neuralcollapse._internal.text import format_percent, format_sci

if TYPE_CHECKING:
    from neuralcollapse.train.distributed import DistContext

# "all": the training, validation (when the run held one out) and test splits
SPLITS = {
    "test": ("test",),
    "train": ("train",),
    "val": ("val",),
    "both": ("train", "test"),
    "all": ("train", "val", "test"),
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="re-evaluate a run directory or checkpoint",
        description="Rebuild the model and data of a checkpoint's config, load its weights "
        "and print accuracy by shot group and the collapse metrics. Under torchrun every "
        "process evaluates a disjoint shard and the statistics are summed exactly.",
    )
    parser.add_argument("target", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument(
        "--checkpoint",
        choices=("auto", "best", "last"),
        default="auto",
        help="which checkpoint of a run directory: best (the epoch chosen on the validation "
        "split; only runs with one have it), last, or auto (default): best when the run has "
        "it, else last",
    )
    parser.add_argument(
        "--split",
        choices=tuple(SPLITS),
        default="test",
        help="test (default), train, val (runs with a validation split), both = train + "
        "test, all = train + val (when held out) + test",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    return parser


def _checkpoint_path(target: Path, which: str) -> Path:
    from neuralcollapse.rundir import RunDir

    return RunDir(target).pick_checkpoint(which) if target.is_dir() else target


def format_evaluation(results: dict) -> str:
    lines = [
        f"{'split':8}{'top1':>7}{'balanced':>10}{'many':>7}{'medium':>8}{'few':>7}"
        f"{'nc1':>10}{'nc2':>8}{'nc3':>8}{'nc4':>8}"
    ]
    for split, r in results.items():
        c = r["collapse"]
        accuracy = (format_percent(r[key]) for key in ACCURACY_KEYS)
        metrics = (format_sci(c[key]) for key in COLLAPSE_KEYS)
        widths = (7, 10, 7, 8, 7, 10, 8, 8, 8)
        cells = (*accuracy, *metrics)
        lines.append(
            f"{split:8}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from neuralcollapse.train.checkpoint import load_checkpoint
    from neuralcollapse.train.config import config_from_dict
    from neuralcollapse.train.distributed import init_distributed, shutdown_distributed

    if args.json is not None:
        check_output_file(args.json, "--json")  # before the evaluation, not after it
    path = _checkpoint_path(args.target, args.checkpoint)
    state = load_checkpoint(path, require=("epoch", "config", "model"))
    config = config_from_dict(state["config"])
    context = init_distributed(args.device, config.train.ddp_timeout_s)
    try:
        return _evaluate(args, path, state, config, context)
    finally:
        shutdown_distributed()


def _evaluate(args, path: Path, state: dict, config, context: DistContext) -> int:
    from neuralcollapse.errors import UsageError
    from neuralcollapse.train.assembly import assemble
    from neuralcollapse.train.evaluation import evaluate_splits

    data, loaders, model = assemble(config, context)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, KeyError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise UsageError(
            f"checkpoint {str(path)!r}: its weights do not fit the model its config builds "
            f"({reason}); the file is damaged or was edited"
        ) from None
    splits = SPLITS[args.split]
    if loaders.val is None:
        if args.split == "val":
            raise UsageError(
                f"{path} is of a run without a validation split (data.val_fraction and "
                "data.val_list unset): choose --split test, train, both or all"
            )
        splits = tuple(split for split in splits if split != "val")
    evaluations = evaluate_splits(
        model,
        loaders,
        data,
        config,
        context.device,
        splits=splits,
        distributed=context.enabled,
    )
    if not context.is_main:
        return 0
    results = {split: evaluation.metrics for split, evaluation in evaluations.items()}
    processes = f" x {context.world_size} processes" if context.enabled else ""
    print(f"{path} (epoch {state['epoch']} of {config.name}, {context.device}{processes})")
    print(format_evaluation(results))
    if args.json is not None:
        write_json(args.json, {"checkpoint": str(path), "epoch": state["epoch"], **results})
        print(f"wrote {args.json}")
    return 0
