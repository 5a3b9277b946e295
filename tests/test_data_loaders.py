"""Device-resident loader: batched crop/flip, normalisation, sampling, mixup/cutmix,
determinism."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.data import (
    DeviceLoader,
    MixedBatch,
    channel_stats,
    class_counts,
    cutmix,
    epoch_generator,
    epoch_indices,
    mixup,
    normalize,
    random_crop_flip,
)


def _images(n=64, c=3, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def _reference_crop_flip(images, padding, generator, flip=True):
    """Per-image loop drawing the same random numbers in the same order."""
    b, _, h, w = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)
    flips = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    padded = F.pad(images, (padding,) * 4)
    out = []
    for i in range(b):
        dy, dx = int(offsets[0, i]), int(offsets[1, i])
        crop = padded[i, :, dy : dy + h, dx : dx + w]
        out.append(crop.flip(2) if flips[i] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("padding", [0, 1, 4])
@pytest.mark.parametrize("flip", [True, False])
def test_batched_crop_flip_matches_per_image_reference(padding, flip):
    images = _images(16, h=8, w=6)
    got = random_crop_flip(images, padding, flip, torch.Generator().manual_seed(3))
    want = _reference_crop_flip(images, padding, torch.Generator().manual_seed(3), flip)
    assert got.dtype == torch.uint8 and torch.equal(got, want)


def test_crop_pads_with_zero_and_keeps_content():
    images = torch.full((200, 1, 4, 4), 7, dtype=torch.uint8)
    out = random_crop_flip(images, 4, True, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0, 7}
    # offset 4 in both axes is the identity crop; some images must get it
    assert any(torch.equal(o, images[0]) for o in out)


def test_crop_flip_errors():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        random_crop_flip(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="padding must be >= 0"):
        random_crop_flip(torch.zeros(1, 1, 4, 4), padding=-1)


def test_normalize_and_channel_stats():
    images = _images(32)
    mean, std = channel_stats(images)
    x = normalize(images, mean, std)
    assert x.dtype == torch.float32
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.equal(
        normalize(torch.tensor([[[[255]]]], dtype=torch.uint8)), torch.ones(1, 1, 1, 1)
    )
    floats = torch.rand(2, 1, 3, 3)
    kept = floats.clone()
    assert torch.equal(normalize(floats), floats), "float input is taken as already in [0, 1]"
    assert torch.equal(normalize(floats, [0.5], [2.0]), (kept - 0.5) / 2.0)
    assert torch.equal(floats, kept), "the input is not modified"
    with pytest.raises(ValueError, match="one per channel"):
        normalize(floats, [0.5, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(floats, [0.5], [0.0])


def test_loader_batches_equal_random_crop_flip_of_the_same_indices():
    images, labels = _images(40), torch.arange(40)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    loader = DeviceLoader(
        images, labels, 16, crop_padding=4, flip=True, mean=mean, std=std, seed=11
    )
    generator = epoch_generator(11, 0)
    order = epoch_indices(labels, "shuffle", generator)
    for i, (x, y) in enumerate(loader):
        idx = order[16 * i : 16 * (i + 1)]
        assert torch.equal(y, labels[idx])
        want = normalize(random_crop_flip(images[idx], 4, True, generator), mean, std)
        assert torch.allclose(x, want, atol=1e-6)


def _loader(**kwargs):
    images = _images(50)
    labels = torch.arange(50) % 5
    options = {"batch_size": 16, "crop_padding": 4, "flip": True, "seed": 7}
    options.update(kwargs)
    return DeviceLoader(images, labels, **options)


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_loader_yields_normalised_batches_covering_the_epoch():
    loader = _loader(mean=[0.5] * 3, std=[0.25] * 3)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 4
    assert [y.numel() for _, y in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    seen = torch.cat([y for _, y in batches])
    assert torch.equal(torch.bincount(seen), torch.full((5,), 10))
    assert float(x.min()) >= -2.0 - 1e-6 and float(x.max()) <= 2.0 + 1e-6
    assert len(_loader(drop_last=True)) == 3


def test_loader_same_seed_same_batches_and_resume():
    first, second = _loader(), _loader()
    e0, e1 = _epoch(first), _epoch(first)
    for (xa, ya), (xb, yb) in zip(e0, _epoch(second), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(e0[0][0], e1[0][0]), "a new epoch reshuffles and re-augments"
    resumed = _loader()
    resumed.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(e1, _epoch(resumed), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = _epoch(_loader(seed=8))
    assert not torch.equal(e0[0][1], other[0][1])


def test_loader_leaves_global_rng_alone():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    _epoch(_loader())
    assert torch.equal(state, torch.get_rng_state())


def test_loader_without_augmentation_returns_the_images():
    images = _images(10)
    loader = DeviceLoader(images, torch.zeros(10, dtype=torch.int64), 4, sampling="sequential")
    x = torch.cat([b for b, _ in loader])
    assert torch.allclose(x, images.float() / 255, rtol=0, atol=1e-6)  # x * (1/255): 1 ulp


def test_loader_class_balanced_sampling_is_near_uniform():
    counts = class_counts(500, 10, 50)  # 1,434 images, 500 down to 10 per class
    labels = torch.repeat_interleave(torch.arange(10), counts)
    images = torch.zeros(labels.numel(), 1, 2, 2, dtype=torch.uint8)
    loader = DeviceLoader(images, labels, 256, sampling="balanced", num_samples=20_000)
    seen = torch.cat([y for _, y in loader])
    freq = torch.bincount(seen, minlength=10).double() / seen.numel()
    assert seen.numel() == 20_000
    assert float((freq - 0.1).abs().max()) < 0.01, freq


def test_loader_errors():
    images = _images(4)
    with pytest.raises(ValueError, match="labels"):
        DeviceLoader(images, torch.zeros(3, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images, torch.zeros(4, dtype=torch.int64), 0)
    with pytest.raises(ValueError, match="unknown sampling 'weighted'"):
        DeviceLoader(images, torch.zeros(4, dtype=torch.int64), 2, sampling="weighted")
    with pytest.raises(ValueError, match="data set is empty"):
        DeviceLoader(images[:0], torch.zeros(0, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="crop_padding"):
        DeviceLoader(images, torch.zeros(4, dtype=torch.int64), 2, crop_padding=-4)


def test_mixup_mixes_pairs_with_one_lambda():
    x = torch.randn(8, 3, 4, 4)
    y = torch.arange(8)
    out = mixup(x, y, alpha=1.0, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, MixedBatch)
    mixed, y_a, y_b, lam = out
    assert 0.0 <= lam <= 1.0 and torch.equal(y_a, y)
    assert torch.equal(y_b.sort().values, y), "y_b is a permutation of y"
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[y_b])
    again = mixup(x, y, alpha=1.0, generator=torch.Generator().manual_seed(0))
    assert again.lam == lam and torch.equal(again.y_b, y_b)


def test_mixup_lambda_distribution():
    g = torch.Generator().manual_seed(0)
    x, y = torch.zeros(2, 1), torch.arange(2)
    lams = torch.tensor([mixup(x, y, 0.2, g).lam for _ in range(2000)])
    # Beta(0.2, 0.2): mean 1/2, mass near the ends
    assert abs(float(lams.mean()) - 0.5) < 0.05
    assert float(((lams < 0.1) | (lams > 0.9)).float().mean()) > 0.5
    with pytest.raises(ValueError, match="alpha must be > 0"):
        mixup(x, y, 0.0, g)


def test_cutmix_lambda_is_the_kept_area():
    g = torch.Generator().manual_seed(1)
    x = torch.arange(4).float().view(4, 1, 1, 1).expand(4, 1, 8, 8).contiguous()
    y = torch.arange(4)
    for _ in range(20):
        mixed, y_a, y_b, lam = cutmix(x, y, 1.0, g)
        kept = (mixed == x).float().mean(dim=(1, 2, 3))
        swapped = y_b != y_a
        assert torch.allclose(kept[swapped], torch.full_like(kept[swapped], lam))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        cutmix(torch.zeros(4, 8), y, 1.0, g)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(b=st.integers(1, 6), h=st.integers(1, 9), w=st.integers(1, 9), pad=st.integers(0, 5))
def test_crop_flip_shape_and_value_set_property(b, h, w, pad):
    images = _images(b, 2, h, w)
    out = random_crop_flip(images, pad, True, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    allowed = set(images.unique().tolist()) | {0}
    assert set(out.unique().tolist()) <= allowed
