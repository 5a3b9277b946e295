"""Trackers and the per-epoch lines: TensorBoard, W&B (offline) and MLflow (SQLite store) each
receive the config and every epoch's scalars of a short real training run, read back with
the package's own reader where it has one; a missing package names its extra; when stderr
is not a terminal every epoch prints one plain line.

Nothing here goes over the network: W&B runs offline (no login), MLflow writes a SQLite store
inside the run directory, and both packages' telemetry is switched off.
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import time
from pathlib import Path

import pytest

from neuralcollapse.errors import ConfigError
from neuralcollapse.rundir import RunDir
from neuralcollapse.train import Trainer, load_config
from neuralcollapse.train.log import RunLog
from neuralcollapse.train.trackers import (
    MLFLOW_DB,
    epoch_scalars,
    flat_config,
    mlflow_default_uri,
    open_trackers,
)

# A tiny model on the digits for two epochs: a few seconds.
FAST = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "train.batch_size=64",
    "train.epochs=2",
    "log.report=false",
    "log.tensorboard=false",
    "log.progress=off",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No tracker may reach the network or ask for a login."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def train(run_dir: Path, *overrides: str, **kwargs) -> tuple[Trainer, list[str]]:
    lines: list[str] = []
    trainer = Trainer(load_config(None, [*FAST, *overrides]), run_dir, echo=lines.append, **kwargs)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer, lines


def read_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- scalars


def test_epoch_scalars_names_every_measured_number_and_skips_the_rest():
    record = {
        "epoch": 3,
        "lr": 0.05,
        "train_loss": 0.25,
        "train": {"top1": 0.9, "few": None, "collapse": {"nc1": 0.5, "nc2_equinorm_means": None}},
        "val": {"top1": 0.8, "balanced": float("nan")},
        "test": {
            "top1": 0.7,
            "many": 0.75,
            "collapse": {"nc1": 0.6, "nc4_ncc_mismatch": 0.0, "class_counts": [3, 2]},
            "hierarchical": {"hier_dist@1": 1.5, "num_samples": 100, "mistakes@5": 2.0},
        },
        "elapsed_s": 4.0,
    }
    assert epoch_scalars(record) == {
        "train/loss": 0.25,
        "train/lr": 0.05,
        "train/top1": 0.9,
        "train/collapse/nc1": 0.5,
        "val/top1": 0.8,
        "test/top1": 0.7,
        "test/many": 0.75,
        "test/collapse/nc1": 0.6,
        "test/collapse/nc4_ncc_mismatch": 0.0,
        "test/hierarchical/hier_dist@1": 1.5,
        "test/hierarchical/mistakes@5": 2.0,
    }
    # A post-hoc stage trains nothing: no loss and no learning rate.
    assert epoch_scalars({"epoch": 4, "lr": 0.1, "test": {"top1": 0.5}}) == {"test/top1": 0.5}


def test_flat_config_has_every_key_dotted():
    config = load_config(None, ["optim.lr=0.05"])
    flat = flat_config(config)
    assert flat["optim.lr"] == 0.05 and flat["log.wandb"] is False
    assert flat["name"] == config.name and flat["eval.few"] == config.eval.few
    assert all(not isinstance(v, dict) for v in flat.values())


# --------------------------------------------------------------------- plain lines


def test_every_epoch_prints_one_plain_line_off_a_terminal(tmp_path):
    """log.progress=auto with stderr not a terminal (as under pytest, SLURM, nohup)."""
    assert not sys.stderr.isatty()
    _, lines = train(tmp_path / "run", "log.progress=auto", "eval.collapse_every=1")
    epochs = [line for line in lines if line.startswith("epoch ")]
    records = read_records(tmp_path / "run")
    assert len(epochs) == len(records) == 2
    # the validation split's accuracy and the training split's NC1; never the test split
    pattern = r"epoch (\d+)/2  loss (\S+)  lr (\S+)  val top1 (\S+)%  train nc1 (\S+)  (\d+\.\d)s"
    for line, record in zip(epochs, records, strict=True):
        match = re.fullmatch(pattern, line)
        assert match, line
        epoch, loss, lr, top1, nc1, elapsed = match.groups()
        assert int(epoch) == record["epoch"]
        assert float(loss) == pytest.approx(record["train_loss"], abs=5e-5)
        assert float(lr) == pytest.approx(record["lr"], rel=1e-2, abs=1e-12)
        assert float(top1) == pytest.approx(100 * record["val"]["top1"], abs=0.05)
        assert float(nc1) == pytest.approx(record["train"]["collapse"]["nc1"], rel=1e-2)
        assert float(elapsed) == pytest.approx(record["elapsed_s"], abs=0.05)


def test_plain_line_of_an_epoch_without_evaluation(tmp_path):
    config = load_config(None, FAST)
    log = RunLog(config, None, print, total_steps=1, first_epoch=0)
    line = log.line({"epoch": 1, "train_loss": 0.5, "lr": 0.1, "elapsed_s": 1.25})
    assert line == "epoch 1/2  loss 0.5000  lr 0.1  1.2s"
    with_val = log.line(
        {
            "epoch": 2,
            "train_loss": 0.25,
            "lr": 0.0,
            "test": {"top1": 0.5, "collapse": {}},
            "val": {"top1": 0.25},
            "elapsed_s": 3.0,
        }
    )
    assert with_val == "epoch 2/2  loss 0.2500  lr 0  val top1 25.0%  3.0s"  # no test split


# -------------------------------------------------------------- missing packages


@pytest.mark.parametrize(("key", "module"), [("wandb", "wandb"), ("mlflow", "mlflow")])
def test_missing_tracker_package_names_the_extra(key, module, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    config = load_config(None, [*FAST, f"log.{key}=true"])
    run = RunDir.create(tmp_path / "run")
    try:
        with pytest.raises(ConfigError) as caught:
            open_trackers(config, run)
    finally:
        run.release()
    message = str(caught.value)
    assert f"pip install 'neuralcollapse[{key}]'" in message and f"log.{key}=false" in message
    assert not (tmp_path / "run" / key).exists() and not (tmp_path / "run" / "mlruns").exists()


def test_mlflow_default_store_is_sqlite_unless_an_older_run_holds_a_file_store(tmp_path):
    run = RunDir.create(tmp_path / "run")
    try:
        assert mlflow_default_uri(run) == "sqlite:///" + str(
            (tmp_path / "run" / "mlruns" / MLFLOW_DB).resolve()
        )
        (tmp_path / "run" / "mlruns" / "0").mkdir(parents=True)  # a file store's experiment
        assert mlflow_default_uri(run) == (tmp_path / "run" / "mlruns").resolve().as_uri()
    finally:
        run.release()


def test_tracker_names_are_checked_with_the_config():
    with pytest.raises(ConfigError, match="log.wandb_project"):
        load_config(None, ["log.wandb_project=team/project"])
    with pytest.raises(ConfigError, match="log.mlflow_experiment"):
        load_config(None, ["log.mlflow_experiment=' '"])


# ------------------------------------------------------------------- TensorBoard


def test_tensorboard_holds_the_scalars_and_the_config(tmp_path):
    accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="tensorboard is not installed (pip install 'neuralcollapse[tensorboard]')",
    )
    run_dir = tmp_path / "run"
    train(run_dir, "log.tensorboard=true")
    events = accumulator.EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    records = read_records(run_dir)
    for tag, key in (("train/loss", "train_loss"), ("train/lr", "lr")):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(r["epoch"], pytest.approx(r[key], rel=1e-6)) for r in records]
    last = events.Scalars("test/top1")[-1]
    assert (last.step, last.value) == (2, pytest.approx(records[-1]["test"]["top1"], rel=1e-6))
    # The HParams tab: the config's values in the plugin's session-start summary.
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = [
        plugin_data_pb2.HParamsPluginData.FromString(content)
        for content in events.PluginTagToContent("hparams").values()
    ]
    (start,) = [d.session_start_info for d in data if d.HasField("session_start_info")]
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.1)
    assert start.hparams["model.name"].string_value == "mlp"
    (experiment,) = [d.experiment for d in data if d.HasField("experiment")]
    assert "test/top1" in {m.name.tag for m in experiment.metric_infos}


# -------------------------------------------------------------------- W&B offline


def wandb_log_records(path: Path) -> list[bytes]:
    """The records of a ``.wandb`` file: W&B's LevelDB-style log (a 7-byte file header
    ":W&B" + 0xBEE1 + version; 32 KiB blocks of chunks, each CRC32 (4 bytes), length (2),
    type (1: full, 2: first, 3: middle, 4: last) and payload)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B" and data[4:6] == b"\xe1\xbe", data[:7]
    position, block, records, pending = 7, 32768, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        payload = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:
            records.append(payload)
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            records.append(pending + payload)
            pending = b""
        elif kind != 0 or length:
            raise AssertionError(f"unknown chunk type {kind} at byte {position}")
    return records


