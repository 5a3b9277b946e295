"""Device-resident loading for in-memory image tensors, with batched augmentation.

The whole uint8 set lives on the target device; each batch is gathered by index and
augmented there in a handful of tensor ops (no per-image Python work), which is what makes
small-image training input-bound-free on a GPU and cheap on a CPU. Every random number comes
from one CPU ``torch.Generator`` per epoch, so a seed fixes the batches on any device.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuralcollapse.errors import UsageError

from .longtail import ClassSampler, _sampling_power, epoch_generator, epoch_indices

__all__ = [
    "DeviceLoader",
    "MixedBatch",
    "channel_stats",
    "cutmix",
    "make_dataloader",
    "mixup",
    "normalize",
    "original_worker_errors",
    "random_crop_flip",
]


def random_crop_flip(
    images: Tensor, padding: int = 4, flip: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Per-image random crop after zero padding, and random horizontal flip, for a batch.

    Equivalent to padding every image with ``padding`` zero pixels on each side, cropping a
    random H x W window and mirroring it with probability 1/2; done as one ``index_select``
    over a strided view of the padded (and mirrored) batch, on the batch's device.

    Args:
        images: (B, C, H, W), any dtype (uint8 pads with pixel value 0, i.e. black).
        padding: pixels of zero padding per side (0: no crop).
        flip: mirror a random half of the images left-right.
        generator: CPU generator for the offsets and flips.

    Returns:
        (B, C, H, W) tensor, same dtype and device.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    store = _crop_store(images, padding, flip)
    starts = _window_starts(torch.arange(images.shape[0]), store, padding, flip, generator)
    return _windows(store, images.shape[2], images.shape[3]).index_select(0, starts)


def _crop_store(images: Tensor, padding: int, flip: bool) -> Tensor:
    """(M, C, H + 2p, W + 2p) contiguous: the padded images, then (if flip) their mirrors."""
    padded = F.pad(images, (padding,) * 4) if padding else images
    return torch.cat([padded, padded.flip(3)]) if flip else padded.contiguous()


def _windows(store: Tensor, h: int, w: int) -> Tensor:
    """Overlapping view of every (C, h, w) window of ``store``, indexed by the flat offset of
    its first element, so gathering crops is a single ``index_select`` (no copy here)."""
    _, c, hp, wp = store.shape
    flat = store.reshape(-1)
    extent = (c - 1) * hp * wp + (h - 1) * wp + w
    return flat.as_strided((flat.numel() - extent + 1, c, h, w), (1, hp * wp, wp, 1))


def _window_starts(
    image_index: Tensor,
    store: Tensor,
    padding: int,
    flip: bool,
    generator: torch.Generator | None,
) -> Tensor:
    """Flat start offsets in ``store`` of random crops (and flips) of ``image_index``."""
    b = image_index.numel()
    _, c, hp, wp = store.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    dy, dx = offsets[0], offsets[1]
    image = image_index.cpu()
    if flip:
        flips = torch.rand(b, generator=generator) < 0.5
        # the crop at dx of a mirrored image is the mirror of the crop at 2p - dx
        dx = torch.where(flips, 2 * padding - dx, dx)
        image = image + flips.long() * (store.shape[0] // 2)
    starts = image * (c * hp * wp) + dy * wp + dx
    return starts.to(store.device)


def normalize(
    images: Tensor,
    mean: Sequence[float] | Tensor | None = None,
    std: Sequence[float] | Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """To floating point in [0, 1] (uint8 is divided by 255), then ``(x - mean) / std`` per
    channel. images: (B, C, H, W); mean, std: C values on the [0, 1] scale, or None."""
    scale, shift = _affine(images.shape[1], images.dtype, mean, std, dtype, images.device)
    return images.to(dtype, copy=True).mul_(scale).add_(shift)


def _affine(
    channels: int,
    source: torch.dtype,
    mean: Sequence[float] | Tensor | None,
    std: Sequence[float] | Tensor | None,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """(1, C, 1, 1) scale and shift with x_out = x_in * scale + shift (one fused pass)."""
    to_unit = 1.0 / 255.0 if source == torch.uint8 else 1.0
    m = torch.zeros(channels, dtype=torch.float64) if mean is None else _per_channel(mean)
    s = torch.ones(channels, dtype=torch.float64) if std is None else _per_channel(std)
    if m.shape != (channels,) or s.shape != (channels,):
        raise ValueError(
            f"mean and std need {channels} values (one per channel), got {m.numel()} and "
            f"{s.numel()}"
        )
    if bool((s <= 0).any()):
        raise ValueError(f"std must be positive, got {s.tolist()}")
    scale, shift = to_unit / s, -m / s
    return tuple(t.to(device=device, dtype=dtype).view(1, -1, 1, 1) for t in (scale, shift))


def _per_channel(values: Sequence[float] | Tensor) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float64).cpu().reshape(-1)


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation on the [0, 1] scale, in float64.

    images: (N, C, H, W), uint8 (divided by 255) or floating. Returns two (C,) tensors, to
    pass as ``mean``/``std`` (compute them on the training set).
    """
    scale = 255.0 if images.dtype == torch.uint8 else 1.0
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    square = torch.zeros_like(total)
    for chunk in images.split(4096):  # bounded float64 working memory on large sets
        x = chunk.to(torch.float64) / scale
        total += x.sum(dim=(0, 2, 3))
        square += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    return mean, (square / count - mean * mean).clamp(min=0).sqrt()


