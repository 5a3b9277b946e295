"""Speed of the neural-collapse metrics on CPU (issue 3, "Speed").

Claims measured, for float32 features and (N, d, K) = (50000, 512, 100), (20000, 2048, 1000):

1. ``CollapseStats.update`` over all N samples (float64 accumulation) takes at most 3x the
   time of one plain float32 ``X.T @ X`` of the same data, timed in the same run.
2. It is at least 50x faster than a per-sample outer-product loop like the reference
   code's (per sample: ``y[i].item()``, then ``Sw += z.unsqueeze(1) @ z.unsqueeze(0)`` in
   float32), timed on a subset (best of two) and scaled to N. The loop only
   does the within-class pass; the reference also needs a first pass for the means, so
   the scaled figure flatters it.
3. ``compute()`` at K = 1000, d = 2048 takes under 10 s.

Each timing is the minimum over ``--repeats`` runs, the baseline and the accumulation
interleaved so that both see the same machine load.

Usage: python benchmarks/bench_metrics.py [--repeats 5] [--batch 4096] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import torch

from neuralcollapse.metrics import CollapseStats

CASES = ((50_000, 512, 100), (20_000, 2048, 1000))
LOOP_SAMPLES = {512: 200, 2048: 100}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def accumulate(x: torch.Tensor, y: torch.Tensor, k: int, batch: int) -> CollapseStats:
    stats = CollapseStats(k, x.shape[1])
    for start in range(0, x.shape[0], batch):
        stats.update(x[start : start + batch], y[start : start + batch])
    return stats


def per_sample_loop(x: torch.Tensor, y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """The reference pattern ([Z21]'s validate_NC.py): per sample, a label read back to the
    host and a (d, 1) @ (1, d) product added to Sigma_W, in the features' dtype."""
    scatter = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype)
    for i in range(x.shape[0]):
        z = x[i, :] - means[y[i].item()]
        scatter += z.unsqueeze(1) @ z.unsqueeze(0)
    return scatter


def bench_case(n: int, d: int, k: int, batch: int, repeats: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    x = (
        torch.randn(n, d, generator=gen)
        + 2.0 * torch.randn(k, d, generator=gen)[torch.randint(0, k, (n,), generator=gen)]
    )
    y = torch.randint(0, k, (n,), generator=gen)
    plain, accum = [], []
    stats = None
    for _ in range(repeats):
        plain.append(timed(lambda: x.T @ x))
        start = time.perf_counter()
        stats = accumulate(x, y, k, batch)
        accum.append(time.perf_counter() - start)
    means = stats.class_means().nan_to_num(0.0).to(x.dtype)
    m = LOOP_SAMPLES[d]
    loop = min(timed(lambda: per_sample_loop(x[:m], y[:m], means)) for _ in range(2)) * n / m
    out = {
        "N": n,
        "d": d,
        "K": k,
        "plain_xtx_s": min(plain),
        "accumulate_s": min(accum),
        "ratio_vs_xtx": min(accum) / min(plain),
        "loop_scaled_s": loop,
        "loop_samples_timed": m,
        "speedup_vs_loop": loop / min(accum),
    }
    if (k, d) == (1000, 2048):
        w = torch.randn(k, d, generator=gen)
        out["compute_first_s"] = timed(stats.compute)
        out["compute_s"] = min(timed(stats.compute) for _ in range(repeats))
        out["compute_with_classifier_s"] = min(timed(lambda: stats.compute(w)) for _ in range(2))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4096, help="rows per update() call")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "batch": args.batch,
        "repeats": args.repeats,
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    header = f"{'N':>6} {'d':>5} {'K':>5} {'X.T@X s':>8} {'update s':>9} {'ratio':>6} "
    print(header + f"{'loop s (scaled)':>16} {'speedup':>8}")
    results = []
    for n, d, k in CASES:
        r = bench_case(n, d, k, args.batch, args.repeats)
        results.append(r)
        print(
            f"{n:>6} {d:>5} {k:>5} {r['plain_xtx_s']:>8.3f} {r['accumulate_s']:>9.3f} "
            f"{r['ratio_vs_xtx']:>5.2f}x {r['loop_scaled_s']:>16.1f} {r['speedup_vs_loop']:>7.0f}x"
        )
    last = results[-1]
    print(
        f"compute() K=1000 d=2048: first call {last['compute_first_s']:.2f} s, "
        f"best {last['compute_s']:.2f} s, with classifier {last['compute_with_classifier_s']:.2f} s"
    )
    # Other processes on a 2-core machine inflate every figure; the load says how much.
    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(
        f"load average (1 min) at start {info['loadavg_1min_at_start']}, at end "
        f"{info['loadavg_1min_at_end']}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"info": info, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