def wandb_run_contents(run_dir: Path) -> tuple[list[dict], dict, list[str]]:
    """History rows, config and run ids of the offline W&B runs of a run directory."""
    wandb_pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    history, config, ids = [], {}, []
    for path in sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        for raw in wandb_log_records(path):
            record = wandb_pb.Record()
            record.ParseFromString(raw)
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row = {}
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    row[key] = json.loads(item.value_json)
                history.append(row)
            elif kind == "config":
                for item in record.config.update:
                    config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
            elif kind == "run":
                ids.append(record.run.run_id)
    return history, config, ids


def test_wandb_offline_run_holds_the_scalars_and_the_config(tmp_path):
    pytest.importorskip(
        "wandb", reason="wandb is not installed (pip install 'neuralcollapse[wandb]')"
    )
    run_dir = tmp_path / "run"
    train(run_dir, "log.wandb=true", "log.wandb_project=nc-test", "optim.lr=0.05")
    records = read_records(run_dir)
    # W&B's own service process writes the .wandb file; on a loaded machine its last
    # records can land a moment after run.finish() returns: wait for them (bounded)
    deadline = time.monotonic() + 30
    history, config, ids = wandb_run_contents(run_dir)
    while (len(ids), len(history)) != (1, len(records)) and time.monotonic() < deadline:
        time.sleep(0.5)
        history, config, ids = wandb_run_contents(run_dir)
    assert len(ids) == 1 and len(history) == len(records) == 2
    for row, record in zip(history, records, strict=True):
        assert row["_step"] == record["epoch"]
        expected = epoch_scalars(record)
        assert {k: row[k] for k in expected} == pytest.approx(expected, rel=1e-12)
    assert config["optim"]["lr"] == 0.05 and config["log"]["wandb_project"] == "nc-test"


