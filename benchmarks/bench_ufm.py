"""Claim (issue 8, item 4): the UFM simulator runs K=100, n=50 per class, d=128 for 10,000
full-batch gradient steps in under 30 s on 2 CPU cores, and computing the collapse report
every ``log_every`` steps costs under 10% of the run.

Runs the same configuration (learnable W with bias, CE, SGD with momentum) twice per
repeat, interleaved: with logging every ``--log-every`` steps ("on"), and with logging only
at the first and last step ("off"). The logging share is (on - off) / on, taken on the
medians; the run's own timer of the logging calls is printed beside it.

    python benchmarks/bench_ufm.py [--steps 10000] [--log-every 100] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics

import torch

from neuralcollapse.ufm import UFMConfig, simulate


def run_once(args: argparse.Namespace, log_every: int) -> tuple[float, float, dict]:
    config = UFMConfig(
        num_classes=args.classes,
        dim=args.dim,
        n_per_class=args.n,
        head_kind="learnable",
        loss="ce",
        optimizer="sgd",
        lr=0.5,
        lambda_W=5e-4,
        lambda_H=5e-4,
        lambda_b=5e-4,
        steps=args.steps,
        log_every=log_every,
        seed=0,
        device=args.device,
        num_threads=args.threads,
    )
    result = simulate(config)
    return result.wall_time_s, result.log_time_s, result.history[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--n", type=int, default=50, help="samples per class")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10000)
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default torch's)")
    args = parser.parse_args()

    print(f"date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}")
    print(f"machine: {platform.processor() or platform.machine()}, os.cpu_count()={os.cpu_count()}")
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, intra-op threads {threads}")
    # Other processes on the machine slow every timing here; the load average shows them.
    print(f"load average at start (1/5/15 min): {os.getloadavg()}")
    print(
        f"K={args.classes}, n={args.n}/class (N={args.classes * args.n}), d={args.dim}, "
        f"{args.steps} steps, logging every {args.log_every} steps, device {args.device}"
    )
    on, off, logged = [], [], []
    for repeat in range(args.repeats):
        wall_on, log_on, last = run_once(args, args.log_every)
        wall_off, _, _ = run_once(args, args.steps)  # reports at step 0 and the end only
        on.append(wall_on)
        off.append(wall_off)
        logged.append(log_on)
        print(
            f"repeat {repeat}: logging on {wall_on:6.2f} s (of which {log_on:5.2f} s in "
            f"reports), off {wall_off:6.2f} s; final loss {last['loss']:.4f}, "
            f"accuracy {last['accuracy']:.3f}, NC1 {last['nc1']:.2e}"
        )
    median_on, median_off = statistics.median(on), statistics.median(off)
    share = (median_on - median_off) / median_on
    print(f"load average at end (1/5/15 min): {os.getloadavg()}")
    print(f"median run time with logging: {median_on:.2f} s (claim: < 30 s)")
    print(f"median run time without logging: {median_off:.2f} s")
    print(
        f"logging share (on - off) / on: {share:.1%}; timed inside the run: "
        f"{statistics.median(logged) / median_on:.1%} (claim: < 10%)"
    )


if __name__ == "__main__":
    main()
