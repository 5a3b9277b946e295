"""Experiment trackers: where a run's config and per-epoch scalars go besides ``metrics.jsonl``.

Three trackers sit behind one interface (:class:`Tracker`: the config once, the scalars of
every finished epoch, close), each switched on by its own ``log.*`` key:

* TensorBoard (``log.tensorboard``, on by default): event files in ``RUN_DIR/tensorboard``;
  the config goes to the HParams tab.
* Weights & Biases (``log.wandb``): an offline run by default (``log.wandb_mode``), written
  under ``RUN_DIR/wandb`` and uploaded later with ``wandb sync``; nothing goes over the
  network and no login is needed. Project: ``log.wandb_project``.
* MLflow (``log.mlflow``): by default a SQLite store, ``RUN_DIR/mlruns/mlflow.db``
  (MLflow's recommended local store since its file store was deprecated; artifacts in
  ``RUN_DIR/mlruns/artifacts``), read back with ``mlflow ui --backend-store-uri
  sqlite:///RUN_DIR/mlruns/mlflow.db`` or ``MlflowClient(tracking_uri=...)``, no environment
  variable needed; or the tracking server / store of ``log.mlflow_uri``. A run directory
  started by an older version with a file store in ``RUN_DIR/mlruns`` keeps it on resume.
  Experiment: ``log.mlflow_experiment``. The SQLite store needs SQLAlchemy and Alembic,
  which the ``mlflow`` extra brings.

Each package is imported only when its tracker is on; a missing one is a
:class:`~neuralcollapse.errors.ConfigError` that names the extra to install
(``pip install 'neuralcollapse[wandb]'``). Only the main process (rank 0) tracks.

The scalars are those of :func:`epoch_scalars` under the same names everywhere
(``train/loss``, ``test/top1``, ``test/collapse/nc1`` ...; MLflow, which refuses ``@`` in
names, gets ``hier_dist_at_1`` for ``hier_dist@1``), with the epoch as the step. A resumed
run continues the same W&B run (its id derives from the run directory) and the same MLflow
run (found by its ``neuralcollapse.run_dir`` tag); TensorBoard drops events past the
checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import math
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any, Literal

from neuralcollapse._internal.optional import extra_install, optional_import
from neuralcollapse._version import __version__
from neuralcollapse.errors import ConfigError
from neuralcollapse.rundir import MLFLOW, RunDir
from neuralcollapse.train.config import Config, config_to_dict

__all__ = [
    "COLLAPSE_SCALARS",
    "MLFLOW_DB",
    "SUMMARY_KEYS",
    "MlflowTracker",
    "Status",
    "TensorBoardTracker",
    "Tracker",
    "WandbTracker",
    "epoch_scalars",
    "flat_config",
    "mlflow_default_uri",
    "open_trackers",
]

# Accuracy numbers of an evaluated split worth a curve (and the summary's columns).
SUMMARY_KEYS = ("top1", "balanced", "many", "medium", "few")
# Scalars of the collapse report worth a curve.
COLLAPSE_SCALARS = (
    "nc1",
    "nc1_cdnv",
    "nc2_etf_distance_means",
    "nc2_equinorm_means",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
    "minority_cosine",
)
# Evaluated splits a record may hold, in the order their scalars are listed.
SPLITS = ("train", "val", "test")
# The metrics the TensorBoard HParams tab shows against the config.
HPARAM_METRICS = ("test/top1", "test/balanced", "test/few", "test/collapse/nc1")

Status = Literal["finished", "failed", "killed"]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def epoch_scalars(record: Mapping[str, Any]) -> dict[str, float]:
    """The scalars of one ``metrics.jsonl`` record, by tracker name.

    ``train/loss`` and ``train/lr`` when the epoch trained; for each evaluated split
    (``train``, ``val``, ``test``) its accuracies (``test/top1``, fractions in [0, 1]),
    the collapse scalars (``test/collapse/nc1``) and hierarchical metrics
    (``test/hierarchical/mistake_severity``) that were measured. Missing, null and
    non-finite values are left out.
    """
    scalars: dict[str, float] = {}
    for key, name in (("train_loss", "train/loss"), ("lr", "train/lr")):
        if "train_loss" in record and _finite(record.get(key)):
            scalars[name] = float(record[key])
    for split in SPLITS:
        result = record.get(split)
        if not isinstance(result, Mapping):
            continue
        for key in SUMMARY_KEYS:
            if _finite(result.get(key)):
                scalars[f"{split}/{key}"] = float(result[key])
        collapse = result.get("collapse")
        if isinstance(collapse, Mapping):
            for key in COLLAPSE_SCALARS:
                if _finite(collapse.get(key)):
                    scalars[f"{split}/collapse/{key}"] = float(collapse[key])
        hierarchical = result.get("hierarchical")
        if isinstance(hierarchical, Mapping):
            for key, value in hierarchical.items():
                if key != "num_samples" and _finite(value):
                    scalars[f"{split}/hierarchical/{key}"] = float(value)
    return scalars


def flat_config(config: Config) -> dict[str, Any]:
    """Every config value under its dotted key (``optim.lr``), defaults included."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            if isinstance(value, Mapping):
                walk(f"{prefix}{key}.", value)
            else:
                flat[f"{prefix}{key}"] = value

    walk("", config_to_dict(config))
    return flat


