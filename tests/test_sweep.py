"""Sweeps: run identity, reuse and resume, parallel and cluster launchers, partial results.

Every training here is tiny (digits, a small MLP, 1-2 epochs, no report or TensorBoard).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from neuralcollapse.cli import main
from neuralcollapse.sweep import RunSpec, Sweep, finished_run, run_key
from neuralcollapse.sweep.launchers import InlineLauncher
from neuralcollapse.sweep.progress import Progress
from neuralcollapse.train.config import load_config
from neuralcollapse.train.recipes import resolve_config_path

TINY = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "log.tensorboard=false",
    "log.report=false",
    "log.progress=off",
    "train.epochs=1",
]
SET_TINY = [arg for item in TINY for arg in ("--set", item)]
LEARNABLE = "digits_lt head.kind=learnable loss.name=ce"


def tiny(*overrides: str):
    return load_config(resolve_config_path("digits_lt"), [*TINY, *overrides])


def spec(*overrides: str) -> RunSpec:
    return RunSpec(tiny(*overrides))


def finals(path: Path) -> list[dict]:
    """Every run's final metrics of a compare --json, in variant then seed order."""
    table = json.loads(path.read_text())
    return [run["final"] for variant in table["variants"] for run in variant["runs"]]


def without_volatile(value):
    """A JSON value without what differs between two identical comparisons: wall times
    and the run directories' locations."""
    volatile = {"wall_time_s", "elapsed_s", "run_dir"}
    if isinstance(value, dict):
        return {k: without_volatile(v) for k, v in value.items() if k not in volatile}
    if isinstance(value, list):
        return [without_volatile(v) for v in value]
    return value


# --------------------------------------------------------------------------- identity


def test_run_key_ignores_labels_and_logging_but_not_what_changes_the_numbers():
    base = run_key(tiny())
    assert base == run_key(tiny())  # stable
    assert len(base) == 12 and all(c in "0123456789abcdef" for c in base)
    # the name, log settings, output paths and thread count do not make another run
    assert run_key(tiny("name=other", "log.run_dir=elsewhere", "train.num_threads=2")) == base
    # anything that changes the numbers does, the seed included
    assert run_key(tiny("train.seed=1")) != base
    assert run_key(tiny("optim.lr=0.05")) != base
    assert run_key(tiny("train.epochs=2")) != base
    assert spec().dirname == f"digits_lt-seed0-{base}"


def test_a_finished_run_is_reused_only_when_verified(tmp_path):
    with Sweep(tmp_path) as sweep:
        (first,) = sweep.run([spec()])
    assert first.status == "trained" and first.run_dir == tmp_path / spec().dirname
    key = spec().key
    assert finished_run(first.run_dir, key) is not None
    assert finished_run(first.run_dir, spec("train.seed=3").key) is None  # another config
    metrics = first.run_dir / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + '{"epoch": 2, "cut sh\n')  # a damaged line
    assert finished_run(first.run_dir, key) is None
    metrics.write_text("")  # an epoch missing
    assert finished_run(first.run_dir, key) is None
    metrics.write_text(good)
    with Sweep(tmp_path) as sweep:
        (again,) = sweep.run([spec()])
    assert again.status == "reused" and again.summary["final"] == first.summary["final"]


def test_an_interrupted_run_resumes_to_the_same_numbers(tmp_path):
    from neuralcollapse.train.trainer import Trainer

    two = spec("train.epochs=2")
    with Sweep(tmp_path / "whole") as sweep:
        (whole,) = sweep.run([two])
    run_dir = tmp_path / "cut" / two.dirname
    trainer = Trainer(two.config, run_dir, stop_after=1)  # as if killed after epoch 1
    trainer.fit()
    trainer.close()
    with Sweep(tmp_path / "cut") as sweep:
        (resumed,) = sweep.run([two])
    assert resumed.status == "resumed"
    assert resumed.summary["final"] == whole.summary["final"]
    assert [r["epoch"] for r in resumed.records] == [1, 2]


def test_quick_then_full_in_one_folder_reuses_only_identical_runs(tmp_path):
    # README's pair `reproduce --quick` then `reproduce` at the sweep level: the quick
    # suite's runs are reused by the full one only where the configs are identical.
    quick = [spec(f"train.seed={s}") for s in range(2)]
    full = [*quick, *(spec(f"train.seed={s}", "train.epochs=2") for s in range(2))]
    with Sweep(tmp_path) as sweep:
        sweep.run(quick)
        assert sweep.counts == {"reused": 0, "resumed": 0, "trained": 2}
    with Sweep(tmp_path) as sweep:
        results = sweep.run(full)
        assert sweep.counts == {"reused": 2, "resumed": 0, "trained": 2}
    assert [r.status for r in results] == ["reused", "reused", "trained", "trained"]
    assert len({r.run_dir for r in results}) == 4  # a changed config is another run
    assert all(r.summary["epochs"] == 2 for r in results[2:])


