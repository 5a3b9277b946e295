"""NC1 from the second pass: ``CollapseStats(scatter=False)`` keeps no d x d scatter and
takes the within-class scatter projected on the class means from the NC4 counter
(``NCCMismatchCounter(within=True)``). Every metric must match the float64 NumPy
reference as the scatter path does, and the NC4 counts must stay exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralcollapse.heads import FixedFrameHead
from neuralcollapse.metrics import CollapseStats, NCCMismatchCounter, collapse_report
from neuralcollapse.metrics.evaluation import _Accumulators
from test_metrics import _loader, assert_matches, make_data, reference, simplex_etf_rows


def _two_pass(h, y, k, w=None, b=None, *, batch=64, global_mean="weighted", **stats_kw):
    stats = CollapseStats(k, h.shape[1], scatter=False, global_mean=global_mean, **stats_kw)
    for i in range(0, len(y), batch):
        stats.update(h[i : i + batch], y[i : i + batch])
    counter = stats.ncc_mismatch_counter(w, b)
    for i in range(0, len(y), batch):
        counter.update(h[i : i + batch], y[i : i + batch])
    return stats, counter


# float32 features: NC1 within the documented relative 1e-6 of float64; float64 features:
# a float64 projection, to float64 round-off.
CASES = {
    "float32": ({}, torch.float32, 1e-6),
    "float32 balanced": ({"global_mean": "balanced"}, torch.float32, 1e-6),
    "float32 offset 1e6": ({"offset": 1e6}, torch.float32, 1e-6),
    "float32 offset 1e3 tiny spread": ({"offset": 1e3, "spread": 1e-3}, torch.float32, 1e-6),
    "float32 imbalanced": ({"counts": [300, 120, 40, 9, 3, 2, 1]}, torch.float32, 1e-6),
    "float32 imbalanced balanced": (
        {"counts": [300, 120, 40, 9, 3, 2, 1], "global_mean": "balanced"},
        torch.float32,
        1e-6,
    ),
    "float64": ({}, torch.float64, 1e-9),
    "float64 offset 1e3": ({"offset": 1e3}, torch.float64, 1e-9),
}


@pytest.mark.parametrize("case", list(CASES))
def test_second_pass_nc1_matches_the_float64_reference(case):
    kwargs, dtype, rtol = CASES[case]
    global_mean = kwargs.pop("global_mean", "weighted")
    k, d = 7, 24
    h, y, w, b = make_data(5, 900, k, d, **kwargs)
    h = h.to(dtype)
    stats, counter = _two_pass(h, y, k, w, b, global_mean=global_mean)
    assert counter.within and counter.within_dtype == dtype
    report = stats.compute(w, b, ncc=counter)
    expected = reference(h.double().numpy(), y.numpy(), k, w.numpy(), b.numpy(), global_mean)
    assert_matches(report, expected, rtol=rtol)


def test_absent_classes_and_more_classes_than_dimensions():
    # K' = 9 > d = 6: Sigma_B has rank d, the Gram route takes its eigenvectors
    k, d = 12, 6
    h, y, w, _ = make_data(2, 700, k, d, counts=[80] * 9 + [0, 0, 0])  # 9-11 absent
    stats, counter = _two_pass(h.float(), y, k, w)
    report = stats.compute(w, ncc=counter)
    assert report.absent_classes == (9, 10, 11)
    assert_matches(report, reference(h.float().double().numpy(), y.numpy(), k, w.numpy()), 1e-6)


def test_report_equals_the_scatter_path_and_the_counts_are_exact():
    k, d = 10, 32
    h, y, w, b = make_data(9, 2000, k, d, spread=2.5)  # overlapping classes: many near-ties
    h = h.float()
    scatter = CollapseStats(k, d)
    for i in range(0, 2000, 256):
        scatter.update(h[i : i + 256], y[i : i + 256])
    plain = scatter.ncc_mismatch_counter(w, b)
    for i in range(0, 2000, 256):
        plain.update(h[i : i + 256], y[i : i + 256])
    stats, counter = _two_pass(h, y, k, w, b, batch=256)
    got, expected = stats.compute(w, b, ncc=counter), scatter.compute(w, b, ncc=plain)
    assert counter.compute() == plain.compute()  # NC4 counts: identical, not close
    assert 0.0 < got.nc4_ncc_mismatch < 1.0
    for name, value in expected.to_dict().items():
        if isinstance(value, float):
            assert got.to_dict()[name] == pytest.approx(value, rel=1e-6, abs=1e-13), name
        else:
            assert got.to_dict()[name] == value, name


def test_class_centred_scoring_breaks_exact_ties_like_float64():
    # rows on the bisector of two mirrored means, and a classifier with equal rows: every
    # tie must be re-scored in float64 and go to the lower class index
    d = 8
    means = torch.zeros(2, d)
    means[0, 0], means[1, 0] = 1.0, -1.0
    ties = torch.zeros(20, d)
    ties[:, 1:] = torch.randn(20, d - 1, generator=torch.Generator().manual_seed(3))
    h = torch.cat([means[0] + ties, means[1] + ties]).float()
    y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    w = torch.ones(2, d)
    stats, counter = _two_pass(h, y, 2, w, batch=40)
    result = counter.compute()
    # the NCC rule is right on every row; the tied logits all go to class 0
    assert (result.ncc_accuracy, result.classifier_accuracy) == (1.0, 0.5)
    assert result.nc4_ncc_mismatch == 0.5


def test_projected_scatter_merges_reduces_and_round_trips():
    k, d = 5, 16
    h, y, w, _ = make_data(4, 600, k, d)
    h = h.float()
    stats, whole = _two_pass(h, y, k, w, batch=50)  # the same float32 chunks as below
    parts = [stats.ncc_mismatch_counter(w) for _ in range(2)]
    for i in range(0, 600, 50):
        parts[(i // 50) % 2].update(h[i : i + 50], y[i : i + 50])
    merged = parts[0].merge(parts[1])
    expected, _, counts = whole.projected_scatter()
    got, basis, got_counts = merged.projected_scatter()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-9)
    assert torch.equal(got_counts, counts) and basis.shape == (k, d)
    assert torch.equal(got, got.T)  # the lower blocks are mirrored
    # all_reduce without a process group is a no-op
    assert torch.equal(merged.all_reduce().projected_scatter()[0], got)
    state = merged.state_dict()
    fresh = stats.ncc_mismatch_counter(w)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.projected_scatter()[0], got)
    assert stats.compute(w, ncc=fresh).nc1 == stats.compute(w, ncc=merged).nc1
    fresh.reset()
    assert not fresh.projected_scatter()[0].any()


def test_without_scatter_compute_says_what_it_needs():
    k, d = 4, 8
    h, y, w, _ = make_data(1, 200, k, d)
    stats, counter = _two_pass(h.float(), y, k, w)
    with pytest.raises(ValueError, match="keep no scatter .* ncc=stats.ncc_mismatch_counter"):
        stats.compute(w)
    plain = NCCMismatchCounter(stats.class_means(), classifier=w)
    plain.update(h.float(), y)
    with pytest.raises(ValueError, match="holds no projected scatter"):
        stats.compute(w, ncc=plain)
    short = stats.ncc_mismatch_counter(w)
    short.update(h[:150].float(), y[:150])
    with pytest.raises(ValueError, match="saw 150 samples .* hold 200"):
        stats.compute(w, ncc=short)
    relabelled = y.clone()
    relabelled[0] = (y[0] + 1) % k  # as many samples, one in another class
    swapped = stats.ncc_mismatch_counter(w)
    swapped.update(h.float(), relabelled)
    with pytest.raises(ValueError, match="other samples per class"):
        stats.compute(w, ncc=swapped)
    with pytest.raises(ValueError, match="holds no projected scatter"):
        plain.projected_scatter()


def test_within_counter_refuses_labels_without_a_mean_and_bad_arguments():
    means = torch.tensor([[0.0, 1.0], [1.0, 0.0], [float("nan"), float("nan")]])
    counter = NCCMismatchCounter(means, within=True)
    with pytest.raises(ValueError, match=r"classes \[2\] have no class mean"):
        counter.update(torch.randn(4, 2), torch.tensor([0, 1, 2, 2]), torch.randn(4, 3))
    assert counter.projected_scatter()[2].sum() == 0  # nothing was added
    with pytest.raises(ValueError, match="within must be True or False"):
        NCCMismatchCounter(means, within="yes")
    with pytest.raises(ValueError, match="within_dtype must be torch.float32 or torch.float64"):
        NCCMismatchCounter(means, within=True, within_dtype=torch.float16)
    with pytest.raises(ValueError, match="scatter must be True or False"):
        CollapseStats(3, 2, scatter="no")


def test_merge_and_load_keep_scatter_and_no_scatter_apart():
    with_scatter, without = CollapseStats(3, 4), CollapseStats(3, 4, scatter=False)
    with pytest.raises(ValueError, match="with_scatter=False .* with_scatter=True"):
        with_scatter.merge(without)
    with pytest.raises(ValueError, match="with_scatter"):
        with_scatter.load_state_dict(without.state_dict())


def test_float64_features_keep_a_float64_projection_through_merge_and_state():
    h, y, _, _ = make_data(3, 300, 4, 8)
    a, b = CollapseStats(4, 8, scatter=False), CollapseStats(4, 8, scatter=False)
    a.update(h[:150], y[:150])
    b.update(h[150:].float(), y[150:])
    assert a.ncc_mismatch_counter().within_dtype == torch.float64
    assert b.ncc_mismatch_counter().within_dtype == torch.float32
    b.merge(a)
    assert b.ncc_mismatch_counter().within_dtype == torch.float64
    c = CollapseStats(4, 8, scatter=False)
    c.load_state_dict(b.state_dict())
    assert c.ncc_mismatch_counter().within_dtype == torch.float64


@pytest.mark.parametrize(
    ("k", "d", "second_pass", "scatter"),
    [
        (10, 128, True, False),
        (10, 128, False, True),  # no second pass to take NC1 from
        (200, 128, True, True),  # K > d: the projection would be larger than the scatter
        (128, 128, True, False),
        (10, 64, True, True),  # d <= 64: the scatter costs little
    ],
)
def test_the_driver_drops_the_scatter_only_when_a_second_pass_follows_and_k_le_d(
    k, d, second_pass, scatter
):
    accumulators = _Accumulators(k, "weighted", None)
    accumulators.create(torch.device("cpu"), d, second_pass=second_pass)
    assert accumulators.stats is not None and accumulators.stats.scatter is scatter


def test_collapse_report_takes_nc1_from_the_second_pass(monkeypatch):
    k, d = 6, 80
    h, y, w, b = make_data(8, 1500, k, d)
    built = []
    monkeypatch.setattr(
        NCCMismatchCounter, "projected_scatter", _recording(NCCMismatchCounter, built)
    )
    report = collapse_report(h.float(), y, classifier=w, bias=b)
    assert built == ["means"]  # NC1 came from the projection on the means
    expected = reference(h.float().double().numpy(), y.numpy(), k, w.numpy(), b.numpy())
    assert_matches(report, expected, rtol=1e-6)
    assert np.isfinite(report.nc1) and report.nc1 > 0


def _recording(cls, calls):
    original = cls.projected_scatter

    def projected_scatter(self):
        calls.append(self.within_space)
        return original(self)

    return projected_scatter


def _means_with_condition(k, d, smallest, seed=0):
    """(k, d) means whose centred Gram has nonzero eigenvalues 9 (k - 2 of them) and
    9 * smallest^2: condition number 1 / smallest^2."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=torch.float64))
    simplex = torch.eye(k, dtype=torch.float64) - 1.0 / k  # centred, rank k - 1
    u, _, _ = torch.linalg.svd(simplex)
    scales = torch.ones(k, dtype=torch.float64)
    scales[k - 2], scales[k - 1] = smallest, 0.0
    return 3.0 * (u[:, :k] * scales) @ basis.T