def _plain(value: Any) -> bool | int | float | str:
    """A config value as a bool, number or string (None and lists become their text)."""
    return value if isinstance(value, bool | int | float | str) else str(value)


def _require(module: str, key: str, extra: str) -> ModuleType:
    """Import ``module`` for the tracker switched on by ``key``, or say how to install it."""
    install = f"{extra_install(extra)} (or set {key}=false)"
    return optional_import(
        module, package=module, purpose=f"{key}=true", install=install, error=ConfigError
    )


def _run_key(run: RunDir) -> str:
    """A stable id of the run directory (its absolute path): 16 hex digits."""
    return hashlib.sha256(str(run.path.resolve()).encode()).hexdigest()[:16]


class Tracker(ABC):
    """Where a run's config and per-epoch scalars go. One instance per run, main process."""

    name: str = "tracker"

    @abstractmethod
    def log_config(self, config: Config) -> None:
        """Record the run's config (parameters); called once, before the first epoch."""

    @abstractmethod
    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        """Record one epoch's scalars (:func:`epoch_scalars`) at ``step`` (the epoch)."""

    @abstractmethod
    def close(self, status: Status = "finished") -> None:
        """Flush and close; ``status`` says how the run ended."""


class TensorBoardTracker(Tracker):
    """Event files in ``RUN_DIR/tensorboard``; the config in the HParams tab.

    Args:
        run: the run directory.
        first_epoch: the epoch the run (re)starts from: later events of an earlier
            attempt are dropped (``purge_step``), and the config is written only at the
            start of a new run.
    """

    name = "tensorboard"

    def __init__(self, run: RunDir, *, first_epoch: int = 0) -> None:
        _require("tensorboard", "log.tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.first_epoch = first_epoch
        self.writer = SummaryWriter(log_dir=str(run.tensorboard), purge_step=first_epoch + 1)

    def log_config(self, config: Config) -> None:
        if self.first_epoch > 0:
            return  # written when the run started
        from torch.utils.tensorboard.summary import hparams

        values = {key: _plain(value) for key, value in flat_config(config).items()}
        for summary in hparams(values, dict.fromkeys(HPARAM_METRICS, math.nan)):
            self.writer.file_writer.add_summary(summary)

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        # One event holding every scalar of the step rather than one event per scalar
        # (add_scalar): the same values for TensorBoard at a fraction of the cost
        # (benchmarks/bench_epoch_overhead.py, 7 rounds each: the default job's epoch went
        # from 1.082x to 1.065x a plain loop's; 1.051x with TensorBoard off)
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=key, simple_value=float(v)) for key, v in scalars.items()]
        if values:
            self.writer.file_writer.add_summary(Summary(value=values), step)

    def close(self, status: Status = "finished") -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """A Weights & Biases run under ``RUN_DIR/wandb`` (offline unless ``mode="online"``).

    The run's id derives from the run directory, so a resumed training continues it; its
    name is the run directory's name. The console is not captured and no code is saved.

    Args:
        run: the run directory.
        project: the W&B project.
        mode: ``"offline"`` (files only; ``wandb sync RUN_DIR/wandb/offline-run-*``
            uploads them later) or ``"online"`` (needs ``wandb login``).
    """

    name = "wandb"

    def __init__(self, run: RunDir, *, project: str, mode: str = "offline") -> None:
        wandb = _require("wandb", "log.wandb", "wandb")
        settings = wandb.Settings(console="off", disable_git=True, save_code=False)
        try:
            self.run = wandb.init(
                project=project,
                name=run.path.resolve().name,
                id=_run_key(run),
                resume="allow",
                dir=str(run.path),
                mode=mode,
                settings=settings,
            )
        except wandb.errors.Error as exc:
            raise ConfigError(f"log.wandb: W&B could not start a run ({mode}): {exc}") from exc

    def log_config(self, config: Config) -> None:
        self.run.config.update(config_to_dict(config), allow_val_change=True)

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        self.run.log(dict(scalars), step=step)

    def close(self, status: Status = "finished") -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


