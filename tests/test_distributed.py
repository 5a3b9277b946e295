"""Data-parallel training and evaluation: torchrun with 2 gloo processes on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from neuralcollapse.data import ClassSampler, DeviceLoader
from neuralcollapse.train import Trainer, load_config, resolve_config_path

FAST = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "train.batch_size=64",
    "log.tensorboard=false",
    "log.report=false",
    "train.ddp_timeout_s=60",
]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [*TORCHRUN, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


# --------------------------------------------------------------------------- sharding


def test_device_loader_shards_are_disjoint_and_cover_each_batch():
    images = torch.arange(23, dtype=torch.float32).view(23, 1, 1, 1)
    labels = torch.arange(23) % 3
    single = DeviceLoader(images, labels, 8, sampling="shuffle", seed=5)
    shards = [
        DeviceLoader(images, labels, 8, sampling="shuffle", seed=5, shard=(r, 2)) for r in range(2)
    ]
    for whole, part_a, part_b in zip(single, *shards, strict=True):
        together = torch.cat([part_a[0], part_b[0]]).flatten().sort().values
        assert torch.equal(together, whole[0].flatten().sort().values)
        assert not set(part_a[0].flatten().tolist()) & set(part_b[0].flatten().tolist())


def test_training_shards_drop_a_final_batch_too_small_to_split():
    images = torch.zeros(17, 1, 1, 1)
    labels = torch.zeros(17, dtype=torch.int64)
    lengths = [
        len(list(DeviceLoader(images, labels, 8, shard=(r, 2), drop_last=True))) for r in range(2)
    ]
    assert lengths == [2, 2]


@pytest.mark.parametrize("sampling", ["shuffle", "balanced"])
def test_class_sampler_shards(sampling):
    labels = torch.tensor([0] * 9 + [1] * 4)
    whole = list(ClassSampler(labels, sampling, seed=3))
    parts = [list(ClassSampler(labels, sampling, seed=3, shard=(r, 2))) for r in range(2)]
    assert sorted(parts[0] + parts[1]) == sorted(whole)  # evaluation: every sample once
    even = [
        list(ClassSampler(labels, sampling, seed=3, shard=(r, 2), drop_remainder=True))
        for r in range(2)
    ]
    assert len(even[0]) == len(even[1]) == 6


def test_bad_shard_is_rejected():
    with pytest.raises(ValueError, match="shard must be"):
        ClassSampler(torch.zeros(3, dtype=torch.int64), shard=(2, 2))


# --------------------------------------------------------------------------- torchrun


def test_two_process_training_writes_one_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    done = torchrun(
        "-m",
        "neuralcollapse",
        "train",
        "train.epochs=1",
        "train.select_best_on=test",  # a best.pt too: written by rank 0 alone
        "log.tensorboard=false",
        "log.report=false",
        "train.ddp_timeout_s=60",
        "--run-dir",
        run_dir,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("run directory:") == 1  # rank 0 alone prints
    assert "x 2 processes" in done.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1
    # every training sample is seen once per epoch across the two processes
    # (454: what the default 10% validation split leaves of the long-tailed 503)
    assert summary["final"]["train"]["collapse"]["num_samples"] == summary["splits"]["train"]
    assert summary["splits"]["train"] == 454 and summary["splits"]["val"] == 129


def test_distributed_evaluation_equals_one_process(tmp_path):
    # A run with a class hierarchy, so the hierarchical counters are summed across ranks too.
    run_dir = tmp_path / "run"
    recipe = resolve_config_path("hier_mixture_haframe")
    config = load_config(recipe, ["train.epochs=1", "log.tensorboard=false", "log.report=false"])
    Trainer(config, run_dir).fit()
    single = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuralcollapse",
            "eval",
            str(run_dir),
            "--checkpoint",
            "last",
            "--split",
            "both",
            "--json",
            str(tmp_path / "one.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert single.returncode == 0, single.stderr
    done = torchrun(
        "-m",
        "neuralcollapse",
        "eval",
        run_dir,
        "--checkpoint",
        "last",
        "--split",
        "both",
        "--json",
        tmp_path / "two.json",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    for split in ("train", "test"):
        # counts and accuracies exactly; float64 statistics up to summation order
        for key in ("top1", "balanced", "per_class", "many", "medium", "few", "num_samples"):
            assert one[split][key] == two[split][key], (split, key)
        a, b = one[split]["collapse"], two[split]["collapse"]
        assert a.keys() == b.keys()
        hier_one, hier_two = one[split]["hierarchical"], two[split]["hierarchical"]
        assert hier_one.keys() == hier_two.keys()
        for key, value in hier_one.items():
            assert hier_two[key] == pytest.approx(value, rel=1e-12), (split, key)
        for key, value in a.items():
            if isinstance(value, float):
                # each rank rounds its own per-class-shifted chunks to float32 before the
                # float64 sums (CollapseStats' documented 1e-6 bound), and NC1 of a barely
                # trained model divides by tiny between-class eigenvalues, which magnifies
                # that round-off (5e-7 seen): 1e-5 of slack, not more
                assert b[key] == pytest.approx(value, rel=1e-5, abs=1e-12), (split, key)
            else:
                assert b[key] == value, (split, key)


def test_a_failing_rank_brings_the_group_down(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(f"""
        import os
        from neuralcollapse.train import Trainer, load_config, resolve_config_path

        def fail_on_rank_one(self, progress):
            if os.environ["RANK"] == "1":
                raise RuntimeError("boom on rank 1")
            return original(self, progress)

        original = Trainer._train_epoch
        Trainer._train_epoch = fail_on_rank_one
        config = load_config(resolve_config_path(None), {FAST!r} + ["train.epochs=2"])
        Trainer(config, {str(tmp_path / "run")!r}).fit()
    """)
    )
    started = time.monotonic()
    done = torchrun(worker, timeout=200)
    assert done.returncode != 0
    assert "boom on rank 1" in done.stdout + done.stderr
    assert time.monotonic() - started < 180
