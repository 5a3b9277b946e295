"""all_reduce across two gloo processes: CollapseStats and NCCMismatchCounter by hand, and
every accumulator through the evaluation driver (evaluate_stream(distributed=True))."""

from __future__ import annotations

import datetime
import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.metrics import CollapseStats, evaluate_stream

WORLD = 2
K, D, N = 6, 9, 240

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)


def _data(dim: int = D, dtype: torch.dtype = torch.float64):
    gen = torch.Generator().manual_seed(3)
    means = 4.0 * torch.randn(K, dim, generator=gen, dtype=torch.float64) + 100.0
    y = torch.randint(0, K, (N,), generator=gen)
    # Rank 1 never sees class 5, so the ranks hold different class sets (and every class
    # gets a different shift on each rank).
    y[N // 2 :][y[N // 2 :] == 5] = 4
    h = means[y] + torch.randn(N, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(K, dim, generator=gen, dtype=torch.float64)
    return h.to(dtype), y, w.to(dtype)


def _accumulate(h, y):
    stats = CollapseStats(K, D)
    for i in range(0, len(y), 16):
        stats.update(h[i : i + 16], y[i : i + 16])
    return stats


def _worker(rank: int, init_file: str, out_file: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        h, y, w = _data()
        shard = slice(rank * N // WORLD, (rank + 1) * N // WORLD)
        stats = _accumulate(h[shard], y[shard]).all_reduce()
        counter = stats.ncc_mismatch_counter()
        counter.update(h[shard], y[shard], h[shard] @ w.T)
        counter.all_reduce()
        report = stats.compute(w, ncc=counter).to_dict()
        with open(f"{out_file}.{rank}", "w") as handle:
            json.dump(report, handle)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_gloo_ranks_all_reduce_to_one_process(tmp_path):
    out = tmp_path / "report"
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
    h, y, w = _data()
    stats = _accumulate(h, y)
    counter = stats.ncc_mismatch_counter()
    counter.update(h, y, h @ w.T)
    expected = stats.compute(w, ncc=counter).to_dict()
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"report.{rank}").read_text())
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-10, abs=1e-13), name
            else:
                assert got[name] == value, name


# Uneven shards: rank 0 takes the first 200 samples, rank 1 the last 40; in the second
# evaluation rank 1 has none at all and still takes part in every collective.
SHARDS = {"uneven": (slice(0, 200), slice(200, N)), "empty": (slice(0, N), slice(N, N))}
GROUPS = {"head": torch.tensor([0, 1, 2]), "tail": torch.tensor([4, 5])}
TRAIN_COUNTS = torch.tensor([50, 40, 5, 30, 2, 20])


def _evaluate(h, y, w, rows, distributed):
    lca = Hierarchy.balanced([2, 3]).lca_heights()

    def stream():
        for i in range(rows.start, rows.stop, 16):
            j = min(i + 16, rows.stop)
            yield h[i:j], y[i:j], h[i:j] @ w.T

    result = evaluate_stream(
        stream,
        num_classes=K,
        classifier=w,
        groups=GROUPS,
        lca=lca,
        train_counts=TRAIN_COUNTS,
        distributed=distributed,
    )
    return {"metrics": result.metrics, "class_means": result.class_means.tolist()}


def _driver_worker(rank: int, init_file: str, out_file: str, dim: int, dtype: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        h, y, w = _data(dim, getattr(torch, dtype))
        out = {name: _evaluate(h, y, w, shards[rank], True) for name, shards in SHARDS.items()}
        with open(f"{out_file}.{rank}", "w") as handle:
            json.dump(out, handle)
    finally:
        dist.destroy_process_group()


def _assert_close(expected, got, name="", rel=1e-10):
    if isinstance(expected, dict):
        assert expected.keys() == got.keys(), name
        for key in expected:
            _assert_close(expected[key], got[key], f"{name}.{key}", rel)
    elif isinstance(expected, list):
        assert len(expected) == len(got), name
        for i, (a, b) in enumerate(zip(expected, got, strict=True)):
            _assert_close(a, b, f"{name}[{i}]", rel)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=rel, abs=1e-12), name
    else:
        assert got == expected, name


# d = 9 keeps the d x d scatter in the first pass; d = 72 takes NC1 from the second pass
# (projected on the means: float64 for float64 features, so every rank, the empty one
# included, must agree on the projection's dtype; float32 otherwise, where the ranks sum
# float32 products over other chunks than one process does).
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("dim", "dtype", "rel"), [(D, "float64", 1e-10), (72, "float64", 1e-10), (72, "float32", 1e-6)]
)
def test_two_gloo_ranks_evaluate_like_one_process(tmp_path, dim, dtype, rel):
    out = tmp_path / "evaluation"
    args = (str(tmp_path / "init"), str(out), dim, dtype)
    mp.spawn(_driver_worker, args=args, nprocs=WORLD, join=True)
    h, y, w = _data(dim, getattr(torch, dtype))
    expected = _evaluate(h, y, w, slice(0, N), False)
    assert expected["metrics"]["hierarchical"]["num_samples"] == N
    for rank in range(WORLD):
        got = json.loads((tmp_path / f"evaluation.{rank}").read_text())
        for name in SHARDS:
            _assert_close(expected, got[name], f"rank{rank}.{name}", rel)
