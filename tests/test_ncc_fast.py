"""NC4's second pass scores float32 features in float32 with a proven error bound and
re-scores close calls in float64: its counts must equal an all-float64 computation's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralcollapse.metrics import CollapseStats, collapse_report
from neuralcollapse.metrics.ncc import NCCMismatchCounter


def _reference_counts(h: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray | None):
    """(mismatches, NCC hits, classifier hits) in float64 numpy, ties to the lower index."""
    k = w.shape[0]
    means = np.stack([h[y == c].mean(axis=0) for c in range(k)])
    distances = ((h[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    ncc = distances.argmin(axis=1)
    logits = h @ w.T + (0.0 if b is None else b)
    clf = logits.argmax(axis=1)
    return int((ncc != clf).sum()), int((ncc == y).sum()), int((clf == y).sum())


def _counts(report, n: int) -> tuple[int, int, int]:
    return (
        round(report.nc4_ncc_mismatch * n),
        round(report.ncc_accuracy * n),
        round(report.classifier_accuracy * n),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k, d", [(10, 16), (100, 64)])
def test_float32_pass_counts_equal_float64_reference(seed, k, d):
    gen = torch.Generator().manual_seed(seed)
    n = 3000
    y = torch.arange(n) % k
    # weakly separated classes: many rows lie near a decision boundary
    h = (0.3 * torch.randn(k, d, generator=gen)[y] + torch.randn(n, d, generator=gen)).float()
    w = torch.randn(k, d, generator=gen)
    b = 0.1 * torch.randn(k, generator=gen)
    report = collapse_report(h, y, classifier=w, bias=b)
    expected = _reference_counts(
        h.double().numpy(), y.numpy(), w.double().numpy(), b.double().numpy()
    )
    assert _counts(report, n) == expected
    assert 0 < expected[0] < n  # the data really has disagreements to count


def test_exact_ties_fall_back_to_float64_and_take_the_lower_index():
    # Two classes mirrored around the origin; rows on the bisector are equidistant from
    # both means and score equal logits under a classifier with equal rows.
    d = 8
    means = torch.zeros(2, d)
    means[0, 0], means[1, 0] = 1.0, -1.0
    ties = torch.zeros(20, d)
    ties[:, 1:] = torch.randn(20, d - 1, generator=torch.Generator().manual_seed(3))
    h = torch.cat([means[0] + ties, means[1] + ties, ties]).float()
    y = torch.cat([torch.zeros(20), torch.ones(20), torch.ones(20)]).long()
    stats = CollapseStats(2, d)
    stats.update(h, y)
    w = torch.ones(2, d)  # every logit ties
    counter = stats.ncc_mismatch_counter(classifier=w)
    counter.update(h, y)
    expected = _reference_counts(h.double().numpy(), y.numpy(), w.double().numpy(), None)
    result = counter.compute()
    assert (
        round(result.nc4_ncc_mismatch * 60),
        round(result.ncc_accuracy * 60),
        round(result.classifier_accuracy * 60),
    ) == expected


def test_large_offset_features_keep_exact_counts():
    gen = torch.Generator().manual_seed(4)
    k, d, n = 6, 24, 1200
    y = torch.arange(n) % k
    h = 1e6 + 0.5 * torch.randn(k, d, generator=gen)[y] + torch.randn(n, d, generator=gen)
    h = h.float()
    w = torch.randn(k, d, generator=gen)
    report = collapse_report(h, y, classifier=w)
    expected = _reference_counts(h.double().numpy(), y.numpy(), w.double().numpy(), None)
    assert _counts(report, n) == expected


def test_given_logits_and_classifier_scoring_agree():
    gen = torch.Generator().manual_seed(5)
    k, d, n = 5, 12, 500
    y = torch.arange(n) % k
    h = torch.randn(k, d, generator=gen)[y] + torch.randn(n, d, generator=gen)
    w = torch.randn(k, d, generator=gen)
    stats = CollapseStats(k, d)
    stats.update(h, y)
    own = stats.ncc_mismatch_counter(classifier=w)
    own.update(h, y)
    given = stats.ncc_mismatch_counter()
    given.update(h, y, (h.double() @ w.double().T).float())
    assert own.compute() == given.compute()


def test_counter_without_logits_or_classifier_says_what_is_missing():
    counter = NCCMismatchCounter(torch.eye(3, 4))
    with pytest.raises(ValueError, match="needs logits, or a counter built with classifier"):
        counter.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))


def test_nan_features_are_named_in_the_second_pass():
    counter = NCCMismatchCounter(torch.eye(3, 4), classifier=torch.eye(3, 4))
    h = torch.zeros(4, 4)
    h[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        counter.update(h, torch.zeros(4, dtype=torch.long))


def test_reduced_precision_float32_products_take_the_float64_path(monkeypatch):
    # TF32/bf16 products would break the float32 error bound: every row is scored in float64
    gen = torch.Generator().manual_seed(6)
    k, d, n = 4, 8, 200
    y = torch.arange(n) % k
    h = torch.randn(k, d, generator=gen)[y] + torch.randn(n, d, generator=gen)
    w = torch.randn(k, d, generator=gen)
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")
    calls = []
    original = torch.Tensor.float

    def counting_float(self, *args, **kwargs):
        calls.append(self.shape)
        return original(self, *args, **kwargs)

    stats = CollapseStats(k, d)
    stats.update(h, y)
    counter = stats.ncc_mismatch_counter(classifier=w)
    monkeypatch.setattr(torch.Tensor, "float", counting_float)
    counter.update(h, y)
    assert calls == []  # the float32 product never ran
    expected = _reference_counts(h.double().numpy(), y.numpy(), w.double().numpy(), None)
    result = counter.compute()
    got = (
        round(result.nc4_ncc_mismatch * n),
        round(result.ncc_accuracy * n),
        round(result.classifier_accuracy * n),
    )
    assert got == expected
