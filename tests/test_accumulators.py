"""The one accumulator contract, checked the same way on every accumulator of nc.metrics:
update / compute / reset / merge / all_reduce / state_dict / load_state_dict."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.metrics import (
    Accumulator,
    AccuracyCounter,
    CollapseReport,
    CollapseStats,
    HierarchicalCounter,
    NCCMismatchCounter,
    NCCResult,
)

CONTRACT = ("update", "compute", "reset", "merge", "all_reduce", "state_dict", "load_state_dict")
K, D, N = 5, 6, 90
LCA = Hierarchy.balanced([2, 3]).lca_heights()[:K, :K].contiguous()


def _data(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(K, D, generator=gen, dtype=torch.float64)
    y = torch.arange(N) % K
    h = means[y] + torch.randn(N, D, generator=gen, dtype=torch.float64)
    w = torch.randn(K, D, generator=gen, dtype=torch.float64)
    return h, y, h @ w.T


H, Y, LOGITS = _data()


def _class_means(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    stats = CollapseStats(K, D)
    stats.update(h, y)
    return stats.class_means()


@dataclasses.dataclass
class Case:
    """How to build, feed and read one kind of accumulator."""

    name: str
    make: Callable[[], Accumulator]
    args: Callable[[slice], tuple[Any, ...]]  # the update() arguments of rows[slice]
    compute: Callable[[Any], Any]
    make_other_config: Callable[[], Accumulator]
    rtol: float = 0.0
    variant: str = ""  # tells apart cases of one kind in the test ids


CASES = [
    Case(
        "CollapseStats",
        lambda: CollapseStats(K, D),
        lambda rows: (H[rows], Y[rows]),
        lambda acc: acc.compute(),
        lambda: CollapseStats(K, D + 1),
        rtol=1e-10,
    ),
    Case(
        "CollapseStats",
        lambda: CollapseStats(K, D),
        lambda rows: (H[rows].float(), Y[rows]),  # float32 products, summed in float64
        lambda acc: acc.compute(),
        lambda: CollapseStats(K, D + 1),
        rtol=1e-6,
        variant="float32",
    ),
    Case(
        "NCCMismatchCounter",
        lambda: NCCMismatchCounter(_class_means(H, Y)),
        lambda rows: (H[rows], Y[rows], LOGITS[rows]),
        lambda acc: acc.compute(),
        lambda: NCCMismatchCounter(_class_means(H[:40], Y[:40])),
    ),
    Case(
        "AccuracyCounter",
        lambda: AccuracyCounter(K),
        lambda rows: (LOGITS[rows], Y[rows]),
        lambda acc: acc.compute({"head": torch.tensor([0, 1]), "tail": torch.tensor([4])}),
        lambda: AccuracyCounter(K + 1),
    ),
    Case(
        "HierarchicalCounter",
        lambda: HierarchicalCounter(LCA, ks=(1, 3)),
        lambda rows: (LOGITS[rows], Y[rows]),
        lambda acc: acc.compute(),
        lambda: HierarchicalCounter(LCA, ks=(1, 2)),
        rtol=1e-12,
    ),
]
IDS = [f"{case.name}-{case.variant}" if case.variant else case.name for case in CASES]
ALL = slice(0, N)
HALVES = (slice(0, 37), slice(37, N))


def _fed(case: Case, *parts: slice) -> Accumulator:
    acc = case.make()
    for rows in parts:
        acc.update(*case.args(rows))
    return acc


def _plain(value: Any) -> Any:
    if isinstance(value, CollapseReport):
        return value.to_dict()
    if isinstance(value, NCCResult):
        return dataclasses.asdict(value)
    return value


def assert_same_result(a: Any, b: Any, rtol: float) -> None:
    a, b = _plain(a), _plain(b)
    assert a.keys() == b.keys()
    for key, x in a.items():
        y = b[key]
        if isinstance(x, float) and isinstance(y, float):
            assert (math.isnan(x) and math.isnan(y)) or y == pytest.approx(
                x, rel=rtol, abs=1e-12
            ), key
        else:
            assert x == y, key


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_accumulator_has_exactly_the_contract_methods(case):
    acc = case.make()
    assert isinstance(acc, Accumulator)
    for name in CONTRACT:
        assert callable(getattr(acc, name)), name
    for old in ("summary", "result"):
        assert not hasattr(acc, old), f"{old} was renamed to compute"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_merge_of_two_halves_equals_one_pass(case):
    first, second = (_fed(case, rows) for rows in HALVES)
    before = second.state_dict()
    assert first.merge(second) is first
    assert_same_state(second.state_dict(), before)  # the other is left unchanged
    assert_same_result(case.compute(_fed(case, ALL)), case.compute(first), case.rtol)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_batches_in_any_split_equal_one_pass(case):
    batched = _fed(case, *(slice(i, i + 7) for i in range(0, N, 7)))
    assert_same_result(case.compute(_fed(case, ALL)), case.compute(batched), case.rtol)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reset_equals_a_fresh_accumulator(case):
    acc = _fed(case, ALL)
    assert acc.reset() is None
    assert_same_state(acc.state_dict(), case.make().state_dict())
    acc.update(*case.args(HALVES[0]))
    assert_same_result(case.compute(_fed(case, HALVES[0])), case.compute(acc), 0.0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_all_reduce_without_a_process_group_is_a_no_op(case):
    acc = _fed(case, ALL)
    before = acc.state_dict()
    assert acc.all_reduce() is acc
    assert_same_state(acc.state_dict(), before)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_compute_leaves_the_state_unchanged(case):
    acc = _fed(case, ALL)
    before = acc.state_dict()
    first = case.compute(acc)
    assert_same_state(acc.state_dict(), before)
    assert_same_result(first, case.compute(acc), 0.0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_dict_round_trip_through_torch_save(case, tmp_path):
    acc = _fed(case, HALVES[0])
    state = acc.state_dict()
    assert state["kind"] == case.name and isinstance(state["version"], int)
    for key, value in state.items():
        assert isinstance(value, (torch.Tensor, int, float, str, list)), key
    torch.save(state, tmp_path / "state.pt")
    resumed = case.make()
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert_same_state(resumed.state_dict(), state)
    resumed.update(*case.args(HALVES[1]))
    assert_same_result(case.compute(_fed(case, ALL)), case.compute(resumed), case.rtol)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_dict_is_a_copy(case):
    acc = _fed(case, ALL)
    state = acc.state_dict()
    for value in state.values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value.fill_(math.nan)
        elif isinstance(value, torch.Tensor):
            value.fill_(7)
    assert_same_result(case.compute(_fed(case, ALL)), case.compute(acc), 0.0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_load_state_dict_rejects_a_wrong_shape_and_changes_nothing(case):
    acc = _fed(case, HALVES[0])
    before = acc.state_dict()
    state = _fed(case, ALL).state_dict()
    name = next(k for k, v in state.items() if isinstance(v, torch.Tensor) and k in _states(acc))
    state[name] = torch.zeros(3, 3, 3)
    with pytest.raises(ValueError, match=rf"entry '{name}' has shape \(3, 3, 3\), expected"):
        acc.load_state_dict(state)
    assert_same_state(acc.state_dict(), before)


def _states(acc: Accumulator) -> set[str]:
    return set(acc._specs)  # the declared state tensors


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_load_state_dict_rejects_missing_entries_other_kinds_and_versions(case):
    acc = case.make()
    with pytest.raises(ValueError, match="lacks"):
        acc.load_state_dict({"version": acc.state_version})
    state = acc.state_dict()
    with pytest.raises(ValueError, match="not a"):
        acc.load_state_dict({**state, "kind": "SomethingElse"})
    with pytest.raises(ValueError, match="version 99 is not supported"):
        acc.load_state_dict({**state, "version": 99})
    with pytest.raises(ValueError, match="the dict returned by"):
        acc.load_state_dict([1, 2])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_merge_and_load_reject_another_configuration(case):
    acc = _fed(case, ALL)
    before = acc.state_dict()
    other = case.make_other_config()
    with pytest.raises(ValueError, match="the other"):
        acc.merge(other)
    with pytest.raises(ValueError, match="the state dict has"):
        acc.load_state_dict(other.state_dict())
    assert_same_state(acc.state_dict(), before)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_merge_rejects_another_kind(case):
    acc = case.make()
    stranger = next(c for c in CASES if c.name != case.name).make()
    with pytest.raises(ValueError, match=f"merge\\(\\) takes a {case.name}"):
        acc.merge(stranger)


def test_base_class_rejects_bad_declarations():
    acc = Accumulator()
    acc.add_state("x", torch.zeros(2))
    with pytest.raises(ValueError, match="declared twice"):
        acc.add_state("x", torch.zeros(2))
    with pytest.raises(ValueError, match="reduce must be one of"):
        acc.add_state("y", torch.zeros(2), reduce="max")
    acc.add_state("z", torch.zeros(2), reduce=None)
    with pytest.raises(NotImplementedError, match="must override _merge"):
        acc.merge(Accumulator())
