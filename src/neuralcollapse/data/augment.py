"""Batched augmentation on the device: random-resized crops, centre crops and colour jitter.

The ImageNet-style training crop (Szegedy et al. 2015, as torchvision's
``RandomResizedCrop``): per image, a box covering a random fraction ``scale`` of the area
with a random aspect ratio (log-uniform in ``ratio``), resized to ``size x size``; here for
a whole batch at once with one ``grid_sample`` (bilinear, no anti-aliasing), so in-memory
and streamed sets are augmented alike on the accelerator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "apply_color_jitter",
    "center_crop",
    "color_jitter",
    "jitter_draws",
    "random_resized_crop",
]

_TRIES = 10


def _crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator | None,
) -> Tensor:
    """(B, 4) float64 boxes (x0, y0, w, h) in pixels: the first of ``_TRIES`` random draws
    that fits the image, else the largest centred box of an allowed aspect ratio."""
    area = height * width
    fractions = torch.empty(batch, _TRIES, dtype=torch.float64).uniform_(
        scale[0], scale[1], generator=generator
    )
    log_ratio = torch.empty(batch, _TRIES, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    aspect = log_ratio.exp()
    w = torch.sqrt(fractions * area * aspect).round()
    h = torch.sqrt(fractions * area / aspect).round()
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((batch,), -1))
    offsets = torch.rand(batch, 2, dtype=torch.float64, generator=generator)
    rows = torch.arange(batch)
    w_pick, h_pick = w[rows, first.clamp(min=0)], h[rows, first.clamp(min=0)]
    # fallback: the whole image, cut to the nearest allowed aspect ratio
    whole = width / height
    if whole < ratio[0]:
        fb_w, fb_h = float(width), float(round(width / ratio[0]))
    elif whole > ratio[1]:
        fb_w, fb_h = float(round(height * ratio[1])), float(height)
    else:
        fb_w, fb_h = float(width), float(height)
    missing = first < 0
    w_pick = torch.where(missing, torch.full_like(w_pick, fb_w), w_pick)
    h_pick = torch.where(missing, torch.full_like(h_pick, fb_h), h_pick)
    x0 = torch.floor(offsets[:, 0] * (width - w_pick + 1))
    y0 = torch.floor(offsets[:, 1] * (height - h_pick + 1))
    x0 = torch.where(missing, (width - w_pick) // 2, x0)
    y0 = torch.where(missing, (height - h_pick) // 2, y0)
    return torch.stack([x0, y0, w_pick, h_pick], dim=1)


def random_resized_crop(
    images: Tensor,
    size: int,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random-resized crops (and random horizontal flips) of a batch, on its device.

    Args:
        images: (B, C, H, W); uint8 is converted to float32 (values kept, 0..255).
        size: output side S.
        scale: range of the crop's area as a fraction of the image's, within (0, 1].
        ratio: range of the crop's width / height (drawn log-uniformly).
        flip: mirror a random half of the crops left-right.
        generator: CPU generator of every random draw.

    Returns:
        (B, C, S, S) floating tensor on the images' device.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {tuple(ratio)}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    b, c, h, w = images.shape
    boxes = _crop_boxes(b, h, w, scale, ratio, generator)
    x0, y0, bw, bh = boxes.unbind(1)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = bw / w
    theta[:, 0, 2] = (2 * x0 + bw) / w - 1
    theta[:, 1, 1] = bh / h
    theta[:, 1, 2] = (2 * y0 + bh) / h - 1
    if flip:
        mirrored = torch.rand(b, generator=generator) < 0.5
        theta[:, 0, 0] = torch.where(mirrored, -theta[:, 0, 0], theta[:, 0, 0])
    source = images if images.is_floating_point() else images.float()
    theta = theta.to(device=images.device, dtype=source.dtype)
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


def center_crop(images: Tensor, size: int) -> Tensor:
    """The central ``size x size`` window of every image of a (B, C, H, W) batch."""
    h, w = images.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"cannot centre-crop {size} x {size} out of {h} x {w} images")
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size]


# ITU-R 601-2 luma, the weights of torchvision's rgb_to_grayscale
_LUMA = (0.2989, 0.587, 0.114)


def _grayscale(images: Tensor) -> Tensor:
    """(B, 1, H, W) luma of (B, C, H, W) images in [0, 1] (a one-channel image is its own)."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def jitter_draws(
    batch: int, strength: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Per image, the (B, 3) brightness, contrast and saturation factors, uniform in
    [1 - strength, 1 + strength] (clamped at 0), and the (B, 3) order the three are applied
    in (a random permutation of 0, 1, 2 each)."""
    factors = 1 + strength * (
        2 * torch.rand(batch, 3, generator=generator, dtype=torch.float64) - 1
    )
    order = torch.argsort(torch.rand(batch, 3, generator=generator), dim=1)
    return factors.clamp(min=0.0), order


def apply_color_jitter(images: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Brightness, contrast and saturation changes of (B, C, H, W) images in [0, 1], per
    image by ``factors`` (B, 3) in the per-image ``order`` (B, 3), each result clamped to
    [0, 1] as torchvision's ``ColorJitter`` does (hue is left alone):

    * brightness f: ``f x``;
    * contrast f: ``f x + (1 - f) m``, m the mean luma of the image;
    * saturation f: ``f x + (1 - f) g``, g the pixel's luma.
    """
    b = images.shape[0]
    f = factors.to(device=images.device, dtype=images.dtype).view(b, 3, 1, 1, 1)
    order = order.to(images.device)
    for slot in range(3):
        step = order[:, slot].view(b, 1, 1, 1)
        gray = _grayscale(images)
        candidates = (
            images * f[:, 0],
            f[:, 1] * images + (1 - f[:, 1]) * gray.mean(dim=(2, 3), keepdim=True),
            f[:, 2] * images + (1 - f[:, 2]) * gray,
        )
        picked = torch.where(step == 0, candidates[0], candidates[1])
        picked = torch.where(step == 2, candidates[2], picked)
        images = picked.clamp(0.0, 1.0)
    return images


def color_jitter(
    images: Tensor, strength: float, generator: torch.Generator | None = None
) -> Tensor:
    """Random brightness, contrast and saturation jitter of ``strength`` (torchvision's
    ``ColorJitter(strength, strength, strength, hue=0)``) for a batch of (B, C, H, W)
    images in [0, 1], on their device; random draws from the CPU ``generator``."""
    if strength == 0:
        return images
    factors, order = jitter_draws(images.shape[0], strength, generator)
    return apply_color_jitter(images, factors, order)
