"""CollapseStats.all_reduce and NCCMismatchCounter.all_reduce across two gloo processes."""

from __future__ import annotations

import datetime
import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralcollapse.metrics import CollapseStats

WORLD = 2
K, D, N = 6, 9, 240

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)


def _data():
    gen = torch.Generator().manual_seed(3)
    means = 4.0 * torch.randn(K, D, generator=gen, dtype=torch.float64) + 100.0
    y = torch.randint(0, K, (N,), generator=gen)
    # Rank 1 never sees class 5, so the ranks hold different class sets (and every class
    # gets a different shift on each rank).
    y[N // 2 :][y[N // 2 :] == 5] = 4
    h = means[y] + torch.randn(N, D, generator=gen, dtype=torch.float64)
    w = torch.randn(K, D, generator=gen, dtype=torch.float64)
    return h, y, w


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
