"""Reliability round 3: no link, kill or full disk gets a write outside the run or a
traceback; every failure is one line with the documented exit status.

Each case asserts the exit code, exactly one stderr line, and that nothing outside the
folders the case chose changed (:func:`_snapshot` compares every path under ``tmp_path``,
links included, before and after).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralcollapse._internal import files
from neuralcollapse._internal.files import (
    NotARegularFile,
    append_text,
    atomic_write_text,
    remove_stale_temps,
)
from neuralcollapse._internal.jsonio import MAX_DEPTH, JSONError, loads, read_json
from neuralcollapse.cli import main
from neuralcollapse.errors import UsageError
from neuralcollapse.rundir import RunDir, check_run_dir
from neuralcollapse.train.checkpoint import load_checkpoint, save_checkpoint

FAST = [
    "train.epochs=3",
    "log.tensorboard=false",
    "log.report=false",
    "log.progress=off",
    "model.name=mlp",
    "model.options={hidden: [32]}",
    "head.neck=l2",
]
DEEP = "[" * 5000 + "]" * 5000


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` with its kind and content (links not followed)."""
    seen: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        relative = str(path.relative_to(root))
        if path.is_symlink():
            seen[relative] = ("link", os.readlink(path))
        elif path.is_dir():
            seen[relative] = ("dir",)
        else:
            seen[relative] = ("file", path.read_bytes(), info.st_mode & 0o777)
    return seen


def _changed_outside(before: dict, after: dict, *inside: str) -> list[str]:
    """Paths that changed, appeared or vanished, except under the folders ``inside``."""

    def allowed(name: str) -> bool:
        return any(name == folder or name.startswith(folder + os.sep) for folder in inside)

    names = set(before) | set(after)
    return sorted(n for n in names if not allowed(n) and before.get(n) != after.get(n))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run stopped after epoch 1 of 3 (resumable); tests copy it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--run-dir", str(run), *FAST, "--stop-after", "1"]) == 0
    return run


def _copy_run(trained: Path, target: Path) -> Path:
    shutil.copytree(trained, target, symlinks=True)
    return target


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT\n")
    return victim


# --------------------------------------------------------------------------- item 1: .lock


def test_symlinked_lock_of_a_new_run_leaves_the_victim_intact(tmp_path, capsys):
    run = tmp_path / "d"
    run.mkdir()
    (run / "notes.txt").write_text("mine\n")
    victim = _victim(tmp_path)
    (run / ".lock").symlink_to(victim)
    before = _snapshot(tmp_path)
    assert main(["train", "--run-dir", str(run), *FAST, "train.epochs=1"]) == 2
    line = _one_line(capsys)
    assert ".lock is a symbolic link" in line and str(run) in line
    assert victim.read_text() == "IMPORTANT\n"
    assert _changed_outside(before, _snapshot(tmp_path)) == []


def test_symlinked_lock_on_resume_leaves_the_victim_intact(tmp_path, trained, capsys):
    run = _copy_run(trained, tmp_path / "run")
    victim = _victim(tmp_path)
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(victim)
    before = _snapshot(tmp_path)
    assert main(["train", "--resume", str(run)]) == 2
    assert ".lock is a symbolic link" in _one_line(capsys)
    assert victim.read_text() == "IMPORTANT\n"
    assert _changed_outside(before, _snapshot(tmp_path)) == []


def test_hard_linked_or_fifo_lock_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    victim = _victim(tmp_path)
    os.link(victim, run / ".lock")
    with pytest.raises(UsageError, match="hard links"):
        RunDir.create(run)
    assert victim.read_text() == "IMPORTANT\n"
    (run / ".lock").unlink()
    os.mkfifo(run / ".lock")  # opened without blocking, then refused
    with pytest.raises(UsageError, match="not a regular file"):
        RunDir.create(run)
    (run / ".lock").unlink()
    (run / ".lock").mkdir()
    with pytest.raises(UsageError, match="is a folder"):
        RunDir.create(run)