def test_the_same_run_asked_twice_trains_once(tmp_path):
    with Sweep(tmp_path) as sweep:
        results = sweep.run([spec(), spec("name=alias"), spec()])
        assert sweep.counts["trained"] == 1 and sweep.total == 1
    assert results[0] is results[1] is results[2]


def test_progress_lines_count_and_estimate():
    lines: list[str] = []
    now = [0.0]
    progress = Progress(lines.append, bar=False, clock=lambda: now[0])
    progress.add(4)
    progress.started(2)
    result = type("R", (), {"status": "trained", "seconds": 30.0})()
    result.spec = spec()
    now[0] = 60.0
    progress.finished(result, done=1, remaining=3)
    assert lines[-1] == "[1/4] digits_lt seed 0: trained in 30 s; ~3.0 min left"
    progress.reused(2, done=3, remaining=1)
    assert lines[-1] == "[3/4] 2 run(s) reused (finished before); 1 to train"
    now[0] = 120.0
    progress.finished(result, done=4, remaining=0)
    assert lines[-1].endswith("all done")


# --------------------------------------------------------------------------- compare


def compare(tmp_path: Path, name: str, *extra: str) -> tuple[int, Path]:
    out = tmp_path / f"{name}.json"
    argv = ["compare", "digits_lt", LEARNABLE, *SET_TINY, "--seeds", "2"]
    code = main([*argv, "--runs-dir", str(tmp_path / name), "--json", str(out), *extra])
    return code, out


@pytest.fixture(scope="module")
def local_pair(tmp_path_factory) -> list[dict]:
    """Final metrics of the two runs trained one after another in this process (--jobs 1)."""
    specs = [spec(), spec("head.kind=learnable", "loss.name=ce")]
    with Sweep(tmp_path_factory.mktemp("local")) as sweep:
        return [r.summary["final"] for r in sweep.run(specs)]


def test_compare_with_two_jobs_is_identical_to_one(tmp_path, capsys, local_pair):
    argv = ["compare", "digits_lt", LEARNABLE, *SET_TINY, "--seeds", "1", "--jobs", "2"]
    out = tmp_path / "two.json"
    assert main([*argv, "--runs-dir", str(tmp_path / "two"), "--json", str(out)]) == 0
    assert finals(out) == local_pair  # bit for bit: every run is seeded
    printed = capsys.readouterr().out
    assert "[2/2]" in printed and "0 reused, 0 resumed, 2 trained" in printed


def test_compare_again_reuses_everything(tmp_path, capsys):
    assert compare(tmp_path, "a")[0] == 0
    code, out = compare(tmp_path, "a")
    assert code == 0
    assert "4 reused, 0 resumed, 0 trained" in capsys.readouterr().out
    assert json.loads(out.read_text())["partial"] is False


def test_an_interrupted_compare_writes_a_partial_table(tmp_path, capsys, monkeypatch):
    real = InlineLauncher.wait
    calls = []

    def stop_after_one(self):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(InlineLauncher, "wait", stop_after_one)
    code, out = compare(tmp_path, "cut")
    assert code == 130
    table = json.loads(out.read_text())
    assert table["partial"] is True and table["runs_finished"] == 1 and table["runs_total"] == 4
    assert [len(v["runs"]) for v in table["variants"]] == [1, 0]
    printed = capsys.readouterr().out
    assert "PARTIAL: 1 of 4 runs finished" in printed and "wrote" in printed


