"""Run directories that never mix, lose or lie: concurrent runs, kills, full and read-only
disks, hand-edited configs, and one-line messages for every bad input."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import neuralcollapse.train.trainer as trainer_module
from neuralcollapse.cli import main
from neuralcollapse.rundir import default_run_name
from neuralcollapse.train import Trainer, load_config
from neuralcollapse.train.recipes import resolve_config_path
from neuralcollapse.train.trainer import assemble

FAST = [
    "train.epochs=3",
    "log.tensorboard=false",
    "log.report=false",
    "log.progress=off",
    "model.name=mlp",
    "model.options={hidden: [32]}",
    "head.neck=l2",
]
DEFAULT = resolve_config_path("digits_lt")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "neuralcollapse", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_two_trainings_on_one_run_dir_exactly_one_runs(tmp_path):
    run_dir = tmp_path / "shared"
    args = _cli("train", "--run-dir", str(run_dir), *FAST, "train.epochs=4")
    procs = [
        subprocess.Popen(
            args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(err for code, err in outcomes if code == 2)
    assert str(run_dir) in loser and len(loser.strip().splitlines()) == 1
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]


def test_default_named_runs_in_the_same_second_get_two_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # One fixed second: building a Trainer can take longer than a second on a busy machine.
    same_second = datetime.datetime(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr(
        trainer_module, "default_run_name", lambda name: default_run_name(name, same_second)
    )
    config = load_config(DEFAULT, [*FAST, "train.epochs=1"])
    first = Trainer(config)
    second = Trainer(config)  # same name and second: the first holds its directory
    try:
        assert first.run_dir != second.run_dir
        assert second.run_dir.name.startswith(first.run_dir.name)
    finally:
        first.close()
        second.close()


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "elapsed_s"}


def test_sigkill_and_resume_give_one_record_per_epoch_equal_to_an_uninterrupted_run(tmp_path):
    epochs = 6
    common = [*FAST, f"train.epochs={epochs}"]
    reference = tmp_path / "reference"
    # Same process setup (threads) as the killed runs, so that sums round the same way.
    done = subprocess.run(
        _cli("train", "--run-dir", str(reference), *common), env=_env(), capture_output=True
    )
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "killed"
    kills = 0
    command = _cli("train", "--run-dir", str(run_dir), *common)
    for target in (2, 4):  # kill after these many epochs have been recorded
        proc = subprocess.Popen(
            command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 240
        while len(_records(run_dir)) < target and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        command = _cli("train", "--resume", str(run_dir))
    assert kills >= 1
    done = subprocess.run(_cli("train", "--resume", str(run_dir)), env=_env(), capture_output=True)
    assert done.returncode == 0, done.stderr
    got = _records(run_dir)
    assert [r["epoch"] for r in got] == list(range(1, epochs + 1))
    want = _records(reference)
    assert [_comparable(r) for r in got] == [_comparable(r) for r in want]
    assert not list(run_dir.rglob("*.tmp"))


def test_interrupt_before_the_first_checkpoint_leaves_a_reusable_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    config = load_config(DEFAULT, FAST)
    trainer = Trainer(config, run_dir, echo=print)

    def interrupt(_):
        raise KeyboardInterrupt

    trainer._train_epoch = interrupt
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    trainer.close()
    out = capsys.readouterr().out
    assert "--resume" not in out and "start again" in out
    assert main(["train", "--run-dir", str(run_dir), *FAST, "train.epochs=1"]) == 0


def test_nan_loss_is_one_line_exit_1_saying_what_is_saved(tmp_path, capsys):
    code = main(["train", "--run-dir", str(tmp_path / "run"), *FAST, "optim.lr=1e30"])
    assert code == 1
    line = _one_line_error(capsys)
    assert "loss became" in line and "optim.lr" in line


def test_hand_edited_config_is_refused_on_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), *FAST, "--stop-after", "1"]) == 0
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.1", "lr: 0.05"))
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir)]) == 2
    line = _one_line_error(capsys)
    assert "optim.lr" in line
    # An allowed change goes through, and is what config.yaml then records.
    config.write_text(config.read_text().replace("lr: 0.05", "lr: 0.1"))
    assert main(["train", "--resume", str(run_dir), "train.epochs=2"]) == 0
    assert "epochs: 2" in config.read_text()


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lr=.inf", "optim.lr"),
        ("train.seed=-1", "train.seed"),
        ("train.mixup_alpha=.inf", "train.mixup_alpha"),
        ("data.n_max=0", "data.n_max"),
        ("eval.train_subsample=-5", "eval.train_subsample"),
        ("schedule.min_lr=1.0", "schedule.min_lr"),
        ("name=../../escaped", "name"),
    ],
)
def test_bad_values_stop_before_the_run_naming_the_key(tmp_path, capsys, override, key):
    run_dir = tmp_path / "run"
    assert main(["train", "--run-dir", str(run_dir), *FAST, override]) == 2
    assert key in _one_line_error(capsys)
    assert not run_dir.exists()


def test_yaml_1_1_words_and_exponents_mean_what_the_docs_say(tmp_path, capsys):
    config = load_config(DEFAULT, ["optim.lr=1e-3", "optim.weight_decay=5e-4", "log.progress=off"])
    assert config.optim.lr == 1e-3 and config.optim.weight_decay == 5e-4
    assert config.log.progress == "off"


def test_batch_of_one_at_the_end_is_dropped_not_fatal(tmp_path):
    # A batch size one below the training-set size leaves a final batch of one sample.
    config = load_config(DEFAULT, [*FAST, "train.epochs=1"])
    data, _, _ = assemble(config, torch.device("cpu"))
    n = len(data.train.labels)
    config = load_config(DEFAULT, [*FAST, "train.epochs=1", f"train.batch_size={n - 1}"])
    trainer = Trainer(config, tmp_path / "run")
    try:
        assert len(trainer.loaders.train) == 1
        trainer.fit()
    finally:
        trainer.close()


def test_stop_after_zero_is_refused(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "r"), *FAST, "--stop-after", "0"]) == 2
    assert "--stop-after" in _one_line_error(capsys)


def test_run_dir_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["train", "--run-dir", str(target), *FAST]) == 2
    assert "is a file" in _one_line_error(capsys)


def test_corrupt_checkpoint_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x04not a checkpoint at all")
    assert main(["eval", str(bad)]) == 2
    line = _one_line_error(capsys)
    assert str(bad) in line and "weights_only=False" not in line


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def test_read_only_disk_is_one_line_exit_2(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        assert main(["train", "--run-dir", str(mount / "run"), *FAST]) == 2
        line = _one_line_error(capsys)
        assert "Read-only file system" in line and str(mount / "run") in line


def test_full_disk_is_one_line_exit_1_naming_the_state(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    with _tmpfs(tmp_path / "small", "size=48k") as mount:
        code = main(["train", "--run-dir", str(mount / "run"), *FAST])
        line = _one_line_error(capsys)
        assert code == 1, line
        assert "No space left on device" in line
        assert "start again" in line or "holds epoch" in line
        assert not list((mount / "run").rglob("*.tmp"))


def test_json_output_on_a_read_only_disk(tmp_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root")
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        assert (
            main(["frame", "etf", "--classes", "4", "--dim", "4", "--out", str(mount / "f.pt")])
            == 2
        )
        assert "Read-only file system" in _one_line_error(capsys)