def test_lock_release_truncates_only_its_own_file(tmp_path):
    run = RunDir.create(tmp_path / "run")
    assert (run.path / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
    run.release()
    assert (run.path / ".lock").read_text() == ""
    assert (run.path / ".lock").stat().st_mode & 0o777 == 0o644 & ~_umask_now()


def _umask_now() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- item 8: entries


@pytest.mark.parametrize(
    "entry", ["checkpoints", "metrics.jsonl", "tensorboard", "report_figures", "config.yaml"]
)
def test_symlinked_entries_are_refused_for_resume_and_report(tmp_path, trained, capsys, entry):
    run = _copy_run(trained, tmp_path / "run")
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / entry
    if (run / entry).exists():
        shutil.move(run / entry, target)
    elif "." in entry:
        target.write_text("")
    else:
        target.mkdir()
    (run / entry).symlink_to(target)
    before = _snapshot(tmp_path)
    command = ["train", "--resume", str(run)]
    if entry == "config.yaml":  # resume reads config.yaml first: the report checks entries
        command = ["report", str(run)]
    assert main(command) == 2
    line = _one_line(capsys)
    assert f"{entry} is a symbolic link" in line
    assert _changed_outside(before, _snapshot(tmp_path)) == []
    with pytest.raises(UsageError, match="symbolic link"):
        check_run_dir(run)


def test_symlinked_checkpoint_file_is_refused(tmp_path, trained, capsys):
    run = _copy_run(trained, tmp_path / "run")
    shutil.move(run / "checkpoints" / "last.pt", tmp_path / "elsewhere.pt")
    (run / "checkpoints" / "last.pt").symlink_to(tmp_path / "elsewhere.pt")
    before = _snapshot(tmp_path)
    assert main(["train", "--resume", str(run)]) == 2
    assert "checkpoints/last.pt is a symbolic link" in _one_line(capsys)
    assert _changed_outside(before, _snapshot(tmp_path)) == []


def test_new_run_into_a_directory_with_a_symlinked_residue_entry(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    victim = _victim(tmp_path)
    (run / "metrics.jsonl").symlink_to(victim)  # otherwise what a failed start leaves
    before = _snapshot(tmp_path)
    assert main(["train", "--run-dir", str(run), *FAST, "train.epochs=1"]) == 2
    assert "metrics.jsonl is a symbolic link" in _one_line(capsys)
    assert victim.read_text() == "IMPORTANT\n"
    assert _changed_outside(before, _snapshot(tmp_path), "run") == []
    assert (run / "metrics.jsonl").is_symlink()


def test_stale_temp_cleanup_never_deletes_through_a_link(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".config.yaml.abcd1234.tmp").write_text("not ours")
    (folder / ".summary.json.abcd1234.tmp").symlink_to(outside / ".config.yaml.abcd1234.tmp")
    (folder / ".geometry.npz.abcd1234.tmp").mkdir()
    (folder / ".notes.txt.abcd1234.tmp").write_text("a user's file of another target")
    (folder / ".config.yaml.abcd1234.tmp").write_text("ours: half a config")
    link = tmp_path / "linked"
    link.symlink_to(outside)
    assert remove_stale_temps(link) == []  # a folder that is a link is not entered
    removed = remove_stale_temps(folder, ["config.yaml", "summary.json", "geometry.npz"])
    assert [p.name for p in removed] == [".config.yaml.abcd1234.tmp"]
    assert (outside / ".config.yaml.abcd1234.tmp").read_text() == "not ours"
    assert (folder / ".summary.json.abcd1234.tmp").is_symlink()
    assert (folder / ".geometry.npz.abcd1234.tmp").is_dir()
    assert (folder / ".notes.txt.abcd1234.tmp").exists()


def test_appending_refuses_a_link(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(NotARegularFile, match="symbolic link"):
        append_text(tmp_path / "metrics.jsonl", "{}\n")
    assert victim.read_text() == "IMPORTANT\n"


def test_atomic_write_replaces_a_link_never_writes_through_it(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "summary.json").symlink_to(victim)
    atomic_write_text(tmp_path / "summary.json", "{}\n")
    assert victim.read_text() == "IMPORTANT\n"
    assert not (tmp_path / "summary.json").is_symlink()


def test_no_process_wide_umask_change(tmp_path, monkeypatch):
    def forbidden(mask):
        raise AssertionError("the process umask must not change")

    monkeypatch.setattr(os, "umask", forbidden)
    monkeypatch.setattr(files.os, "umask", forbidden)
    path = atomic_write_text(tmp_path / "f.txt", "x")
    append_text(tmp_path / "g.txt", "y")
    monkeypatch.undo()
    mask = _umask_now()
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "g.txt").stat().st_mode & 0o777 == 0o666 & ~mask


# --------------------------------------------------------------------------- item 3: kill -9


def test_directory_left_by_a_kill_during_the_config_write_is_reusable(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    # What kill -9 during the first atomic write leaves: the lock file with a dead
    # process's line (its flock died with it) and the temporary config.
    (run / ".lock").write_text("pid 999999999 on nowhere\n")
    (run / ".config.yaml.k9x2ab3c.tmp").write_text("name: digits_lt\ntrain: {epo")
    before = _snapshot(tmp_path)
    assert main(["train", "--run-dir", str(run), *FAST, "train.epochs=1"]) == 0
    assert (run / "checkpoints" / "last.pt").is_file()
    assert not list(run.glob(".*.tmp"))
    assert _changed_outside(before, _snapshot(tmp_path), "run") == []


def test_resume_of_a_killed_start_says_to_start_again(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("pid 999999999 on nowhere\n")
    (run / ".config.yaml.k9x2ab3c.tmp").write_text("partial")
    atomic_write_text(run / "config.yaml", "name: digits_lt\n")
    assert main(["train", "--resume", str(run)]) == 2
    assert f"start it again with --run-dir {run}" in _one_line(capsys)


def test_real_kill_during_start_leaves_a_reusable_directory(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "neuralcollapse", "train", "--run-dir", str(run), *FAST]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(400):  # kill it as soon as it has claimed the directory
        if (run / ".lock").exists() or process.poll() is not None:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert main(["train", "--run-dir", str(run), *FAST, "train.epochs=1"]) == 0
    assert (run / "checkpoints" / "last.pt").is_file() and not list(run.glob(".*.tmp"))


# --------------------------------------------------------------------------- item 2: full disk


def _limited_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_file_size_limit_during_a_checkpoint_is_one_line_exit_1(tmp_path, trained):
    run = _copy_run(trained, tmp_path / "run")
    last = (run / "checkpoints" / "last.pt").read_bytes()
    assert len(last) > 30_000  # the limit below stops the checkpoint, not the records
    before = _snapshot(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "neuralcollapse", "train", "--resume", str(run)],
        preexec_fn=_limited_file_size(30_000),
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert done.returncode == 1, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "File too large" in err[0] and "last.pt" in err[0] and "holds epoch 1" in err[0]
    assert (run / "checkpoints" / "last.pt").read_bytes() == last
    assert not list(run.rglob("*.tmp"))
    assert _changed_outside(before, _snapshot(tmp_path), "run") == []


def test_save_checkpoint_turns_torchs_wrapped_write_error_into_os_error(tmp_path):
    script = (
        "import resource, signal, torch\n"
        "from neuralcollapse.train.checkpoint import save_checkpoint\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "try:\n"
        f"    save_checkpoint({{'x': torch.zeros(100000)}}, {str(tmp_path / 'c.pt')!r})\n"
        "except OSError as exc:\n"
        "    print(exc.errno, exc.filename)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.split() == ["27", str(tmp_path / "c.pt")], done.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- item 7/9: one line


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.name=nosuch", "unknown model 'nosuch'"),
        ("model.options={foo: 1}", "no option(s) ['foo']"),
        ("model.options={hidden: fat}", "model.name/model.options"),
    ],
)
def test_bad_model_values_are_one_line(tmp_path, capsys, override, message):
    run = tmp_path / "run"
    before = _snapshot(tmp_path)
    args = ["train", "--run-dir", str(run), *FAST, "train.epochs=1", override]
    if override.startswith("model.name"):
        args.remove("model.options={hidden: [32]}")
    assert main(args) == 2
    assert message in _one_line(capsys)
    assert _changed_outside(before, _snapshot(tmp_path)) == []  # the run dir is gone too


@pytest.mark.parametrize("seed", [str(2**70), "4294967296", "-1"])
def test_seed_out_of_range_is_one_line(tmp_path, capsys, seed):
    assert main(["train", "--print-config", f"train.seed={seed}"]) == 2
    assert "train.seed must be in [0, 4294967295]" in _one_line(capsys) or seed == "-1"


def test_checkpoint_with_a_widths_list_of_the_wrong_length(tmp_path, trained, capsys):
    state = load_checkpoint(trained / "checkpoints" / "last.pt")
    state["config"]["model"] = {**state["config"]["model"], "name": "small_cnn"}
    state["config"]["model"]["options"] = {"widths": [8]}
    crafted = tmp_path / "crafted.pt"
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, crafted)
    before = _snapshot(tmp_path)
    assert main(["eval", str(crafted)]) == 2
    assert "model.name/model.options" in _one_line(capsys)
    assert _changed_outside(before, _snapshot(tmp_path)) == []


def test_checkpoint_without_its_entries_is_one_line(tmp_path, capsys):
    crafted = tmp_path / "crafted.pt"
    save_checkpoint({"model": {}, "epoch": 1}, crafted)
    assert main(["eval", str(crafted)]) == 2
    assert "no valid 'config' entry" in _one_line(capsys)


def test_eval_json_into_a_missing_folder_fails_before_the_evaluation(tmp_path, capsys):
    out = tmp_path / "missing" / "out.json"
    # The checkpoint does not exist either: the --json check comes first.
    assert main(["eval", str(tmp_path / "none.pt"), "--json", str(out)]) == 2
    line = _one_line(capsys)
    assert "--json" in line and "does not exist" in line and ".tmp" not in line
    assert list(tmp_path.iterdir()) == []


def test_interrupt_before_the_first_epoch_is_one_line_130(tmp_path, capsys, monkeypatch):
    import neuralcollapse.train.trainer as trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "assemble", interrupted)
    before = _snapshot(tmp_path)
    assert main(["train", "--run-dir", str(tmp_path / "run"), *FAST]) == 130
    assert "neuralcollapse train: interrupted" in _one_line(capsys)
    assert _changed_outside(before, _snapshot(tmp_path)) == []  # the new run dir is removed


def test_interrupt_while_the_command_module_loads_is_one_line_130(monkeypatch, capsys):
    import neuralcollapse.cli as cli

    def interrupted(command):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["train"]) == 130
    assert _one_line(capsys) == "neuralcollapse train: interrupted (Ctrl-C)"


