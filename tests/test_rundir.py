"""The run directory: claiming, locking, consistent records, tolerant reading."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from neuralcollapse._internal.files import atomic_write_text
from neuralcollapse.errors import UsageError
from neuralcollapse.rundir import RunDir, RunDirBusy, check_run_dir, default_run_name


def test_create_claims_a_new_directory_and_locks_it(tmp_path):
    run = RunDir.create(tmp_path / "run")
    assert run.path.is_dir() and run.locked
    assert "pid" in (run.path / ".lock").read_text()
    run.release()
    assert not run.locked


def test_a_second_claim_of_a_locked_directory_is_refused_naming_the_owner(tmp_path):
    first = RunDir.create(tmp_path / "run")
    with pytest.raises(RunDirBusy, match=r"in use by pid \d+"):
        RunDir.create(tmp_path / "run")
    first.release()
    RunDir.create(tmp_path / "run").release()  # free again: the empty directory is reusable


def _hold_lock(path: str, ready, stop) -> None:
    run = RunDir.create(path)
    ready.set()
    stop.wait(30)
    run.release()


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_dies(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, stop = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path / "run"), ready, stop))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(RunDirBusy, match=str(holder.pid)):
            RunDir.create(tmp_path / "run")
    finally:
        holder.kill()  # a killed owner: the OS releases its lock
        holder.join()
    RunDir.create(tmp_path / "run").release()


def test_unique_names_never_collide(tmp_path):
    base = tmp_path / default_run_name("demo")
    runs = [RunDir.create(base, unique=True) for _ in range(3)]
    names = [r.path.name for r in runs]
    assert names == [base.name, f"{base.name}-2", f"{base.name}-3"]
    for run in runs:
        run.release()


def test_a_directory_with_a_run_or_foreign_files_is_refused(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.checkpoints.mkdir()
    run.last_checkpoint.write_bytes(b"x")
    run.release()
    with pytest.raises(UsageError, match="--resume"):
        RunDir.create(tmp_path / "run")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(UsageError, match="not a run's"):
        RunDir.create(tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_what_a_failed_start_left_is_cleared(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_config("name: x\n")
    (run.tensorboard).mkdir()
    (run.tensorboard / "events").write_text("e")
    run.release()
    again = RunDir.create(tmp_path / "run")
    assert sorted(p.name for p in again.path.iterdir()) == [".lock"]
    again.release()


def test_tracker_folders_of_a_failed_start_are_cleared_too(tmp_path):
    # W&B and MLflow open their folders before the first checkpoint: a start that fails
    # after that (e.g. a bad MLflow URI) must leave a reusable directory
    run = RunDir.create(tmp_path / "run")
    run.write_config("name: x\n")
    for folder in ("wandb", "mlruns"):
        (run.path / folder).mkdir()
        (run.path / folder / "file").write_text("x")
    run.release()
    again = RunDir.create(tmp_path / "run")
    assert sorted(p.name for p in again.path.iterdir()) == [".lock"]
    again.release()


def test_a_file_is_no_run_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        RunDir.create(tmp_path / "file")


def test_claim_for_resume_needs_a_checkpoint_and_removes_stale_temps(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.release()
    with pytest.raises(UsageError, match="no checkpoints/last.pt"):
        RunDir.claim(tmp_path / "run")
    run.checkpoints.mkdir()
    run.last_checkpoint.write_bytes(b"x")
    stale = run.checkpoints / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    (run.path / ".metrics.jsonl.zz.tmp").write_text("partial")
    claimed = RunDir.claim(tmp_path / "run")
    assert not stale.exists() and not (run.path / ".metrics.jsonl.zz.tmp").exists()
    claimed.release()
    with pytest.raises(UsageError, match="does not exist"):
        RunDir.claim(tmp_path / "nowhere")


def test_records_are_strict_json_one_per_epoch_and_truncated_to_the_checkpoint(tmp_path):
    run = RunDir.create(tmp_path / "run")
    for epoch in (1, 2, 3):
        run.append_record({"epoch": epoch, "loss": float("nan") if epoch == 2 else 0.5})
    run.append_record({"epoch": 2, "loss": 0.25})  # a re-run epoch after a crash
    with open(run.metrics_path, "a") as handle:
        handle.write('{"epoch": 4, "lo')  # cut short by a kill
    text = run.metrics_path.read_text()
    assert "NaN" not in text and "null" in text
    records = run.read_records()
    assert [r["epoch"] for r in records.records] == [1, 2, 3]
    assert records.records[1]["loss"] == 0.25 and records.duplicates == 1 and records.skipped == 1
    assert run.truncate_records(2) == 3
    lines = run.metrics_path.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    run.release()


def test_geometry_round_trip_without_pickle(tmp_path):
    run = RunDir.create(tmp_path / "run")
    means, frame = np.random.default_rng(0).normal(size=(2, 4, 3))
    run.write_geometry(class_means=means, classifier=frame, kind="fixed frame (etf)", epoch=7)
    back = run.read_geometry()
    assert np.array_equal(back["class_means"], means) and np.array_equal(back["classifier"], frame)
    assert back["kind"] == "fixed frame (etf)" and back["epoch"] == 7
    run.geometry_path.write_bytes(b"garbage")
    assert run.read_geometry() is None
    run.release()


def test_readers_tolerate_missing_and_damaged_files(tmp_path):
    run = RunDir.create(tmp_path / "run")
    assert run.read_summary() is None and run.read_config() is None
    assert run.read_records().records == []
    run.summary_path.write_bytes(b"\xff\xfe not json")
    run.config_path.write_text("a: [unclosed")
    assert run.read_summary() is None and run.read_config() is None
    run.release()


def test_check_run_dir_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        check_run_dir(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a run directory"):
        check_run_dir(tmp_path / "empty")
    atomic_write_text(tmp_path / "empty" / "config.yaml", "name: x\n")
    assert check_run_dir(tmp_path / "empty").path == tmp_path / "empty"


def test_atomic_writes_have_normal_permissions(tmp_path):
    path = atomic_write_text(tmp_path / "f.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert not list(Path(tmp_path).glob(".*.tmp"))


def test_lock_file_is_reused_not_deleted(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.release()
    assert (tmp_path / "run" / ".lock").exists()
    assert (tmp_path / "run" / ".lock").read_text() == ""