class MixedBatch(NamedTuple):
    """A mixed batch: train on ``lam * loss(x, y_a) + (1 - lam) * loss(x, y_b)``."""

    x: Tensor
    y_a: Tensor
    y_b: Tensor
    lam: float


def mixup(
    x: Tensor, y: Tensor, alpha: float = 1.0, generator: torch.Generator | None = None
) -> MixedBatch:
    """Mixup (Zhang et al. 2018): ``x' = lam x + (1 - lam) x[perm]``, lam ~ Beta(alpha, alpha),
    one lam per batch. x: (B, ...) floating; y: (B,) labels."""
    lam = _beta(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return MixedBatch(lam * x + (1.0 - lam) * x[perm], y, y[perm], lam)


def cutmix(
    x: Tensor, y: Tensor, alpha: float = 1.0, generator: torch.Generator | None = None
) -> MixedBatch:
    """CutMix (Yun et al. 2019): paste one random box of ``x[perm]`` into every image; the
    returned lam is the exact kept-area fraction after clipping the box. x: (B, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"cutmix needs images (B, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[2], x.shape[3]
    cut = (1.0 - _beta(alpha, generator)) ** 0.5
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    half_h, half_w = int(h * cut) // 2, int(w * cut) // 2
    top, bottom = max(cy - half_h, 0), min(cy + half_h, h)
    left, right = max(cx - half_w, 0), min(cx + half_w, w)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return MixedBatch(mixed, y, y[perm], lam)


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}; to train without mixing skip the call")
    # torch's Beta takes no generator: seed a NumPy generator from the torch one instead
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


class DeviceLoader:
    """Batches of an in-memory image set, kept on ``device``, augmented on the fly.

    Each iteration is one epoch: indices from :func:`epoch_indices` (``"shuffle"``,
    ``"sequential"``, ``"balanced"``, ``"sqrt"``, ``"instance"``), then per batch the same
    result as :func:`random_crop_flip` (when cropping or flipping) and :func:`normalize`.
    Epoch e draws from ``epoch_generator(seed, e)``; the epoch counter advances after each
    pass and :meth:`set_epoch` sets it, so a resumed run replays the same batches.

    Memory: with cropping or flipping the loader keeps a zero-padded copy of the set, plus its
    mirror image when ``flip=True``, so that each batch is one ``index_select`` straight from
    that copy: ``(H + 2p)(W + 2p) / (HW)`` times the set, twice with flips (CIFAR, p = 4:
    3.1x the uint8 set, 470 MB for 50,000 images).

    Args:
        images: (N, C, H, W) uint8 (or float in [0, 1]).
        labels: (N,) int64.
        batch_size: samples per batch.
        sampling: see above.
        num_samples: draws per epoch for the weighted samplings (default N).
        crop_padding: zero padding for the random crop (4 for CIFAR; 0 disables cropping).
        flip: random horizontal flips.
        mean, std: per-channel normalisation on the [0, 1] scale (see :func:`channel_stats`).
        drop_last: drop the final incomplete batch.
        seed: seed of the sampling and augmentation stream.
        shard: ``(rank, world_size)`` for data-parallel training: every process draws the
            same epoch order (same seed) and takes rows ``rank::world_size`` of each global
            batch of ``batch_size``, so the shards are disjoint and together cover the
            batch. Empty shards (a final batch smaller than world_size) are skipped; use
            ``drop_last=True`` for training so every process takes the same number of steps.
        device: where data and batches live (default: where ``images`` is).
        dtype: floating dtype of the yielded images.

    Yields:
        ``(x, y)``: x (B, C, H, W) ``dtype`` on ``device``, y (B,) int64 on ``device``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        *,
        sampling: str | float = "shuffle",
        num_samples: int | None = None,
        crop_padding: int = 0,
        flip: bool = False,
        mean: Sequence[float] | Tensor | None = None,
        std: Sequence[float] | Tensor | None = None,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"shard must be (rank, world_size), 0 <= rank < world_size: {shard}")
        if images.dim() != 4 or labels.shape != (images.shape[0],):
            raise ValueError(
                f"need images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
                f"{tuple(labels.shape)}"
            )
        if images.shape[0] == 0:
            raise ValueError("the data set is empty: DeviceLoader needs at least one image")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if sampling not in ("sequential", "shuffle"):
            _sampling_power(sampling)
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {crop_padding}")
        target = images.device if device is None else torch.device(device)
        self.images = images.to(target)
        self.labels = labels.to(device=target, dtype=torch.int64)
        self._sampler = ClassSampler(labels.cpu(), sampling, seed, num_samples)
        self.batch_size = batch_size
        self.crop_padding, self.flip = crop_padding, flip
        self.drop_last, self.seed = drop_last, seed
        self.rank, self.world_size = rank, world
        self.epoch = 0
        self._scale, self._shift = _affine(images.shape[1], images.dtype, mean, std, dtype, target)
        self.dtype = dtype
        self._store: Tensor | None = None
        if crop_padding or flip:
            # padded (+ mirrored) copy built once, so each batch is a single index_select
            self._store = _crop_store(self.images, crop_padding, flip)
            self._windows = _windows(self._store, images.shape[2], images.shape[3])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self._sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        generator = epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        order = epoch_indices(
            self._sampler.labels, self._sampler.sampling, generator, self._sampler.num_samples
        )
        for i in range(len(self)):
            rows = order[i * self.batch_size : (i + 1) * self.batch_size]
            rows = rows[self.rank :: self.world_size]
            if rows.numel() == 0:
                continue
            labels = self.labels.index_select(0, rows.to(self.device))
            yield self._batch(rows, generator), labels

    def _batch(self, idx: Tensor, generator: torch.Generator) -> Tensor:
        """idx: CPU indices of one batch -> augmented, normalised images on the device."""
        if self._store is None:
            raw = self.images.index_select(0, idx.to(self.device))
        else:
            starts = _window_starts(idx, self._store, self.crop_padding, self.flip, generator)
            raw = self._windows.index_select(0, starts)
        return raw.to(self.dtype).mul_(self._scale).add_(self._shift)


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    *,
    sampling: str | float = "shuffle",
    seed: int = 0,
    num_samples: int | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    shard: tuple[int, int] = (0, 1),
) -> DataLoader:
    """The DataLoader path for file-backed sets (:class:`ImageFolderDataset`,
    :class:`ListFileDataset`, or any dataset with a ``labels`` tensor): a standard
    ``DataLoader`` whose order comes from a :class:`ClassSampler` (so ``"balanced"`` and
    ``"sqrt"`` work here too; call ``loader.sampler.set_epoch(e)`` to resume).

    Batches stay uint8 (B, C, H, W) when the dataset has no transform (give it a ``size``
    so images stack); augment and normalise them on the device with
    :func:`random_crop_flip` and :func:`normalize`.

    ``shard=(rank, world_size)`` gives this process its disjoint part of every epoch (see
    :class:`ClassSampler`); with ``drop_last=True`` (training) the shards have equal length.
    """
    labels = getattr(dataset, "labels", None)
    if not isinstance(labels, Tensor):
        raise ValueError(
            f"{type(dataset).__name__} has no 'labels' tensor; class-aware sampling needs one"
        )
    sampler = ClassSampler(
        labels, sampling, seed, num_samples, shard=shard, drop_remainder=drop_last
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


_WORKER = "in DataLoader worker process"


@contextlib.contextmanager
def original_worker_errors() -> Iterator[None]:
    """Inside, a user's error raised in a DataLoader worker (a
    :class:`~neuralcollapse.errors.UsageError` such as an unreadable image, or an
    ``OSError`` such as a missing file) comes back with its original message.

    PyTorch re-raises a worker's exception in the main process with the worker's whole
    traceback as its message; the command line would then print that traceback squeezed
    into its one error line. Other exceptions (bugs) keep the traceback.
    """
    try:
        yield
    except (UsageError, OSError) as exc:
        text = str(exc)
        if _WORKER not in text:
            raise
        raise _rebuilt(exc, _original_message(type(exc), text)) from None


def _original_message(kind: type[BaseException], text: str) -> str:
    """The message of the worker's exception: what follows ``<module>.<Name>: `` on the
    last line of its formatted traceback that starts so (a message may span lines)."""
    pattern = re.compile(rf"^(?:[\w.]+\.)?{re.escape(kind.__name__)}: ", re.MULTILINE)
    starts = list(pattern.finditer(text))
    if not starts:
        return text.strip().splitlines()[-1]
    return text[starts[-1].end() :].strip()


def _rebuilt(exc: BaseException, message: str) -> BaseException:
    try:
        return type(exc)(message)
    except Exception:  # an exception type that takes other arguments
        return UsageError(message)