def test_a_compare_killed_then_rerun_trains_only_what_is_missing(tmp_path, capsys):
    runs = tmp_path / "killed"
    argv = [
        sys.executable,
        "-m",
        "neuralcollapse",
        "compare",
        "digits_lt",
        LEARNABLE,
        *SET_TINY[:-2],  # all but train.epochs=1
        "--set",
        "train.epochs=2",
        "--seeds",
        "2",
        "--runs-dir",
        str(runs),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(runs.glob("*/summary.json"))) < 2 and time.monotonic() < deadline:
            if process.poll() is not None:
                break
            time.sleep(0.02)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    finished = len(list(runs.glob("*/summary.json")))
    assert 2 <= finished < 4, "the comparison ended before it could be killed"
    rerun = ["compare", "digits_lt", LEARNABLE, *SET_TINY[:-2], "--set", "train.epochs=2"]
    rerun += ["--seeds", "2"]
    capsys.readouterr()
    assert main([*rerun, "--runs-dir", str(runs), "--json", str(tmp_path / "again.json")]) == 0
    printed = capsys.readouterr().out
    counts = {
        word: int(number)
        for number, word in zip(
            printed.split("runs: ")[-1].split()[0::2],
            ("reused", "resumed", "trained"),
            strict=False,
        )
    }
    assert counts["reused"] == finished
    assert counts["resumed"] + counts["trained"] == 4 - finished
    whole = ["--runs-dir", str(tmp_path / "whole"), "--json", str(tmp_path / "whole.json")]
    assert main([*rerun, *whole]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    uninterrupted = json.loads((tmp_path / "whole.json").read_text())
    assert without_volatile(again) == without_volatile(uninterrupted)


# --------------------------------------------------------------------------- clusters
# Two runs each (the two variants of `compare`, seed 0), against the same runs trained here
# (`local_pair`).


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_tasks_give_the_local_results(tmp_path, local_pair):
    from neuralcollapse.sweep.launchers import RayLauncher

    specs = [spec(), spec("head.kind=learnable", "loss.name=ce")]
    with Sweep(tmp_path, RayLauncher(local_cpus=2)) as sweep:
        remote = sweep.run(specs)
        assert sweep.counts["trained"] == 2
    assert [r.summary["final"] for r in remote] == local_pair
    assert all((r.run_dir / "summary.json").is_file() for r in remote)


@pytest.mark.skipif(
    importlib.util.find_spec("submitit") is None, reason="submitit is not installed"
)
def test_slurm_launcher_runs_through_submitit_locally(tmp_path, capsys, local_pair):
    import shutil

    if shutil.which("sbatch"):
        pytest.skip("SLURM is present: this test checks submitit's local executor")
    argv = ["compare", "digits_lt", LEARNABLE, *SET_TINY, "--seeds", "1"]
    out = tmp_path / "slurm.json"
    runs = ["--runs-dir", str(tmp_path / "runs"), "--json", str(out)]
    assert main([*argv, *runs, "--launcher", "slurm", "--jobs", "2"]) == 0
    assert finals(out) == local_pair
    assert list((tmp_path / "runs" / "submitit").glob("*_result.pkl"))  # submitit's files


# --------------------------------------------------------------------------- suites


def test_paper_suite_plan_prints_the_grid_and_trains_nothing(tmp_path, capsys):
    code = main(["reproduce", "--suite", "paper", "--plan", "--seeds", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "cifar100_lt_r100_etf_dr" in out and "svhn_lt_r100_learnable_ce" in out
    assert "ESTIMATE" in out and "assumed" in out and "not measured" in out
    total = out.strip().splitlines()[-1]
    assert total.startswith("total: ") and "GPU-hours" in total
    code = main(["reproduce", "--suite", "z21", "--plan", "--seeds", "2", "--epoch-seconds", "36"])
    out = capsys.readouterr().out
    # 2 recipes x 2 seeds x 200 epochs x 36 s = 8 GPU-hours
    assert code == 0 and "about 8 GPU-hours" in out and "--epoch-seconds (given)" in out


def test_a_suite_without_its_data_stops_before_training(tmp_path, capsys):
    out = tmp_path / "suite"
    code = main(["reproduce", "--suite", "y22", "--data-dir", str(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    for name, layout in (
        ("cifar10", "cifar-10-python.tar.gz"),
        ("svhn", "train_32x32.mat"),
        ("stl10", "stl10_binary"),
        ("list_file", "ImageNet_LT_train.txt"),
    ):
        line = next(line for line in err.splitlines() if line.strip().startswith(f"{name}:"))
        assert str(tmp_path) in line and layout in line
    assert main(["reproduce", "--suite", "y22", "--data-root", "cifar10"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err


def test_missing_data_passes_when_the_files_are_there(tmp_path):
    from neuralcollapse.sweep.suites import missing_data, suite_specs

    specs = suite_specs("z21", seeds=1, data_dir=str(tmp_path))
    assert [p.dataset for p in missing_data(specs)] == ["cifar10"]
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(b"")
    assert missing_data(specs) == []
    assert all(s.config.data.root == str(tmp_path / "cifar10") for s in specs)


# --------------------------------------------------------------------------- reproduce


def test_an_interrupted_reproduce_writes_the_claims_that_finished(tmp_path, capsys, monkeypatch):
    real = InlineLauncher.wait
    calls = []

    def stop_after_one(self):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(InlineLauncher, "wait", stop_after_one)
    out = tmp_path / "rep"
    argv = ["reproduce", "z21-d-equals-k", "z21-parameter-saving", "--seeds", "2"]
    assert main([*argv, "--epochs", "1", "--out", str(out)]) == 130
    payload = json.loads((out / "reproduce.json").read_text())
    assert payload["partial"] is True
    assert payload["runs"] == {"reused": 0, "resumed": 0, "trained": 1, "total": 4}
    # the count needs no run; the d = K claim lacks three of its four runs: left out
    assert [row["claim_id"] for row in payload["rows"]] == ["z21-parameter-saving"]
    assert "PARTIAL" in capsys.readouterr().out


def test_launcher_options_are_checked(tmp_path, capsys):
    argv = ["compare", "digits_lt", LEARNABLE, "--runs-dir", str(tmp_path)]
    assert main([*argv, "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
    from neuralcollapse.sweep.launchers import available_cores

    too_many = f"train.num_threads={available_cores() + 1}"  # more than cores / 2 anywhere
    assert main([*argv, "--jobs", "2", "--set", too_many]) == 2
    assert too_many in capsys.readouterr().err
