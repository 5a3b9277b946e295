"""``neuralcollapse train``: train a config into a run directory and print the result.

The training modules (and torch) are imported by :func:`run`, not here, so that
``neuralcollapse train --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from neuralcollapse._internal.text import format_percent, format_sci
from neuralcollapse.errors import UsageError

if TYPE_CHECKING:
    from neuralcollapse.train.distributed import DistContext


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a config (default: the embedded digits long-tailed demo)",
        description="Train a YAML recipe into a run directory. Without --config, trains the "
        "embedded default (digits, long-tailed ratio 10, fixed ETF + dot-regression). Exit "
        "status: 0 done, 1 the run started and failed (the message says what was saved), "
        "2 bad input (nothing was started), 130 interrupted.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE|NAME",
        help="a YAML file, or the name of a packaged recipe (default digits_lt)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optim.lr=0.05 data.imbalance_ratio=50",
    )
    parser.add_argument("--run-dir", type=Path, help="default runs/<config name>-<timestamp>")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from checkpoints/last.pt (only train.epochs, "
        "eval.every, eval.collapse_every, eval.train_subsample and log.* may be overridden)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="EPOCHS",
        help="stop after this many epochs, resumable (as an interruption)",
    )
    return parser


def _resume_config(run_dir: Path, overrides: list[str]):
    """The run's own config.yaml plus overrides; the Trainer checks it against the
    checkpoint's config under the resume policy."""
    from neuralcollapse.train.config import (
        apply_overrides,
        config_from_dict,
        config_to_dict,
        load_config,
    )

    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise UsageError(f"cannot resume {str(run_dir)!r}: it has no config.yaml")
    saved = load_config(config_file)
    return config_from_dict(apply_overrides(config_to_dict(saved), overrides))


def format_result(summary: dict) -> str:
    """The final table: accuracy overall and by shot group, and the collapse metrics."""
    final, best = summary["final"], summary["best"]
    lines = [f"{'test set':16}{'top1':>7}{'balanced':>10}{'many':>7}{'medium':>8}{'few':>7}"]
    rows = [("final", final)]
    if best is not None:  # None without a split to choose on (train.select_best_on)
        rows.append((f"best ({best.get('split', 'test')}, {summary['best_epoch']})", best))
    for label, row in rows:
        cells = (format_percent(row[key]) for key in ("top1", "balanced", "many", "medium", "few"))
        widths = (7, 10, 7, 8, 7)
        lines.append(
            f"{label:16}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        )
    test, train = final["collapse"], final["train"]["collapse"]
    lines.append("")
    lines.append(f"{'collapse (final)':16}{'nc1':>10}{'nc2 (ETF dist)':>16}{'nc3':>10}{'nc4':>10}")
    for label, report in (("train features", train), ("test features", test)):
        lines.append(
            f"{label:16}{format_sci(report['nc1']):>10}"
            f"{format_sci(report['nc2_etf_distance_means']):>16}"
            f"{format_sci(report.get('nc3_self_duality')):>10}"
            f"{format_sci(report.get('nc4_ncc_mismatch')):>10}"
        )
    severity = final.get("hierarchical")
    if severity is not None:
        shown = ", ".join(
            f"{k} {format_sci(v, digits=4)}" for k, v in severity.items() if k != "num_samples"
        )
        lines += ["", f"hierarchy (test): {shown}"]
    lines.append(
        "(accuracy in %; many > 100, medium 20-100, few < 20 training images; "
        "nc4 = fraction of nearest-class-mean mismatches)"
    )
    return "\n".join(lines)


def _config_and_run_dir(args: argparse.Namespace):
    from neuralcollapse.train.config import load_config
    from neuralcollapse.train.recipes import resolve_config_path

    if args.resume is not None:
        if args.config is not None:
            raise UsageError("--resume reads the run's own config.yaml; drop --config")
        if args.run_dir is not None:
            raise UsageError("--resume names the run directory; drop --run-dir")
        return _resume_config(args.resume, args.overrides), args.resume
    config = load_config(resolve_config_path(args.config), args.overrides)
    return config, args.run_dir


def run(args: argparse.Namespace) -> int:
    from neuralcollapse.train.config import to_yaml
    from neuralcollapse.train.distributed import init_distributed, shutdown_distributed

    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError(f"--stop-after must be >= 1 epoch, got {args.stop_after}")
    config, run_dir = _config_and_run_dir(args)
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    context = init_distributed(config.train.device, config.train.ddp_timeout_s)
    try:
        return _train(args, config, run_dir, context)
    finally:
        shutdown_distributed()


def _train(args: argparse.Namespace, config, run_dir: Path | None, context: DistContext) -> int:
    from neuralcollapse.train.trainer import Trainer

    say = print if context.is_main else (lambda *_: None)
    resume = args.resume is not None
    trainer = Trainer(
        config, run_dir, resume=resume, echo=say, stop_after=args.stop_after, context=context
    )
    try:
        if resume:
            say(f"resuming {trainer.run_dir} at epoch {trainer.epoch}/{config.train.epochs}")
        else:
            processes = f" x {context.world_size} processes" if context.enabled else ""
            say(
                f"training {config.name} into {trainer.run_dir}: {trainer.data.num_classes} "
                f"classes, {len(trainer.data.train)} train / {len(trainer.data.test)} test "
                f"samples, {config.train.epochs} epochs on {trainer.device}{processes}"
            )
        try:
            summary = trainer.fit()
        except KeyboardInterrupt:
            return 130
    finally:
        trainer.close()
    if trainer.epoch < config.train.epochs:
        say(
            f"stopped after epoch {trainer.epoch}; continue with: neuralcollapse train "
            f"--resume {trainer.run_dir}"
        )
    say(format_result(summary))
    if context.is_main and config.log.report:
        say(_write_report(trainer.run_dir))
    say(f"run directory: {trainer.run_dir}")
    return 0


def _write_report(run_dir: Path) -> str:
    """The HTML report of the finished run. The run is already saved, so a report that
    cannot be written (e.g. matplotlib missing) is reported and skipped, never fatal."""
    try:
        from neuralcollapse.report import write_report

        return f"report: {write_report([run_dir])}"
    except Exception as exc:  # noqa: BLE001 - any failure here must not lose the run
        return (
            f"the HTML report could not be written ({type(exc).__name__}: {exc}); "
            f"try: neuralcollapse report {run_dir}"
        )
