"""Claim: the hierarchy-aware frame for K = 1010 classes (a tree of height 7) builds in
under 5 s on 2 CPU cores, LCA heights and the exact PSD offset included.

The tree is synthetic and seeded: 7 levels of 2, 5, 12, 30, 80, 250 and 1010 nodes, each
node hung under a random node of the level above (every inner node gets at least one
child), so all 1010 leaves sit at depth 7.

    python benchmarks/bench_haframe_speed.py [--repeats 3] [--gamma 2.0]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch

from neuralcollapse.frames import describe, hierarchy_aware_frame, hierarchy_similarity
from neuralcollapse.hierarchy import Hierarchy

LEVELS = (2, 5, 12, 30, 80, 250, 1010)


def random_tree(levels: tuple[int, ...], seed: int) -> Hierarchy:
    generator = torch.Generator().manual_seed(seed)
    parents, edges = ["root"], []
    for depth, size in enumerate(levels, start=1):
        # one child for every parent first, the rest under random parents
        extra = torch.randint(0, len(parents), (size - len(parents),), generator=generator)
        owners = list(range(len(parents))) + extra.tolist()
        prefix = "class" if depth == len(levels) else f"n{depth}_"
        names = [f"{prefix}{i}" for i in range(size)]
        edges += [(name, parents[owner]) for name, owner in zip(names, owners, strict=True)]
        parents = names
    return Hierarchy.from_edges(edges)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gamma", type=float, default=2.0)
    args = parser.parse_args()
    tree = random_tree(LEVELS, seed=0)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        lca = tree.lca_heights()
        frame = hierarchy_aware_frame(lca, gamma=args.gamma, seed=0, dtype=torch.float64)
        times.append(time.perf_counter() - start)
    target = hierarchy_similarity(lca, gamma=args.gamma)
    geometry = describe(frame, target)
    print(
        f"# {datetime.date.today()} torch {torch.__version__} threads "
        f"{torch.get_num_threads()} cpus {os.cpu_count()} {platform.machine()}"
    )
    print(f"tree: {tree.num_classes} leaves, depth {tree.depth}, {len(tree.nodes)} nodes")
    print(
        f"LCA heights + HAFrame (gamma {args.gamma}): median {statistics.median(times):.2f} s "
        f"over {args.repeats} (min {min(times):.2f} s, max {max(times):.2f} s)"
    )
    print(
        f"offset s = {target.s:.6f}, rank(S) = {target.rank}, frame {tuple(frame.shape)}, "
        f"max |W W^T - S| = {geometry.target_error:.2e}"
    )


if __name__ == "__main__":
    main()
