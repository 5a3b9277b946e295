"""``neuralcollapse train``: train a config into a run directory and print the result.

The training modules (and torch) are imported by :func:`run`, not here, so that
``neuralcollapse train --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

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
        help="continue the run in RUN_DIR from its last checkpoint (only train.epochs, "
        "eval.every, eval.collapse_every, eval.train_subsample and log.* may be overridden)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (YAML, every key) and exit; a comment on each line "
        "says where the value came from: default, a recipe or base file, or override",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="EPOCHS",
        help="stop after this many epochs, resumable (as an interruption)",
    )
    return parser


def _config_and_run_dir(args: argparse.Namespace):
    from neuralcollapse.train.launch import run_config

    if args.resume is not None and args.run_dir is not None:
        raise UsageError("--resume names the run directory; drop --run-dir")
    config = run_config(args.config, args.overrides, resume=args.resume)
    return config, args.resume if args.resume is not None else args.run_dir


def run(args: argparse.Namespace) -> int:
    from neuralcollapse.train.distributed import init_distributed, shutdown_distributed

    if args.stop_after is not None and args.stop_after < 1:
        raise UsageError(f"--stop-after must be >= 1 epoch, got {args.stop_after}")
    config, run_dir = _config_and_run_dir(args)
    if args.print_config:
        from neuralcollapse.train.recipes import config_origins, format_origins

        origins = config_origins(args.config, args.overrides, args.resume)
        print(format_origins(config, *origins))
        return 0
    context = init_distributed(config.train.device, config.train.ddp_timeout_s)
    try:
        return _train(args, config, run_dir, context)
    finally:
        shutdown_distributed()


def _train(args: argparse.Namespace, config, run_dir: Path | None, context: DistContext) -> int:
    """Train (the Trainer says what it does and writes, the report included) and map an
    interruption to exit status 130."""
    from neuralcollapse.train.trainer import Trainer

    say = print if context.is_main else (lambda *_: None)
    resume = args.resume is not None
    trainer = Trainer(
        config, run_dir, resume=resume, echo=say, stop_after=args.stop_after, context=context
    )
    try:
        trainer.fit()
    except KeyboardInterrupt:
        return 130
    finally:
        trainer.close()
    say(f"run directory: {trainer.run_dir}")
    return 0