@pytest.mark.parametrize(("smallest", "space"), [(1.0, "means"), (0.003, "features")])
def test_the_second_pass_projects_on_the_means_only_when_they_are_well_conditioned(smallest, space):
    k, d, n = 5, 8, 600
    means = _means_with_condition(k, d, smallest)
    gen = torch.Generator().manual_seed(1)
    y = torch.arange(n) % k
    h = (means[y] + 0.5 * torch.randn(n, d, generator=gen, dtype=torch.float64)).float()
    w = means.float() + 0.1
    stats, counter = _two_pass(h, y, k, w)
    assert counter.within_space == space
    gram = stats._geometry(torch.arange(k)).gram
    eigenvalues = torch.linalg.eigvalsh(gram)[1:]
    condition = float(eigenvalues[-1] / eigenvalues[0])
    estimate = stats._geometry(torch.arange(k)).condition_estimate()
    assert condition / 10 <= estimate <= condition * (1 + 1e-9)
    expected = reference(h.double().numpy(), y.numpy(), k, w.double().numpy())
    assert_matches(stats.compute(w, ncc=counter), expected, rtol=1e-6)


def test_within_space_is_checked():
    means = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match='within_space must be "means" or "features"'):
        NCCMismatchCounter(means, within=True, within_space="pixels")


@pytest.mark.parametrize("seed", [12, 16, 17, 18, 20])
def test_a_few_barely_separated_classes_keep_nc1_to_1e_6(seed):
    # A random network's features (4 classes, d = 6, 120 samples, NC1 ~ 50-400): with
    # float32 sums of the projected rows these seeds lost 1.1e-6 to 5.2e-6 of NC1;
    # summed in float64 (K' <= 64) they stay within 1.3e-7.
    frame = torch.tensor(simplex_etf_rows(4, 6, seed=2), dtype=torch.float32)
    torch.manual_seed(seed)  # the head's random projection
    head = FixedFrameHead(3, frame)
    _, x, y = _loader()
    with torch.no_grad():
        _, h = head.eval()(x, return_features=True)
    stats, counter = _two_pass(h, y, 4, w=head.weight.detach(), batch=120)
    assert counter.within_space == "means"
    report = stats.compute(ncc=counter)
    assert report.nc1 > 10.0
    assert report.nc1 == pytest.approx(reference(h.double().numpy(), y.numpy(), 4)["nc1"], rel=1e-6)