# --------------------------------------------------------------------------- metrics inputs


@pytest.fixture
def features(tmp_path) -> Path:
    gen = np.random.default_rng(0)
    path = tmp_path / "good.npz"
    np.savez(path, features=gen.normal(size=(40, 4)), labels=np.arange(40) % 4)
    return path


def _object_array() -> np.ndarray:
    values = np.empty(40, dtype=object)
    values[:] = [{"a": 1}] * 40
    return values


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("features,labels\n1,2\n"), "does not start like one"),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "cannot read"),
        (
            lambda p: np.savez(p, features=_object_array(), labels=np.arange(40) % 4),
            "Python objects",
        ),
        (
            lambda p: np.savez(p, features=np.full((40, 4), "a"), labels=np.arange(40) % 4),
            "holds <U1 values (text)",
        ),
        (
            lambda p: np.savez(p, features=np.ones((40, 4)), labels=np.array(["x"] * 40)),
            "'labels'",
        ),
        (
            lambda p: np.savez(p, features=np.ones((40, 4), complex), labels=np.arange(40) % 4),
            "complex",
        ),
    ],
)
def test_metrics_on_unreadable_npz_is_one_line(tmp_path, capsys, make, message):
    path = tmp_path / "bad.npz"
    make(path)
    before = _snapshot(tmp_path)
    assert main(["metrics", str(path)]) == 2
    assert message in _one_line(capsys)
    assert _changed_outside(before, _snapshot(tmp_path)) == []


