"""data.color_jitter: torchvision's ColorJitter(s, s, s, hue=0) semantics on a batch, checked
against a per-image float64 implementation written from those formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralcollapse.data.augment import apply_color_jitter, color_jitter, jitter_draws
from neuralcollapse.train.config import load_config

LUMA = np.array([0.2989, 0.587, 0.114])


def _reference(image: np.ndarray, factors: np.ndarray, order: np.ndarray) -> np.ndarray:
    """One (C, H, W) image in [0, 1]: brightness, contrast, saturation in ``order``."""
    x = image.astype(np.float64)
    for op in order:
        gray = x if x.shape[0] == 1 else np.tensordot(LUMA, x, axes=1)[None]
        f = factors[op]
        if op == 0:
            x = f * x
        elif op == 1:
            x = f * x + (1 - f) * gray.mean()
        else:
            x = f * x + (1 - f) * gray
        x = np.clip(x, 0.0, 1.0)
    return x


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_jitter_equals_the_per_image_formulas(channels, seed):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(6, channels, 5, 7, generator=gen, dtype=torch.float64)
    factors, order = jitter_draws(6, 0.4, gen)
    got = apply_color_jitter(images, factors, order).numpy()
    for i in range(6):
        expected = _reference(images[i].numpy(), factors[i].numpy(), order[i].numpy())
        np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-12)


def test_draws_cover_the_range_and_every_order():
    factors, order = jitter_draws(4000, 0.4, torch.Generator().manual_seed(3))
    assert 0.6 <= float(factors.min()) < 0.61 and 1.39 < float(factors.max()) <= 1.4
    assert sorted(order[0].tolist()) == [0, 1, 2]
    assert len({tuple(row) for row in order.tolist()}) == 6  # all 3! orders occur


def test_zero_strength_changes_nothing_and_values_stay_in_range():
    images = torch.rand(3, 3, 4, 4, generator=torch.Generator().manual_seed(4))
    assert color_jitter(images, 0.0) is images
    jittered = color_jitter(images, 0.9, torch.Generator().manual_seed(5))
    assert float(jittered.min()) >= 0 and float(jittered.max()) <= 1
    assert not torch.equal(jittered, images)


def test_config_key_is_bounded():
    assert load_config(None, ["data.color_jitter=0.4"]).data.color_jitter == 0.4
    with pytest.raises(ValueError, match="data.color_jitter"):
        load_config(None, ["data.color_jitter=1.5"])


def test_training_batches_are_jittered_and_evaluation_batches_are_not(tmp_path):
    from neuralcollapse.train.assembly import assemble

    overrides = ["data.color_jitter=0.5", "train.device=cpu", "data.val_fraction=0"]
    plain = load_config(None, ["train.device=cpu", "data.val_fraction=0"])
    jittered = load_config(None, overrides)
    _, plain_loaders, _ = assemble(plain, torch.device("cpu"))
    _, jitter_loaders, _ = assemble(jittered, torch.device("cpu"))
    x_plain, _ = next(iter(plain_loaders.train))
    x_jitter, _ = next(iter(jitter_loaders.train))
    assert x_plain.shape == x_jitter.shape and not torch.allclose(x_plain, x_jitter)
    test_plain, _ = next(iter(plain_loaders.test))
    test_jitter, _ = next(iter(jitter_loaders.test))
    assert torch.equal(test_plain, test_jitter)
