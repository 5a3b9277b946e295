"""Shared by the examples: the small-size switch and the digits data, normalised.

Every example runs as ``python examples/<name>.py``; ``--small`` (or the environment
variable ``NC_EXAMPLE_SMALL=1``, which the test suite sets) shrinks it to a few seconds,
and ``--out DIR`` chooses where it writes (default: ``runs/examples``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

import neuralcollapse as nc


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--small", action="store_true", help="a few seconds on tiny data")
    parser.add_argument("--out", type=Path, default=Path("runs/examples"), help="output folder")
    args = parser.parse_args()
    args.small = args.small or os.environ.get("NC_EXAMPLE_SMALL", "") not in ("", "0")
    return args


def digits_loaders(batch_size: int = 64, seed: int = 0):
    """scikit-learn's 8x8 digits made long-tailed (ratio 10), normalised with the training
    set's statistics: train and test loaders of (x, y), and the training counts per class."""
    split = nc.data.load_digits(imbalance_ratio=10, seed=seed)
    mean, std = nc.data.channel_stats(split.train.images)

    def loader(images, labels, shuffle):
        x = nc.data.normalize(images, mean, std)
        dataset = torch.utils.data.TensorDataset(x, labels)
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, generator=generator
        )

    train = loader(split.train.images, split.train.labels, shuffle=True)
    test = loader(split.test.images, split.test.labels, shuffle=False)
    counts = torch.bincount(split.train.labels, minlength=10)
    return train, test, counts
