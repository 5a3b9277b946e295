"""Images per second: the device-resident loader against a per-image DataLoader pipeline.

Both produce the same CIFAR training batches: random crop 32 with 4-pixel zero padding,
random horizontal flip, per-channel normalisation, float32 (B, 3, 32, 32) plus int64 labels.
The baseline is written the way torchvision's CIFAR recipe works: images stored as HWC
uint8, each one turned into a PIL image, padded, cropped, maybe mirrored, converted to a
tensor and normalised on its own, then collated by a ``torch.utils.data.DataLoader``.

Data are CIFAR-shaped synthetic uint8 images (no download). Run::

    .venv/bin/python benchmarks/bench_loader.py                 # CPU, defaults
    .venv/bin/python benchmarks/bench_loader.py --device cuda   # loader on a GPU as well
    .venv/bin/python benchmarks/bench_loader.py --threads 1     # one intra-op thread

DataLoader workers always run single-threaded (PyTorch sets 1 thread in each worker); with
0 workers the per-image pipeline runs in the main process under ``--threads``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from neuralcollapse.data import DeviceLoader, channel_stats


class PerImageCifar(Dataset):
    """torchvision-style CIFAR training set: one PIL round trip per image."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, mean, std) -> None:
        self.images, self.labels = images_hwc, labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        img = ImageOps.expand(img, border=4, fill=0)
        dy, dx = (int(v) for v in torch.randint(0, 9, (2,)))
        img = img.crop((dx, dy, dx + 32, dy + 32))
        if torch.rand(()) < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
        x = (x.float() / 255.0 - self.mean) / self.std
        return x, int(self.labels[i])


def _consume(batches) -> int:
    seen = 0
    for x, y in batches:
        seen += y.numel()
        x.sum()  # touch the data, as a training step would
    return seen


def _rate(make_epoch, epochs: int, sync=None) -> float:
    if sync:
        sync()
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        seen += _consume(make_epoch())
    if sync:
        sync()
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--device", default="cpu", help="extra device for the loader, e.g. cuda")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.threads is not None:
        # on a small shared machine, 2 threads per op can lose badly to any background load
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.num_images, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (args.num_images,), generator=g)
    mean, std = (t.tolist() for t in channel_stats(images))

    cpu_model = platform.processor() or platform.machine()
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs ({cpu_model}), "
        f"torch threads {torch.get_num_threads()}, {args.num_images} images 3x32x32, "
        f"batch {args.batch_size}, {args.repeats} x {args.epochs} timed epochs after 1 warm-up, "
        f"load average before: {os.getloadavg()}"
    )
    pipelines = {}
    devices = ["cpu"] if args.device == "cpu" else ["cpu", args.device]
    for device in devices:
        loader = DeviceLoader(
            images,
            labels,
            args.batch_size,
            crop_padding=4,
            flip=True,
            mean=mean,
            std=std,
            seed=0,
            device=device,
        )
        sync = torch.cuda.synchronize if device.startswith("cuda") else None
        pipelines[f"DeviceLoader ({device})"] = (loader, sync)
    dataset = PerImageCifar(images.permute(0, 2, 3, 1).numpy(), labels.numpy(), mean, std)
    for workers in args.workers:
        loader = DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(0),
            persistent_workers=workers > 0,
        )
        pipelines[f"per-image PIL DataLoader, {workers} workers"] = (loader, None)

    for loader, _ in pipelines.values():
        _consume(loader)  # warm-up epoch: worker start-up, allocator, caches
    rates = {name: [] for name in pipelines}
    for _ in range(args.repeats):  # interleaved, so load changes hit every pipeline alike
        for name, (loader, sync) in pipelines.items():
            rates[name].append(_rate(lambda ld=loader: ld, args.epochs, sync))

    medians = {name: statistics.median(r) for name, r in rates.items()}
    base = max(rate for name, rate in medians.items() if name.startswith("per-image"))
    print("\n| pipeline | images/s (median) | min..max | vs best per-image |")
    print("|---|---:|---:|---:|")
    for name, rate in medians.items():
        low, high = min(rates[name]), max(rates[name])
        print(f"| {name} | {rate:,.0f} | {low:,.0f}..{high:,.0f} | {rate / base:.1f}x |")
    print(f"\nload average (1, 5, 15 min) after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
