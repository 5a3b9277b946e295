"""Where a sweep's runs train: this process, local processes, a Ray cluster, SLURM.

Every launcher runs :func:`~neuralcollapse.sweep.runs.execute_run` on its worker and hands
back its payload, so every launcher writes the same run directories and the sweep reads
the same results. Ray and submitit do the scheduling; nothing here queues beyond holding
back runs while a local launcher's slots are full.

A launcher takes ``(key, config dict, run directory)`` items (:meth:`Launcher.submit`)
and returns ``(key, payload)`` pairs as runs finish (:meth:`Launcher.wait`, at least one
per call). ``capacity`` is how many runs it may hold at once (None: no limit).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from pathlib import Path
from typing import Any, Protocol

from neuralcollapse.errors import UsageError
from neuralcollapse.sweep.runs import execute_run

__all__ = [
    "InlineLauncher",
    "Launcher",
    "ProcessLauncher",
    "RayLauncher",
    "SubmititLauncher",
    "available_cores",
    "make_launcher",
]

logger = logging.getLogger(__name__)

Item = tuple[str, dict[str, Any], str]  # key, config dict, run directory
Payload = dict[str, Any]


class Launcher(Protocol):
    capacity: int | None

    def submit(self, items: Sequence[Item]) -> None: ...

    def wait(self) -> list[tuple[str, Payload]]: ...

    def close(self) -> None: ...


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _thread_limit(values: dict[str, Any], threads: int) -> None:
    wanted = values["train"].get("num_threads", "auto")
    if wanted != "auto" and int(wanted) > threads:
        raise UsageError(
            f"train.num_threads={wanted} with this many parallel runs asks for more threads "
            f"than the cores give each run ({threads}); set train.num_threads=auto (or <= "
            f"{threads}) or lower --jobs"
        )


class InlineLauncher:
    """One run after another, in this process (``--jobs 1``): an interrupt reaches the
    trainer, which keeps its last checkpoint."""

    capacity = 1

    def __init__(self) -> None:
        self._items: list[Item] = []

    def submit(self, items: Sequence[Item]) -> None:
        self._items.extend(items)

    def wait(self) -> list[tuple[str, Payload]]:
        key, values, run_dir = self._items.pop(0)
        return [(key, execute_run(values, run_dir))]

    def close(self) -> None:
        self._items.clear()


def _init_worker(threads: int) -> None:
    # Ctrl-C goes to the whole process group: the parent decides what stops (it ends the
    # workers itself), so a worker ignores SIGINT instead of printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)


class ProcessLauncher:
    """``jobs`` runs at once, each in its own process (spawned: no state inherited from
    this one), each on cores // jobs torch threads, so together they never ask for more
    threads than there are cores. Runs are seeded, so their numbers are those of
    ``--jobs 1`` (with the same thread count per run: ``train.num_threads=auto`` takes 1
    thread for small models whatever the jobs)."""

    def __init__(self, jobs: int, *, cores: int | None = None) -> None:
        import multiprocessing

        if jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {jobs}")
        self.capacity = jobs
        self.threads = max(1, (cores or available_cores()) // jobs)
        self._pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.threads,),
        )
        self._futures: dict[Future, str] = {}

    def submit(self, items: Sequence[Item]) -> None:
        for key, values, run_dir in items:
            _thread_limit(values, self.threads)
            future = self._pool.submit(execute_run, values, run_dir, self.threads)
            self._futures[future] = key

    def wait(self) -> list[tuple[str, Payload]]:
        done, _ = wait_futures(list(self._futures), return_when=FIRST_COMPLETED)
        finished = []
        for future in done:
            key = self._futures.pop(future)
            finished.append((key, future.result()))  # a failed run raises here
        return finished

    def close(self) -> None:
        # Runs still training are stopped now (their last checkpoint stays): waiting
        # for them would make an interrupt take as long as a run.
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)
        self._futures.clear()


def _resources(values: dict[str, Any], cpus: int | None, gpus: float | None) -> tuple[int, float]:
    """A run's CPU and GPU request: the options, else its config's thread count (1 under
    auto) and one GPU when its device is CUDA."""
    threads = values["train"].get("num_threads", "auto")
    cpu = cpus if cpus is not None else (1 if threads == "auto" else int(threads))
    device = str(values["train"].get("device", "auto"))
    gpu = gpus if gpus is not None else (1.0 if device.startswith("cuda") else 0.0)
    return cpu, gpu


class RayLauncher:
    """Each run a Ray task (``--launcher ray``), on the cluster at ``address`` or on a
    local Ray started for the sweep (and stopped after it); Ray schedules them by their
    CPU/GPU requests. The run directories must be on storage every node sees."""

    capacity = None

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_run: int | None = None,
        gpus_per_run: float | None = None,
        local_cpus: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--launcher ray needs Ray: pip install 'neuralcollapse[ray]'"
            ) from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                options["num_cpus"] = local_cpus or available_cores()
            ray.init(address=address, **options)
        self.cpus, self.gpus = cpus_per_run, gpus_per_run
        self._remote = ray.remote(execute_run)
        self._refs: dict[Any, str] = {}

    def submit(self, items: Sequence[Item]) -> None:
        for key, values, run_dir in items:
            cpu, gpu = _resources(values, self.cpus, self.gpus)
            # threads: a Ray worker's torch would otherwise take every core of its node
            task = self._remote.options(num_cpus=cpu, num_gpus=gpu, max_retries=0)
            self._refs[task.remote(values, run_dir, cpu)] = key

    def wait(self) -> list[tuple[str, Payload]]:
        ready, _ = self._ray.wait(list(self._refs), num_returns=1)
        return [(self._refs.pop(ref), self._ray.get(ref)) for ref in ready]

    def close(self) -> None:
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - a task that just finished cannot be cancelled
                logger.debug("could not cancel a Ray task", exc_info=True)
        self._refs.clear()
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


class SubmititLauncher:
    """Each run a submitit job (``--launcher slurm``): on a SLURM cluster, job arrays of
    at most ``array_parallelism`` running at once in ``partition``; on a machine without
    SLURM, submitit's local executor (as ``submitit.AutoExecutor`` chooses), holding at most
    ``local_jobs`` runs at once. Job files and logs go in ``folder``."""

    def __init__(
        self,
        folder: str | Path,
        *,
        partition: str | None = None,
        time_min: int = 24 * 60,
        gpus_per_run: int | None = None,
        cpus_per_run: int | None = None,
        array_parallelism: int = 256,
        local_jobs: int = 1,
        cluster: str | None = None,
        poll_s: float = 1.0,
    ) -> None:
        try:
            import submitit
        except ImportError:
            raise UsageError(
                "--launcher slurm needs submitit: pip install 'neuralcollapse[slurm]'"
            ) from None
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        self.local = self.executor.cluster != "slurm"
        self.capacity = local_jobs if self.local else None
        self.threads = max(1, available_cores() // local_jobs) if self.local else None
        self.gpus, self.cpus = gpus_per_run, cpus_per_run
        self.time_min, self.partition = time_min, partition
        self.array_parallelism, self.poll_s = array_parallelism, poll_s
        self._jobs: dict[Any, str] = {}

    def submit(self, items: Sequence[Item]) -> None:
        if not items:
            return
        # One array per (cpu, gpu) request: submitit shares parameters across a batch.
        groups: dict[tuple[int, float], list[Item]] = {}
        for item in items:
            groups.setdefault(_resources(item[1], self.cpus, self.gpus), []).append(item)
        for (cpu, gpu), group in groups.items():
            self.executor.update_parameters(
                timeout_min=self.time_min,
                cpus_per_task=cpu,
                gpus_per_node=int(math.ceil(gpu)),
                slurm_partition=self.partition,
                slurm_array_parallelism=self.array_parallelism,
                name="neuralcollapse",
            )
            threads = self.threads if self.local else cpu
            jobs = []
            with self.executor.batch():
                for _key, values, run_dir in group:
                    if self.local:
                        _thread_limit(values, threads)
                    jobs.append(self.executor.submit(execute_run, values, run_dir, threads))
            for job, (key, _values, _run_dir) in zip(jobs, group, strict=True):
                self._jobs[job] = key

    def wait(self) -> list[tuple[str, Payload]]:
        while True:
            done = [job for job in self._jobs if job.done()]
            if done:
                return [(self._jobs.pop(job), job.result()) for job in done]
            time.sleep(self.poll_s)

    def close(self) -> None:
        for job in list(self._jobs):
            try:
                job.cancel(check=False)
            except Exception:  # noqa: BLE001 - a job that just ended cannot be cancelled
                logger.debug("could not cancel submitit job %s", job.job_id, exc_info=True)
        self._jobs.clear()


LAUNCHERS = ("local", "ray", "slurm")


def make_launcher(
    name: str = "local",
    *,
    jobs: int = 1,
    out: str | Path | None = None,
    ray_address: str | None = None,
    cpus_per_run: int | None = None,
    gpus_per_run: float | None = None,
    partition: str | None = None,
    time_min: int = 24 * 60,
    array_parallelism: int = 256,
) -> Launcher:
    """The launcher the command-line options describe (``--launcher``, ``--jobs``, ...).

    ``out`` is the sweep's output folder: the submitit job files go in ``out/submitit``.
    """
    if jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {jobs}")
    if name == "local":
        return InlineLauncher() if jobs == 1 else ProcessLauncher(jobs)
    if name == "ray":
        return RayLauncher(
            ray_address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run, local_cpus=None
        )
    if name == "slurm":
        if out is None:
            raise UsageError("--launcher slurm needs an output folder for its job files")
        return SubmititLauncher(
            Path(out) / "submitit",
            partition=partition,
            time_min=time_min,
            gpus_per_run=None if gpus_per_run is None else int(math.ceil(gpus_per_run)),
            cpus_per_run=cpus_per_run,
            array_parallelism=array_parallelism,
            local_jobs=jobs,
        )
    raise UsageError(f"unknown --launcher {name!r}; choose from {', '.join(LAUNCHERS)}")