# -------------------------------------------------------------- MLflow SQLite store


def mlflow_client(run_dir: Path):
    tracking = pytest.importorskip(
        "mlflow.tracking", reason="mlflow is not installed (pip install 'neuralcollapse[mlflow]')"
    )
    # Read back as a user would: the store's URI alone, no environment variable.
    uri = "sqlite:///" + str((run_dir / "mlruns" / MLFLOW_DB).resolve())
    return tracking.MlflowClient(tracking_uri=uri)


def test_mlflow_store_holds_the_scalars_and_params_across_a_resume(tmp_path, monkeypatch):
    pytest.importorskip(
        "mlflow", reason="mlflow is not installed (pip install 'neuralcollapse[mlflow]')"
    )
    pytest.importorskip("sqlalchemy", reason="SQLAlchemy is not installed (the mlflow extra)")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    run_dir = tmp_path / "run"
    options = ("log.mlflow=true", "log.mlflow_experiment=nc-test", "eval.collapse_every=1")
    train(run_dir, *options, stop_after=1)
    trainer = Trainer(load_config(None, [*FAST, *options]), run_dir, resume=True)
    try:
        trainer.fit()
    finally:
        trainer.close()
    assert (run_dir / "mlruns" / MLFLOW_DB).is_file()
    assert list(cwd.iterdir()) == []  # no store or artifacts in the working directory
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    client = mlflow_client(run_dir)
    experiment = client.get_experiment_by_name("nc-test")
    (run,) = client.search_runs([experiment.experiment_id])  # the resumed run continued it
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.tags["neuralcollapse.run_dir"] == str(run_dir.resolve())
    assert run.data.params["optim.lr"] == "0.1" and run.data.params["log.mlflow"] == "True"
    records = read_records(run_dir)
    for key, tag in (("train_loss", "train/loss"), ("lr", "train/lr")):
        history = client.get_metric_history(run.info.run_id, tag)
        assert sorted((m.step, m.value) for m in history) == [
            (r["epoch"], pytest.approx(r[key], rel=1e-12)) for r in records
        ]
    nc1 = client.get_metric_history(run.info.run_id, "test/collapse/nc1")
    assert sorted((m.step, m.value) for m in nc1) == [
        (r["epoch"], pytest.approx(r["test"]["collapse"]["nc1"], rel=1e-12)) for r in records
    ]
