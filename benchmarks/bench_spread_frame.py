"""Claim: spread_frame gets close to the best possible max cosine when K > d + 1, and
K=1000, d=128 takes under 60 s on 2 CPU cores.

For each (K, d) it builds the frame, times it, and prints its largest pairwise cosine next
to the lower bound of :func:`neuralcollapse.frames.coherence_bound` (the gap is an upper
bound on how far from optimal the frame is) and next to a random frame's max cosine.

    python benchmarks/bench_spread_frame.py [--sizes 100x16 1000x64 1000x128] [--steps 1000]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

import torch

from neuralcollapse.frames import describe, spread_frame


def parse_size(text: str) -> tuple[int, int]:
    k, d = text.lower().split("x")
    return int(k), int(d)


def random_frame_max_cosine(k: int, d: int, seed: int) -> float:
    vectors = torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return describe(vectors).max_cosine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        default=[(100, 16), (1000, 64), (1000, 128)],
        metavar="KxD",
    )
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    machine = platform.processor() or platform.machine()
    print(
        f"# {datetime.date.today()}  torch {torch.__version__}  threads "
        f"{torch.get_num_threads()}  cpus {os.cpu_count()}  {machine}"
    )
    print("| K | d | steps | seconds | max cosine | lower bound | gap | random frame max cos |")
    print("|---|---|---|---|---|---|---|---|")
    for k, d in args.sizes:
        start = time.perf_counter()
        frame = spread_frame(k, d, seed=args.seed, steps=args.steps)
        seconds = time.perf_counter() - start
        g = describe(frame)
        baseline = random_frame_max_cosine(k, d, args.seed)
        print(
            f"| {k} | {d} | {args.steps} | {seconds:.1f} | {g.max_cosine:.4f} | "
            f"{g.coherence_bound:.4f} | {g.coherence_gap:.4f} | {baseline:.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
