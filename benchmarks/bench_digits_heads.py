"""Claim ([Y22]): on long-tailed data a fixed ETF with the dot-regression loss trains at
least as well as a learnable classifier, collapses more, and converges faster.

Trains the embedded default (digits, long-tailed ratio 10, small CNN, 30 epochs) with
several heads and losses over several seeds, all else equal, and prints per variant (mean +-
std over seeds): final and best test accuracy overall and per shot group, NC1 of the train
features at the end, and the epochs needed to reach 90% of the best final accuracy of that
seed (the threshold is shared by the variants, so the epoch counts compare).

    python benchmarks/bench_digits_heads.py [--seeds 5] [--epochs 30] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from neuralcollapse.train import Trainer, load_config, resolve_config_path

VARIANTS = {
    "learnable + CE": ["head.kind=learnable", "head.neck=none", "loss.name=ce"],
    "ETF + CE (scale 1, as [Y22] code)": ["head.kind=etf", "loss.name=ce", "head.scale=1.0"],
    "ETF + CE (scale 10)": ["head.kind=etf", "loss.name=ce", "head.scale=10.0"],
    "ETF + DR (paper form)": ["head.kind=etf", "loss.name=dr", "loss.form=paper"],
}
GROUPS = ("top1", "many", "medium", "few")


def curve(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["test"]["top1"] for line in lines]


def epochs_to(threshold: float, accuracies: list[float]) -> int | None:
    return next((i + 1 for i, acc in enumerate(accuracies) if acc >= threshold), None)


def fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    mean = statistics.fmean(values) * scale
    std = (statistics.stdev(values) if len(values) > 1 else 0.0) * scale
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="keep run directories here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_digits_"))
    print(
        f"# {datetime.date.today()} torch {torch.__version__} threads "
        f"{torch.get_num_threads()} cpus {os.cpu_count()} {platform.machine()}; runs in {out}"
    )

    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for seed in range(args.seeds):
        for name, overrides in VARIANTS.items():
            config = load_config(
                resolve_config_path(None),
                [
                    *overrides,
                    f"train.seed={seed}",
                    f"train.epochs={args.epochs}",
                    "eval.every=1",  # the test curve of every epoch (epochs to 90%)
                    "train.select_best_on=test",  # the table's "best top1": test-selected
                    "log.tensorboard=false",
                    "log.report=false",
                ],
            )
            run_dir = (
                out / f"{name.split(' (')[0].replace(' ', '').replace('+', '_')}"
                f"-{abs(hash(name)) % 1000}-seed{seed}"
            )
            started = time.perf_counter()
            summary = Trainer(config, run_dir).fit()
            summary["curve"] = curve(run_dir)
            summary["seconds"] = time.perf_counter() - started
            results[name].append(summary)
            print(
                f"seed {seed} {name}: final {summary['final']['top1']:.3f} "
                f"({summary['seconds']:.0f} s)",
                flush=True,
            )

    thresholds = [
        0.9 * max(results[name][s]["final"]["top1"] for name in VARIANTS) for s in range(args.seeds)
    ]
    print()
    print(
        "| variant | final top1 | final many | final medium | final few | best top1 | "
        "NC1 train (end) | epochs to 90% |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        final = {g: [r["final"][g] for r in runs] for g in GROUPS}
        best = [r["best"]["top1"] for r in runs]
        nc1 = [r["final"]["train"]["collapse"]["nc1"] for r in runs]
        reach = [epochs_to(t, r["curve"]) for t, r in zip(thresholds, runs, strict=True)]
        never = sum(e is None for e in reach)
        reach_text = fmt([e for e in reach if e is not None], scale=1.0)
        if never:
            reach_text += f" ({never} never)"
        print(
            f"| {name} | {fmt(final['top1'])} | {fmt(final['many'])} | "
            f"{fmt(final['medium'])} | {fmt(final['few'])} | {fmt(best)} | "
            f"{fmt(nc1, scale=1.0, digits=3)} | {reach_text} |"
        )
    print(
        f"\n(accuracy in % on the balanced 500-image test set, mean +- std over {args.seeds} "
        f"seeds; {args.epochs} epochs; shot groups by training count: many > 100, "
        "medium 20-100, few < 20)"
    )


if __name__ == "__main__":
    main()
