"""The GPU suite: every GPU figure the project needs, in one command on one GPU (<= 8 min).

::

    python benchmarks/gpu_suite.py --out gpu_results           # all parts
    python benchmarks/gpu_suite.py --out gpu_results --parts train,metrics --quick

Parts (each written to ``OUT/gpu_suite.json`` and ``OUT/gpu_suite.md`` as it finishes, so a
part that fails or times out still leaves the others):

* ``train``: ResNet-32 on CIFAR-shaped synthetic data (50,000 uint8 images, batch 128,
  crop + flip), training steps per second with the data on the GPU
  (:class:`neuralcollapse.data.DeviceLoader`) and with a ``torch.utils.data.DataLoader``
  pipeline (uint8 tensors, 4 workers, pinned memory, augmentation on the GPU after the copy),
  each in fp32, bf16 autocast and fp16 autocast + GradScaler, with ``torch.compile`` off and
  on (fp32 and bf16). Images/s = steps/s x 128.
* ``metrics``: the streaming ``CollapseStats`` pass (update + compute) at N=50k, d=512,
  K=100 and N=20k, d=2048, K=1000 against the matmul floor ``X.T @ X`` of the same data, in
  float32 with TF32 off and on.
* ``ufm``: the UFM simulator, 10,000 full-batch steps at K=100, n=50 per class, d=128, CE,
  learnable W, on the GPU (steps/s, final NC1).
* ``ddp``: a 1-GPU DistributedDataParallel (NCCL) smoke run of ``neuralcollapse train``
  (2 epochs of the digits default) under ``torchrun --nproc_per_node 1``.

Without CUDA the script refuses with one line and exit status 2. Timings: CUDA events
around each measured block after warm-up, median of ``--repeats`` rounds; ratios are from
one process, side by side.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PARTS = ("train", "metrics", "ufm", "ddp")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the project's GPU figures on one GPU (training throughput, AMP, "
        "torch.compile, metrics pass, UFM, NCCL DDP) and write JSON + markdown."
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per figure")
    parser.add_argument("--steps", type=int, default=50, help="training steps per round")
    parser.add_argument(
        "--quick", action="store_true", help="fewer steps and rounds (a smoke run, ~2 min)"
    )
    parser.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        parser.error(f"--parts takes a subset of {', '.join(PARTS)}; got {args.parts!r}")
    if args.repeats < 1 or args.steps < 1:
        parser.error("--repeats and --steps must be >= 1")
    args.parts = parts
    if args.quick:
        args.repeats, args.steps = 2, 20
    return args


def require_cuda(device: str) -> None:
    """Exit 2 with one line when no CUDA device is usable."""
    import torch

    if not torch.cuda.is_available():
        print(
            f"gpu_suite: no CUDA device visible (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}); run it on a GPU machine",
            file=sys.stderr,
        )
        sys.exit(2)
    torch.device(device)  # validates the string


def _timed(fn: Callable[[], None], repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` rounds after one warm-up, CUDA-synchronised."""
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return statistics.median(times)


# --------------------------------------------------------------------------- training


def _train_step_fn(device, amp: str, compiled: bool):
    """One optimiser step of ResNet-32 + fixed ETF head + DR loss, under ``amp``."""
    import torch
    from torch import nn

    import neuralcollapse as nc

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nc.models.build("resnet32", seed=0)
            frame = nc.frames.simplex_etf(10, self.backbone.feature_dim, seed=0)
            self.head = nc.heads.FixedFrameHead(self.backbone.feature_dim, frame)

        def forward(self, x):
            return self.head(self.backbone(x), return_features=True)

    net = Net().to(device)
    run = torch.compile(net) if compiled else net
    loss_fn = nc.losses.DotRegressionLoss()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def step(x, y) -> None:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            _, h = run(x)
            loss = loss_fn(h.float(), y, net.head.frame)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def part_train(args, device) -> list[dict[str, Any]]:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    import neuralcollapse as nc

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (50_000,), generator=generator)
    mean, std = nc.data.channel_stats(images[:5000])
    batch = 128
    resident = nc.data.DeviceLoader(
        images,
        labels,
        batch,
        crop_padding=4,
        flip=True,
        mean=mean,
        std=std,
        seed=0,
        device=device,
        drop_last=True,
    )
    files = DataLoader(
        TensorDataset(images, labels),
        batch_size=batch,
        shuffle=True,
        num_workers=4,
        pin_memory=True,
        drop_last=True,
        persistent_workers=True,
    )
    aug = torch.Generator(device=device).manual_seed(0)

    def resident_batches():
        while True:
            yield from resident

    def file_batches():
        while True:
            for x, y in files:
                x = x.to(device, non_blocking=True)
                x = nc.data.random_crop_flip(x, 4, True, aug)
                yield nc.data.normalize(x, mean, std), y.to(device, non_blocking=True)

    rows = []
    configs = [
        ("fp32", False),
        ("bf16", False),
        ("fp16", False),
        ("fp32", True),
        ("bf16", True),
    ]
    for amp, compiled in configs:
        for loader_name, source in (("device", resident_batches), ("dataloader", file_batches)):
            if compiled and loader_name == "dataloader":
                continue  # compile changes the model, not the input pipeline
            step = _train_step_fn(device, amp, compiled)
            stream = source()

            def run_steps(step=step, stream=stream) -> None:
                for _ in range(args.steps):
                    x, y = next(stream)
                    step(x, y)

            if compiled:
                run_steps()  # compilation before timing
            seconds = _timed(run_steps, args.repeats)
            rows.append(
                {
                    "amp": amp,
                    "compile": compiled,
                    "loader": loader_name,
                    "steps_per_s": args.steps / seconds,
                    "images_per_s": args.steps * batch / seconds,
                }
            )
    return rows