def test_metrics_classifier_of_python_objects_is_one_line(tmp_path, features, capsys):
    np.save(tmp_path / "object.npy", _object_array(), allow_pickle=True)
    assert main(["metrics", str(features), "--classifier", str(tmp_path / "object.npy")]) == 2
    assert "Python objects" in _one_line(capsys)


def test_metrics_accepts_a_fixed_frame_head_state_dict(tmp_path, features, capsys):
    from neuralcollapse.frames import simplex_etf
    from neuralcollapse.heads import FixedFrameHead

    frame = simplex_etf(4, 4)
    torch.save(FixedFrameHead(4, frame).state_dict(), tmp_path / "head.pt")
    torch.save(frame, tmp_path / "frame.pt")
    out = tmp_path / "head.json", tmp_path / "frame.json"
    for source, target in zip(("head.pt", "frame.pt"), out, strict=True):
        argv = ["--classifier", str(tmp_path / source), "--json", str(target)]
        assert main(["metrics", str(features), *argv]) == 0
    head, plain = (json.loads(p.read_text()) for p in out)
    assert head["nc3_self_duality"] is not None
    assert head["nc3_self_duality"] == plain["nc3_self_duality"]


def test_metrics_json_into_a_missing_folder_fails_before_computing(tmp_path, features, capsys):
    out = tmp_path / "missing" / "r.json"
    assert main(["metrics", str(features), "--json", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "does not exist" in captured.err and ".tmp" not in captured.err


def test_nan_rows_are_counted_before_centring(tmp_path, capsys):
    values = np.random.default_rng(0).normal(size=(40, 4))
    values[3] = np.nan
    np.savez(tmp_path / "nan.npz", features=values, labels=np.arange(40) % 4)
    assert main(["metrics", str(tmp_path / "nan.npz")]) == 2
    assert "in 1 of 40 rows" in _one_line(capsys)


def test_collapse_stats_merge_refuses_another_global_mean():
    from neuralcollapse.metrics import CollapseStats

    weighted = CollapseStats(3, 4, global_mean="weighted")
    with pytest.raises(ValueError, match="global_mean='weighted', got one with 'balanced'"):
        weighted.merge(CollapseStats(3, 4, global_mean="balanced"))


# --------------------------------------------------------------------------- JSON


def test_deep_json_is_one_line_never_a_recursion_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    with pytest.raises(JSONError, match=f"nested 5000 levels deep, more than the {MAX_DEPTH}"):
        read_json(path)
    with pytest.raises(JSONError, match="not UTF-8"):
        loads(b"\xff\xfe")
    with pytest.raises(JSONError, match="cannot be read"):
        loads("1" * 5000)
    assert loads('{"a": "[[[[[[", "b": [1, [2, {"c": "\\\\"}]]}') == {
        "a": "[[[[[[",
        "b": [1, [2, {"c": "\\"}]],
    }


def test_run_readers_skip_deep_json(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.append_record({"epoch": 1, "loss": 0.5})
    append_text(run.metrics_path, DEEP + "\n")
    run.summary_path.write_text(DEEP)
    records = run.read_records()
    assert [r["epoch"] for r in records.records] == [1] and records.skipped == 1
    assert run.read_summary() is None
    run.release()


def test_report_replaces_linked_figure_files_never_writes_through_them(tmp_path, trained):
    run = _copy_run(trained, tmp_path / "run")
    assert main(["report", str(run)]) == 0
    figures = sorted((run / "report_figures").iterdir())
    assert figures
    victim = _victim(tmp_path)
    for figure in figures:
        figure.unlink()
        figure.symlink_to(victim)
    before = _snapshot(tmp_path)
    assert main(["report", str(run)]) == 0
    assert victim.read_text() == "IMPORTANT\n"
    assert not any(figure.is_symlink() for figure in figures)
    assert _changed_outside(before, _snapshot(tmp_path), "run") == []


@pytest.mark.parametrize("text", [DEEP, '{"rows": ' + DEEP + "}", "\ufeff{]"])
def test_deep_or_broken_json_given_to_a_command_is_one_line(tmp_path, capsys, text):
    path = tmp_path / "reproduce.json"
    path.write_text(text, encoding="utf-8")
    before = _snapshot(tmp_path)
    assert main(["reproduce", "--table", str(path)]) == 2
    line = _one_line(capsys)
    assert str(path) in line and "RecursionError" not in line
    assert _changed_outside(before, _snapshot(tmp_path)) == []


def test_deep_json_hierarchy_is_one_error_line(tmp_path):
    from neuralcollapse.hierarchy import Hierarchy

    path = tmp_path / "tree.json"
    path.write_text('{"a": ' * 5000 + '["x", "y"]' + "}" * 5000)
    with pytest.raises(ValueError) as caught:
        Hierarchy.from_nested(path)
    assert len(str(caught.value).splitlines()) == 1


@pytest.mark.parametrize("then", ["finish", "crash"])
def test_an_interrupt_a_library_swallows_still_ends_with_130(monkeypatch, capsys, then):
    import neuralcollapse.commands.ufm as ufm_command

    def run(args) -> int:
        try:  # a library that loses the KeyboardInterrupt (as an import callback does)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        if then == "crash":  # what a half-imported module does next
            raise RecursionError("maximum recursion depth exceeded")
        return 0

    monkeypatch.setattr(ufm_command, "run", run)
    assert main(["ufm", "simulate"]) == 130
    assert _one_line(capsys).startswith("neuralcollapse ufm: interrupted (Ctrl-C)")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_lock_held_for_a_dead_process_says_so(tmp_path):
    import fcntl
    import socket

    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(f"pid 999999999 on {socket.gethostname()}\n")
    with open(run / ".lock") as holder:  # a forked child of the dead run still holds it
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UsageError, match="ended; a child process still holds the lock"):
            RunDir.create(run)
    RunDir.create(run).release()  # free once the child is gone


def test_atomic_write_errors_name_the_target_not_the_temporary_file(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        atomic_write_text(tmp_path / "missing" / "out.json", "{}")
    assert caught.value.filename == str(tmp_path / "missing" / "out.json")
