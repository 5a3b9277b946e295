"""``neuralcollapse compare``: several configs x seeds, one side-by-side table (mean +- std)."""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
from pathlib import Path
from typing import Any

from neuralcollapse.train.config import load_config
from neuralcollapse.train.recipes import resolve_config_path
from neuralcollapse.train.trainer import Trainer

# (label, where in summary.json, scale for display)
COLUMNS = (
    ("top1", ("final", "top1"), 100),
    ("best top1", ("best", "top1"), 100),
    ("balanced", ("final", "balanced"), 100),
    ("many", ("final", "many"), 100),
    ("medium", ("final", "medium"), 100),
    ("few", ("final", "few"), 100),
    ("nc1 train", ("final", "train", "collapse", "nc1"), 1),
    ("nc1 test", ("final", "collapse", "nc1"), 1),
    ("best epoch", ("best_epoch",), 1),
)
# Shown only when some run has a class hierarchy.
HIERARCHY_COLUMNS = (
    ("severity", ("final", "hierarchical", "mistake_severity"), 1),
    ("hier_dist@1", ("final", "hierarchical", "hier_dist@1"), 1),
    ("hier_dist@5", ("final", "hierarchical", "hier_dist@5"), 1),
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="train several configs over seeds and tabulate mean +- std",
        description="Train every config with seeds 0..N-1 (train.seed), then print one table "
        "of final accuracies (in %%), best top-1 and NC1 as mean +- std over seeds.",
    )
    parser.add_argument(
        "configs",
        nargs="+",
        metavar="CONFIG",
        help="YAML files or packaged recipe names; KEY=VALUE items are "
        "overrides applied to every config",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds per config (default 1)")
    parser.add_argument(
        "--runs-dir", type=Path, help="where run directories go (default runs/compare-<timestamp>)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the table as JSON")
    return parser


def _lookup(summary: dict[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return float(value)


def _columns(summaries: list[dict[str, Any]]) -> tuple:
    hierarchical = any(_lookup(s, HIERARCHY_COLUMNS[0][1]) is not None for s in summaries)
    return COLUMNS + HIERARCHY_COLUMNS if hierarchical else COLUMNS


def _aggregate(summaries: list[dict[str, Any]], columns: tuple) -> dict[str, dict]:
    table = {}
    for label, path, _ in columns:
        values = [v for v in (_lookup(s, path) for s in summaries) if v is not None]
        values = [v for v in values if not math.isnan(v)]
        table[label] = {
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
            "n": len(values),
        }
    return table


def format_table(rows: dict[str, dict[str, dict]], seeds: int, columns: tuple = COLUMNS) -> str:
    width = max(len(name) for name in rows) + 2
    header = f"{'config':<{width}}" + "".join(f"{label:>18}" for label, _, _ in columns)
    lines = [header]
    for name, table in rows.items():
        cells = []
        for label, _, scale in columns:
            cell = table[label]
            if cell["mean"] is None:
                text = "n/a"
            elif scale == 100:
                text = f"{100 * cell['mean']:.1f} +- {100 * cell['std']:.1f}"
            elif label in ("severity", "hier_dist@1", "hier_dist@5"):
                text = f"{cell['mean']:.3f} +- {cell['std']:.3f}"
            elif label == "best epoch":
                text = f"{cell['mean']:.1f} +- {cell['std']:.1f}"
            else:
                text = f"{cell['mean']:.2e} +- {cell['std']:.0e}"
            cells.append(f"{text:>18}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    lines.append(
        f"(accuracies in %, mean +- std over {seeds} seed(s); final = last epoch, "
        "best = highest test top-1 over epochs)"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    overrides = [item for item in args.configs if "=" in item]
    names = [item for item in args.configs if "=" not in item]
    if not names:
        raise ValueError("give at least one config to compare")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    configs = [load_config(resolve_config_path(n), overrides) for n in names]  # check all first
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_dir = args.runs_dir or Path("runs") / f"compare-{stamp}"
    collected: dict[str, list[dict[str, Any]]] = {}
    for index, (name, config) in enumerate(zip(names, configs, strict=True)):
        summaries = []
        for seed in range(args.seeds):
            seeded = load_config(resolve_config_path(name), [*overrides, f"train.seed={seed}"])
            run_dir = runs_dir / f"{index}-{config.name}-seed{seed}"
            print(f"training {config.name} seed {seed} -> {run_dir}", flush=True)
            summaries.append(Trainer(seeded, run_dir).fit())
        label = config.name if config.name not in collected else f"{config.name} #{index}"
        collected[label] = summaries
    columns = _columns([s for runs in collected.values() for s in runs])
    rows = {label: _aggregate(summaries, columns) for label, summaries in collected.items()}
    runs = {label: [s["run_dir"] for s in summaries] for label, summaries in collected.items()}
    print(format_table(rows, args.seeds, columns))
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {"seeds": args.seeds, "overrides": overrides, "table": rows, "runs": runs}, indent=2
            )
            + "\n"
        )
        print(f"wrote {args.json}")
    return 0
