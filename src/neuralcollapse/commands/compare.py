"""``neuralcollapse compare``: variants x seeds, one table, paired differences to the first.

The experiment and training modules (and torch) are imported by :func:`run`, not here,
so that ``neuralcollapse compare --help`` stays instant.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from neuralcollapse._internal.jsonio import write_json
from neuralcollapse._internal.text import format_sci
from neuralcollapse.commands.sweep_options import (
    add_launcher_options,
    make_sweep,
    sigterm_interrupts,
)
from neuralcollapse.errors import UsageError

if TYPE_CHECKING:
    from neuralcollapse.experiments import Column, VariantResult


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="train variants of configs over paired seeds and compare them",
        description="Train every VARIANT with seeds 0..N-1 and print mean +- std per variant "
        "and, for each variant after the first, the paired per-seed difference to the first "
        "(mean +- std, and wins/seeds). A VARIANT is ONE argument: a config name or path, "
        "then that variant's own KEY=VALUE overrides, quoted in the shell, e.g. "
        '"digits_lt head.kind=learnable head.neck=none loss.name=ce". --set applies to '
        "every variant (a variant's own overrides win).",
    )
    parser.add_argument("configs", nargs="+", metavar="VARIANT", help="'CONFIG [KEY=VALUE ...]'")
    parser.add_argument(
        "--set",
        dest="common",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for every variant (repeatable)",
    )
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        default=None,
        metavar="NAME",
        help="label of each variant, in order (repeat once per variant)",
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds per variant (default 1)")
    parser.add_argument(
        "--runs-dir", type=Path, help="where run directories go (default runs/compare-<time>)"
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    add_launcher_options(parser)
    return parser


def _cell(column: Column, mean: float | None, std: float | None) -> str:
    if mean is None:
        return "n/a"
    if column.percent:
        return f"{100 * mean:.1f} +- {100 * std:.1f}"
    if column.label == "best epoch":
        return f"{mean:.1f} +- {std:.1f}"
    return f"{format_sci(mean)} +- {format_sci(std, digits=1)}"


def format_table(
    results: list[VariantResult],
    tables: list[dict[str, dict]],
    paired: list[dict[str, dict]],
    columns: tuple[Column, ...],
    seeds: int,
) -> str:
    width = max(len(r.variant.label) for r in results) + 2
    header = f"{'variant':<{width}}" + "".join(f"{c.label:>18}" for c in columns)
    lines = [header]
    for result, table in zip(results, tables, strict=True):
        cells = (_cell(c, table[c.label]["mean"], table[c.label]["std"]) for c in columns)
        lines.append(f"{result.variant.label:<{width}}" + "".join(f"{t:>18}" for t in cells))
    if len(results) > 1:
        base = results[0].variant.label
        lines += ["", f"paired difference to {base!r} (mean +- std over seeds; wins/seeds)"]
        for result, table in zip(results[1:], paired, strict=True):
            cells = []
            for c in columns:
                entry = table[c.label]
                text = _cell(c, entry["mean"], entry["std"])
                if entry["mean"] is not None:
                    text = (
                        ("+" if entry["mean"] >= 0 else "")
                        + text
                        + f" {entry['wins']}/{entry['seeds']}"
                    )
                cells.append(f"{text:>18}")
            lines.append(f"{result.variant.label:<{width}}" + "".join(cells))
    lines.append(
        f"(accuracies in %, over {seeds} seed(s); final = last epoch, best = the epoch chosen "
        "on the validation split (runs that hold one out); a win is a seed where the variant "
        "beats the first, higher accuracy or lower nc1/severity/best epoch)"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from neuralcollapse.experiments import Interrupted, resolve_variants, run_variants

    variants = resolve_variants(args.configs, common=args.common, labels=args.labels)
    if args.seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {args.seeds}")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_dir = args.runs_dir or Path("runs") / f"compare-{stamp}"
    total = len(variants) * args.seeds
    print(f"comparing {len(variants)} variant(s) x {args.seeds} seed(s) -> {runs_dir}", flush=True)
    partial = False
    with sigterm_interrupts(), make_sweep(args, runs_dir, runs_dir) as sweep:
        try:
            results = run_variants(variants, args.seeds, runs_dir, sweep=sweep)
        except Interrupted as stop:
            results, partial = stop.results, True
        counts = sweep.counts
    _report(args, results, partial=partial, total=total)
    print(
        f"runs: {counts['reused']} reused, {counts['resumed']} resumed, {counts['trained']} trained"
    )
    if partial:
        print("interrupted: the same command continues where this one stopped")
        return 130
    return 0


def _report(
    args: argparse.Namespace, results: list[VariantResult], *, partial: bool, total: int
) -> None:
    """The table (and --json) of the finished runs; a partial one says so."""
    from neuralcollapse.experiments import aggregate, columns_for, paired_statistics
    from neuralcollapse.train.config import config_to_dict

    finished = sum(len(r.summaries) for r in results)
    if partial:
        print(f"PARTIAL: {finished} of {total} runs finished")
    columns = columns_for(results)
    tables = [aggregate(r.summaries, columns) for r in results]
    paired = [paired_statistics(results[0].summaries, r.summaries, columns) for r in results[1:]]
    if finished:
        print(format_table(results, tables, paired, columns, args.seeds))
    if args.json is not None:
        payload = {
            "partial": partial,
            "runs_finished": finished,
            "runs_total": total,
            "seeds": args.seeds,
            "common_overrides": args.common,
            "variants": [
                {
                    "label": r.variant.label,
                    "source": r.variant.source,
                    "overrides": r.variant.overrides,
                    "config": config_to_dict(r.variant.config),
                    "runs": r.summaries,
                    "mean": {k: v["mean"] for k, v in table.items()},
                    "std": {k: v["std"] for k, v in table.items()},
                }
                for r, table in zip(results, tables, strict=True)
            ],
            "paired": [
                {"variant": r.variant.label, "baseline": results[0].variant.label, "metrics": p}
                for r, p in zip(results[1:], paired, strict=True)
            ],
        }
        write_json(args.json, payload)
        print(f"wrote {args.json}" + (" (partial)" if partial else ""))
