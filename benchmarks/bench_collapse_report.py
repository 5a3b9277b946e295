"""The whole metrics pass, features to NC1-NC4 (``collapse_report`` with a classifier),
against its matrix-multiply floor and against rhubarbwu/neural-collapse (issue 30).

The floor is the unavoidable work of an exact two-pass NC1-NC4: one float32 ``X.T @ X``
plus one float32 product of the features with the class means, ``X @ M.T`` (N x d x
(d + K) multiply-adds). NC4 with a classifier W also needs ``X @ W.T``; the floor with it
(``floor+W``, N x d x (d + 2K)) is reported beside it. rhubarbwu's equivalent: a
``MeanAccumulator`` pass, then one pass of ``CovarAccumulator``, ``VarNormAccumulator``
and ``DecAccumulator`` (NC4) with those means, then ``covariance_ratio`` (NC1, pinv),
``variability_cdnv``, ``simplex_etf_error``, ``self_duality_error`` and
``clf_ncc_agreement``, all in its float32 default. It is not on PyPI: install it from a
clone with ``pip install --no-deps PATH``; without it those rows are skipped.

Methods run in interleaved rounds (one of each per round, so all see the same load);
reported per method: the best time and the median over rounds of time / that round's
floor. Both thread counts run in the same process, one after the other. Scaling: the
fitted exponent of the best time in N, d and K (log-log slope over three sizes, the
other two fixed) for ours and for the floor.

Usage: python benchmarks/bench_collapse_report.py [--rounds 7] [--threads 1,2]
       [--json benchmarks/results/collapse_report.json] [--quick]
The result file feeds ``benchmarks/render_results.py``, which writes the RESULTS.md table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

import torch

from neuralcollapse.metrics import collapse_report

CLAIM_CASES = ((50_000, 512, 100), (20_000, 2048, 1000))
SCALING_BASE = (20_000, 512, 100)
SCALING = {"N": (10_000, 20_000, 40_000), "d": (128, 256, 512), "K": (50, 100, 400)}
BATCH = 8192


def make_data(n: int, d: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, d) float32 features around K class means, (N,) labels, (K, d) classifier."""
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, k, (n,), generator=gen)
    means = 2.0 * torch.randn(k, d, generator=gen)
    x = torch.randn(n, d, generator=gen) + means[y]
    w = means + 0.5 * torch.randn(k, d, generator=gen)
    return x, y, w


def peer_module():
    try:
        import neural_collapse.accumulate
        import neural_collapse.measure
    except ImportError as exc:
        return None, f"rhubarbwu/neural-collapse not installed ({exc})"
    return neural_collapse, None


def peer_pass(peer, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: int) -> dict:
    acc, measure = peer.accumulate, peer.measure
    d = x.shape[1]
    means_acc = acc.MeanAccumulator(k, d, "cpu")
    for i in range(0, x.shape[0], BATCH):
        means_acc.accumulate(x[i : i + BATCH], y[i : i + BATCH])
    means, global_mean = means_acc.compute()
    covar = acc.CovarAccumulator(k, d, "cpu", M=means)
    norms = acc.VarNormAccumulator(k, d, "cpu", M=means)
    decisions = acc.DecAccumulator(k, d, "cpu", M=means, W=w)
    for i in range(0, x.shape[0], BATCH):
        xb, yb = x[i : i + BATCH], y[i : i + BATCH]
        covar.accumulate(xb, yb, means)
        norms.accumulate(xb, yb, means)
        decisions.accumulate(xb, yb, w, means)
    var_norms, _ = norms.compute()
    return {
        "nc1": measure.covariance_ratio(covar.compute(), means, global_mean),
        "cdnv": measure.variability_cdnv(var_norms, means),
        "etf": measure.simplex_etf_error(means, global_mean),
        "duality": measure.self_duality_error(w, means, global_mean),
        "agreement": measure.clf_ncc_agreement(decisions),
    }


def methods_for(x, y, w, k, peer) -> dict[str, Callable[[], object]]:
    means = torch.zeros(k, x.shape[1]).index_add_(0, y, x)
    both = torch.cat([means, w])
    methods = {
        "floor": lambda: (x.T @ x, x @ means.T),
        "floor+W": lambda: (x.T @ x, x @ both.T),
        "ours": lambda: collapse_report(x, y, classifier=w),
    }
    if peer is not None:
        methods["rhubarbwu"] = lambda: peer_pass(peer, x, y, w, k)
    return methods


def run_case(n: int, d: int, k: int, rounds: int, peer) -> dict:
    x, y, w = make_data(n, d, k)
    methods = methods_for(x, y, w, k, peer)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    out = {"N": n, "d": d, "K": k, "methods": {}}
    for name, values in times.items():
        ratios = [t / f for t, f in zip(values, times["floor"], strict=True)]
        out["methods"][name] = {
            "best_s": min(values),
            "median_s": statistics.median(values),
            "median_ratio_vs_floor": statistics.median(ratios),
        }
    return out


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of log(time) on log(size)."""
    xs = [math.log(p) for p, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True)) / sum(
        (a - mx) ** 2 for a in xs
    )


def scaling(rounds: int, peer) -> dict:
    exponents: dict[str, dict[str, float]] = {}
    for axis, values in SCALING.items():
        points: dict[str, list[tuple[float, float]]] = {}
        for value in values:
            n, d, k = SCALING_BASE
            n, d, k = (
                (value, d, k) if axis == "N" else (n, value, k) if axis == "d" else (n, d, value)
            )
            case = run_case(n, d, k, rounds, None)
            for name in ("floor", "ours"):
                points.setdefault(name, []).append((value, case["methods"][name]["best_s"]))
        exponents[axis] = {name: slope(p) for name, p in points.items()}
    return exponents


def machine_info(rounds: int) -> dict:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit + ("+uncommitted" if dirty else ""),
        "machine": f"{os.cpu_count()} CPUs, {model}",
        "torch": torch.__version__,
        "rounds": rounds,
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--json", default="benchmarks/results/collapse_report.json")
    parser.add_argument("--quick", action="store_true", help="first claim case only, 3 rounds")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    peer, reason = peer_module()
    info = machine_info(rounds)
    info["command"] = "python benchmarks/bench_collapse_report.py " + " ".join(
        f"--{k}={v}" for k, v in (("rounds", rounds), ("threads", args.threads))
    )
    if reason:
        info["rhubarbwu_skipped"] = reason
    results: dict[str, dict] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        cases = CLAIM_CASES[:1] if args.quick else CLAIM_CASES
        claim = [run_case(n, d, k, rounds, peer) for n, d, k in cases]
        for case in claim:
            row = " ".join(
                f"{name} {m['best_s']:.3f}s ({m['median_ratio_vs_floor']:.2f}x)"
                for name, m in case["methods"].items()
            )
            print(f"threads={threads} N={case['N']} d={case['d']} K={case['K']}: {row}")
        entry = {"claim": claim}
        if not args.quick:
            entry["exponents"] = scaling(max(3, rounds // 2), peer)
            print(f"threads={threads} exponents: {entry['exponents']}")
        results[str(threads)] = entry
    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as handle:
        json.dump({"info": info, "results": results}, handle, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
