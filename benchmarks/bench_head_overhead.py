"""Claim: a fixed-frame head with the dot-regression loss costs no more per training step
than a learnable linear classifier with cross-entropy (within 2% on a ResNet-32 step).

Times one SGD step (forward, loss, backward, update) of a CIFAR ResNet-32 on synthetic
32x32 batches with (a) ``LearnableHead`` + cross-entropy and (b) ``FixedFrameHead`` (BN + L2
neck, simplex ETF) + ``DotRegressionLoss``. The two are timed in alternating rounds in one
process so that machine noise hits both alike; the median per-step time of each is reported.

    python benchmarks/bench_head_overhead.py [--batch 128] [--rounds 7] [--steps 10]
        [--classes 10] [--width 1] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import torch
from torch import nn

import neuralcollapse as nc


def make_step(head_kind: str, classes: int, width: int, device: torch.device, seed: int):
    backbone = nc.models.build("resnet32", seed=seed, width=width)
    d = backbone.feature_dim
    torch.manual_seed(seed)
    if head_kind == "learnable":
        head = nc.heads.LearnableHead(d, classes)
        criterion = nn.CrossEntropyLoss()

        def loss_of(logits, h, y):
            return criterion(logits, y)
    else:
        head = nc.heads.FixedFrameHead(d, nc.frames.simplex_etf(classes, d, seed=seed))
        criterion = nc.losses.DotRegressionLoss()

        def loss_of(logits, h, y):
            return criterion(h, y, head.frame)

    model = nn.ModuleDict({"backbone": backbone, "head": head}).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)

    def step(x, y):
        logits, h = model["head"](model["backbone"](x), return_features=True)
        loss = loss_of(logits, h, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def time_steps(step, x, y, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--width", type=int, default=1, help="2 for the CIFAR-100 model (d=128)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, args.classes, (args.batch,), generator=gen).to(device)
    steps = {
        kind: make_step(kind, args.classes, args.width, device, 0)
        for kind in ("learnable", "fixed")
    }
    for step in steps.values():  # warm-up (allocator, kernels)
        time_steps(step, x, y, 2, device)
    times: dict[str, list[float]] = {kind: [] for kind in steps}
    for _ in range(args.rounds):
        for kind, step in steps.items():
            times[kind].append(time_steps(step, x, y, args.steps, device))
    learnable, fixed = (statistics.median(times[k]) for k in ("learnable", "fixed"))
    print(
        f"# {datetime.date.today()} torch {torch.__version__} device {device} threads "
        f"{torch.get_num_threads()} cpus {os.cpu_count()} {platform.machine()}"
    )
    print(
        f"ResNet-32 (width {args.width}), batch {args.batch}, K={args.classes}, "
        f"{args.rounds} alternating rounds of {args.steps} steps, median ms/step"
    )
    print(f"LearnableHead + CE           {1000 * learnable:8.2f} ms/step")
    print(f"FixedFrameHead(bn_l2) + DR   {1000 * fixed:8.2f} ms/step")
    print(f"overhead of fixed frame + DR {100 * (fixed / learnable - 1):+.2f} %")


if __name__ == "__main__":
    main()