# --------------------------------------------------------------------------- metrics


def part_metrics(args, device) -> list[dict[str, Any]]:
    import torch

    import neuralcollapse as nc

    rows = []
    for n, d, k in ((50_000, 512, 100), (20_000, 2048, 1000)):
        generator = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(n, d, device=device, generator=generator)
        y = torch.randint(0, k, (n,), device=device, generator=generator)
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32

            def floor(x=x) -> None:
                (x.T @ x).sum().item()

            def stats(x=x, y=y, k=k, d=d) -> None:
                s = nc.metrics.CollapseStats(k, d, device=device)
                for start in range(0, x.shape[0], 8192):
                    s.update(x[start : start + 8192], y[start : start + 8192])
                s.compute()

            t_floor, t_stats = _timed(floor, args.repeats), _timed(stats, args.repeats)
            rows.append(
                {
                    "N": n,
                    "d": d,
                    "K": k,
                    "tf32": tf32,
                    "floor_s": t_floor,
                    "stats_s": t_stats,
                    "ratio_to_floor": t_stats / t_floor,
                }
            )
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


# --------------------------------------------------------------------------- UFM


def part_ufm(args, device) -> list[dict[str, Any]]:
    import neuralcollapse as nc

    steps = 2_000 if args.quick else 10_000
    config = nc.ufm.UFMConfig(
        num_classes=100,
        dim=128,
        n_per_class=50,
        head_kind="learnable",
        loss="ce",
        optimizer="sgd",
        lr=0.5,
        steps=steps,
        log_every=steps,
        device=str(device),
    )
    started = time.perf_counter()
    result = nc.ufm.simulate(config)
    seconds = time.perf_counter() - started
    return [
        {
            "steps": steps,
            "seconds": seconds,
            "steps_per_s": steps / seconds,
            "final_nc1": result.final.get("nc1") if isinstance(result.final, dict) else None,
        }
    ]


# --------------------------------------------------------------------------- DDP


def part_ddp(args, device) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "1",
            "-m",
            "neuralcollapse",
            "train",
            "--run-dir",
            str(run_dir),
            "train.epochs=2",
            "train.device=cuda",
            "log.report=false",
            "log.progress=off",
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        seconds = time.perf_counter() - started
        summary = run_dir / "summary.json"
        ok = done.returncode == 0 and summary.is_file()
        final = json.loads(summary.read_text())["final"]["top1"] if ok else None
        return [
            {
                "returncode": done.returncode,
                "seconds": seconds,
                "ok": ok,
                "final_top1": final,
                "stderr_tail": done.stderr[-500:] if not ok else "",
            }
        ]


# --------------------------------------------------------------------------- output


def _machine() -> dict[str, Any]:
    import torch

    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def _markdown(results: dict[str, Any]) -> str:
    lines = [f"# GPU suite ({results['machine']['gpu']}, {results['machine']['date']})", ""]
    for part, rows in results["parts"].items():
        lines.append(f"## {part}")
        if isinstance(rows, dict) and "error" in rows:
            lines += [f"failed: {rows['error']}", ""]
            continue
        keys = list(rows[0]) if rows else []
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for row in rows:
            cells = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_cuda(args.device)
    import torch

    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": _machine(), "parts": {}}
    runners = {"train": part_train, "metrics": part_metrics, "ufm": part_ufm, "ddp": part_ddp}
    for part in args.parts:
        started = time.perf_counter()
        try:
            results["parts"][part] = runners[part](args, device)
        except Exception as exc:  # noqa: BLE001 - one failing part must not lose the others
            results["parts"][part] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"{part}: {time.perf_counter() - started:.0f} s", flush=True)
        (args.out / "gpu_suite.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "gpu_suite.md").write_text(_markdown(results))
    print(f"wrote {args.out / 'gpu_suite.json'} and gpu_suite.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
