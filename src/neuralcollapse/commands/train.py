"""``neuralcollapse train``: train a config into a run directory and print the result."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralcollapse.train.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    to_yaml,
)
from neuralcollapse.train.distributed import (
    DistContext,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from neuralcollapse.train.recipes import resolve_config_path
from neuralcollapse.train.trainer import Trainer, default_run_dir

# What a resumed run may change: how long it trains and how it logs.
RESUMABLE_CHANGES = ("train.epochs", "log.", "eval.every")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a config (default: the embedded digits long-tailed demo)",
        description="Train a YAML recipe into a run directory. Without --config, trains the "
        "embedded default (digits, long-tailed ratio 10, fixed ETF + dot-regression).",
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
        help="continue the run in RUN_DIR from checkpoints/last.pt",
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
    saved = load_config(run_dir / "config.yaml")
    values = config_to_dict(saved)
    updated = config_from_dict(apply_overrides(values, overrides))
    new = config_to_dict(updated)
    for section, keys in values.items():
        if not isinstance(keys, dict):
            continue
        for key, value in keys.items():
            dotted = f"{section}.{key}"
            if new[section][key] != value and not dotted.startswith(RESUMABLE_CHANGES):
                raise ConfigError(
                    f"{dotted} cannot change when resuming (was {value!r}); only "
                    f"{', '.join(RESUMABLE_CHANGES)} can"
                )
    return updated


def format_result(summary: dict) -> str:
    """The final table: accuracy overall and by shot group, and the collapse metrics."""
    final, best = summary["final"], summary["best"]

    def pct(value):
        return "  n/a" if value is None else f"{100 * value:5.1f}"

    def sci(value):
        return "n/a" if value is None else f"{value:.3g}"

    lines = [f"{'test set':16}{'top1':>7}{'balanced':>10}{'many':>7}{'medium':>8}{'few':>7}"]
    for label, row in (("final", final), (f"best (epoch {summary['best_epoch']})", best)):
        lines.append(
            f"{label:16}{pct(row['top1']):>7}{pct(row['balanced']):>10}"
            f"{pct(row['many']):>7}{pct(row['medium']):>8}{pct(row['few']):>7}"
        )
    test, train = final["collapse"], final["train"]["collapse"]
    lines.append("")
    lines.append(f"{'collapse (final)':16}{'nc1':>10}{'nc2 (ETF dist)':>16}{'nc3':>10}{'nc4':>10}")
    for label, report in (("train features", train), ("test features", test)):
        lines.append(
            f"{label:16}{sci(report['nc1']):>10}{sci(report['nc2_etf_distance_means']):>16}"
            f"{sci(report.get('nc3_self_duality')):>10}"
            f"{sci(report.get('nc4_ncc_mismatch')):>10}"
        )
    severity = final.get("hierarchical")
    if severity is not None:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in severity.items() if k != "num_samples")
        lines += ["", f"hierarchy (test): {shown}"]
    lines.append(
        "(accuracy in %; many > 100, medium 20-100, few < 20 training images; "
        "nc4 = fraction of nearest-class-mean mismatches)"
    )
    return "\n".join(lines)


def _config_and_run_dir(args: argparse.Namespace):
    if args.resume is not None:
        if args.config is not None:
            raise ValueError("--resume reads the run's own config.yaml; drop --config")
        return _resume_config(args.resume, args.overrides), args.resume
    config = load_config(resolve_config_path(args.config), args.overrides)
    if args.run_dir is not None:
        return config, args.run_dir
    return config, Path(config.log.run_dir) if config.log.run_dir else default_run_dir(config)


def run(args: argparse.Namespace) -> int:
    config, run_dir = _config_and_run_dir(args)
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    context = init_distributed(config.train.device, config.train.ddp_timeout_s)
    try:
        run_dir = broadcast_object(run_dir, context)  # one timestamped name for all ranks
        return _train(args, config, run_dir, context)
    finally:
        shutdown_distributed()


def _train(args: argparse.Namespace, config, run_dir: Path, context: DistContext) -> int:
    say = print if context.is_main else (lambda *_: None)
    resume = args.resume is not None
    trainer = Trainer(
        config, run_dir, resume=resume, echo=say, stop_after=args.stop_after, context=context
    )
    if resume:
        if context.is_main:
            (run_dir / "config.yaml").write_text(to_yaml(config), encoding="utf-8")
        say(f"resuming {run_dir} at epoch {trainer.epoch}/{config.train.epochs}")
    else:
        processes = f" x {context.world_size} processes" if context.enabled else ""
        say(
            f"training {config.name}: {trainer.data.num_classes} classes, "
            f"{len(trainer.data.train)} train / {len(trainer.data.test)} test samples, "
            f"{config.train.epochs} epochs on {trainer.device}{processes}"
        )
    try:
        summary = trainer.fit()
    except KeyboardInterrupt:
        return 130
    if trainer.epoch < config.train.epochs:
        say(
            f"stopped after epoch {trainer.epoch}; continue with: neuralcollapse train "
            f"--resume {run_dir}"
        )
    say(format_result(summary))
    if trainer.report_path is not None:
        say(f"report: {trainer.report_path}")
    say(f"run directory: {run_dir}")
    return 0