@contextlib.contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow >= 3.7 refuses its file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set;
    set it (only if unset, only while the store opens) for a ``file:`` URI we chose."""
    if not uri.startswith("file:") or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


MLFLOW_DB = "mlflow.db"  # the default SQLite store, inside RUN_DIR/mlruns
_MLFLOW_ARTIFACTS = "artifacts"


def mlflow_default_uri(run: RunDir) -> str:
    """The tracking URI of a run without ``log.mlflow_uri``: ``sqlite:///`` of
    ``RUN_DIR/mlruns/mlflow.db``, or the file store ``RUN_DIR/mlruns`` that an older
    version of this package started there (resumed runs keep their store)."""
    folder = run.path / MLFLOW
    if folder.is_dir() and any(
        entry.name not in (MLFLOW_DB, _MLFLOW_ARTIFACTS) for entry in folder.iterdir()
    ):
        return folder.resolve().as_uri()
    return "sqlite:///" + str((folder / MLFLOW_DB).resolve())


@contextlib.contextmanager
def _quiet_store_setup() -> Iterator[None]:
    """MLflow and Alembic log every table they create in a new SQLite store at INFO level;
    those lines say nothing to a user of this package and are held back while it opens."""
    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _mlflow_key(name: str) -> str:
    """A scalar name MLflow accepts (letters, digits, ``_ - . / :`` and spaces)."""
    return re.sub(r"[^\w\-./: ]", "_", name.replace("@", "_at_"))


class MlflowTracker(Tracker):
    """An MLflow run in the SQLite store ``RUN_DIR/mlruns/mlflow.db`` or at a tracking URI.

    Args:
        run: the run directory.
        uri: the tracking URI (``http://host:5000``, ``sqlite:///path/mlflow.db``,
            ``file:///path/mlruns``); None for the SQLite store of
            :func:`mlflow_default_uri`.
        experiment: the experiment name (created when missing).
        resume: continue the run of an earlier attempt of this run directory, found by
            its ``neuralcollapse.run_dir`` tag, when there is one.
    """

    name = "mlflow"

    def __init__(
        self, run: RunDir, *, uri: str | None, experiment: str, resume: bool = False
    ) -> None:
        _require("mlflow", "log.mlflow", "mlflow")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = uri or mlflow_default_uri(run)
        if self.uri.startswith("sqlite:") and self._needs_sqlite():
            raise ConfigError(
                f"log.mlflow: the SQLite store {self.uri} needs SQLAlchemy and Alembic: "
                "pip install 'neuralcollapse[mlflow]' (or set log.mlflow_uri to a server)"
            )
        path = str(run.path.resolve())
        try:
            if uri is None:
                (run.path / MLFLOW).mkdir(exist_ok=True)
            with _file_store_allowed(self.uri), _quiet_store_setup():
                self.client = MlflowClient(tracking_uri=self.uri)
                found = self.client.get_experiment_by_name(experiment)
            if found:
                experiment_id = found.experiment_id
            else:
                # artifacts beside the store, never in the working directory
                artifacts = None
                if uri is None:
                    artifacts = (run.path / MLFLOW / _MLFLOW_ARTIFACTS).resolve().as_uri()
                experiment_id = self.client.create_experiment(
                    experiment, artifact_location=artifacts
                )
            previous = self._previous_run(experiment_id, path) if resume else None
            if previous is not None:
                self.run_id = previous
                self.client.update_run(previous, status="RUNNING")
            else:
                tags = {
                    "mlflow.runName": run.path.resolve().name,
                    "neuralcollapse.run_dir": path,
                    "neuralcollapse.version": __version__,
                }
                created = self.client.create_run(experiment_id, tags=tags)
                self.run_id = created.info.run_id
        except MlflowException as exc:
            raise ConfigError(f"log.mlflow: MLflow at {self.uri} refused the run: {exc}") from exc

    @staticmethod
    def _needs_sqlite() -> bool:
        return any(importlib.util.find_spec(m) is None for m in ("sqlalchemy", "alembic"))

    def _previous_run(self, experiment_id: str, path: str) -> str | None:
        if "'" in path:
            return None  # cannot be quoted in a search filter: start a new run
        found = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`neuralcollapse.run_dir` = '{path}'",
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def log_config(self, config: Config) -> None:
        from mlflow.entities import Param

        params = [Param(key, str(value)) for key, value in flat_config(config).items()]
        existing = self.client.get_run(self.run_id).data.params
        params = [p for p in params if p.key not in existing]  # params cannot be rewritten
        for start in range(0, len(params), 100):  # MLflow takes at most 100 per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])

    def log_scalars(self, scalars: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_mlflow_key(k), float(v), now, step) for k, v in scalars.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, status: Status = "finished") -> None:
        self.client.set_terminated(self.run_id, status=status.upper())


def open_trackers(config: Config, run: RunDir, *, first_epoch: int = 0) -> list[Tracker]:
    """The trackers the ``log.*`` keys switch on, opened, each given the config.

    Raises:
        ConfigError: a tracker's package is missing (the message names the extra), or the
            tracker refused to start; trackers opened before it are closed again.
    """
    log = config.log
    # Every switched-on package first, so that a missing one stops the run before any
    # tracker has written into the run directory.
    for key, module in (("tensorboard", "tensorboard"), ("wandb", "wandb"), ("mlflow", "mlflow")):
        if getattr(log, key):
            _require(module, f"log.{key}", key)
    openers = []
    if log.tensorboard:
        openers.append(lambda: TensorBoardTracker(run, first_epoch=first_epoch))
    if log.wandb:
        openers.append(lambda: WandbTracker(run, project=log.wandb_project, mode=log.wandb_mode))
    if log.mlflow:
        openers.append(
            lambda: MlflowTracker(
                run,
                uri=log.mlflow_uri,
                experiment=log.mlflow_experiment,
                resume=first_epoch > 0,
            )
        )
    trackers: list[Tracker] = []
    try:
        for opener in openers:
            tracker = opener()
            trackers.append(tracker)
            tracker.log_config(config)
    except BaseException:
        for tracker in trackers:
            tracker.close("failed")
        raise
    return trackers
