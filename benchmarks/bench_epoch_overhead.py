"""Claim (issue 30): a whole epoch of the default run through the Trainer (training,
evaluation on its schedule, records, TensorBoard, checkpoints) costs at most 1.05x the epoch
of a hand-written plain loop over the same model, data, loss, optimiser, schedule and
batches, with the same evaluation schedule and under the same kernel setting
(``train.deterministic``).

The plain loop evaluates exactly when the Trainer does (``eval_plan``: accuracy of the
validation and test splits every ``eval.every`` epochs, the collapse metrics and the
training split every ``eval.collapse_every`` and at the last epoch) through the same
evaluation function (``evaluate_splits``), and does nothing else: no records, no
checkpoints, no TensorBoard, no console. The ratio is therefore the Trainer's own overhead.

Each round trains the whole run (``train.epochs`` epochs, default the recipe's 30) both
ways, in alternating order, in one process so that machine noise hits both alike; building
data and model is not timed on either side. The per-epoch ratio of a round is the Trainer's
``fit()`` time over the plain loop's time; the median over the rounds is reported with the
spread, the load average before and after, and the CPU-time ratio (the whole process,
background writes included), the steadier of the two on a busy shared machine. Both sides
run on the same number of torch threads (the Trainer's ``train.num_threads``, resolved for
the model; ``--threads`` to force one).

    python benchmarks/bench_epoch_overhead.py [--config digits_lt] [--rounds 7]
        [--epochs N] [--threads N] [--json benchmarks/results/epoch_overhead.json]
        [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from neuralcollapse.train import Trainer, load_config
from neuralcollapse.train.assembly import assemble, deterministic_algorithms
from neuralcollapse.train.build import build_loss, build_optimizer, build_scheduler
from neuralcollapse.train.config import EvalConfig, TrainConfig
from neuralcollapse.train.evaluation import eval_plan, evaluate_splits
from neuralcollapse.train.recipes import resolve_config_path

OLD_SCHEDULE = ["eval.every=1", "eval.collapse_every=1", "eval.train_subsample=null"]


def _has_key(section: type, key: str) -> bool:
    return key in {f.name for f in dataclasses.fields(section)}


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clocks()
    return wall - start[0], cpu - start[1]


def hand_loop_seconds(config, epochs: int) -> tuple[float, float]:
    """(wall, CPU) seconds of ``epochs`` epochs of the minimal loop (build not timed)."""
    device = torch.device("cpu")
    data, loaders, model = assemble(config, device)
    loss_fn = build_loss(config, model, data.hierarchy, data.train_counts)
    optimizer = build_optimizer(config, model)
    scheduler = build_scheduler(config, optimizer, len(loaders.train))
    frame = getattr(model.head, "frame", None)
    # the same kernels as the Trainer: train.deterministic selects them for both sides
    with deterministic_algorithms(config.train.deterministic, device):
        parts = (model, loaders, data, loss_fn, optimizer, scheduler, frame)
        return _hand_epochs(config, parts, epochs, device)


def _hand_epochs(config, parts, epochs: int, device: torch.device):
    model, loaders, data, loss_fn, optimizer, scheduler, frame = parts
    held_out = ("val", "test") if loaders.val is not None else ("test",)
    start = _clocks()
    for epoch in range(epochs):
        model.train()
        loaders.train.set_epoch(epoch)
        loss_fn.set_epoch(epoch)
        for x, y in loaders.train:
            logits, h = model(x, return_features=True)
            loss = loss_fn(logits, h, y, frame)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        plan = eval_plan(config, epoch + 1, last=epoch + 1 == epochs)
        if plan is not None:  # the Trainer's schedule, through the same evaluation code
            splits = ("train", *held_out) if plan.collapse else held_out
            evaluate_splits(
                model,
                loaders,
                data,
                config,
                device,
                splits=splits,
                train_sample=not plan.full,
                collapse=plan.collapse,
            )
    return _since(start)


def trainer_seconds(config, run_dir: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``Trainer.fit()`` (the run directory claimed and data built
    first). CPU time is the whole process's: it includes the background writes."""
    trainer = Trainer(config, run_dir)
    try:
        start = _clocks()
        trainer.fit()
        return _since(start)
    finally:
        trainer.close()


def schedule_of(run_dir: Path) -> str:
    """What the Trainer's records say it measured: epochs with accuracy, with collapse
    metrics, and the training samples of each collapse evaluation."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    accuracy = [r["epoch"] for r in records if "test" in r]
    collapse = [r for r in records if r.get("test", {}).get("collapse")]
    samples = sorted({r.get("measured", {}).get("train_samples") for r in collapse}, key=str)
    return (
        f"{len(records)} epochs; test accuracy at {len(accuracy)} ({accuracy[:3]}...); "
        f"collapse metrics at epochs {[r['epoch'] for r in collapse]} on {samples} training "
        "samples"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="recipe name or file (default digits_lt)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--threads", type=int, default=None, help="default: train.num_threads")
    parser.add_argument("--old-schedule", action="store_true", help="evaluate all every epoch")
    parser.add_argument("--json", help="write the result file (benchmarks/render_results.py)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    overrides = ["train.device=cpu", "log.progress=off", "log.report=false", *args.overrides]
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    if args.old_schedule:
        overrides += [o for o in OLD_SCHEDULE if _has_key(EvalConfig, o[5:].split("=")[0])]
    path = resolve_config_path(args.config)
    config = load_config(path, overrides)
    threads = args.threads
    if threads is None and _has_key(TrainConfig, "num_threads"):
        from neuralcollapse.train.assembly import input_shape as _input_shape
        from neuralcollapse.train.build import run_threads

        data, _, model = assemble(config, torch.device("cpu"))
        shape = _input_shape(data, config.data.crop_size)
        threads = run_threads(config, model, shape, torch.device("cpu"))
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    if _has_key(TrainConfig, "num_threads"):
        config = load_config(path, [*overrides, f"train.num_threads={threads}"])
    epochs = config.train.epochs

    load_before = os.getloadavg()
    ratios, cpu_ratios, hand_times, trainer_times = [], [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        last_run = None
        for round_ in range(args.rounds + 1):  # round 0 warms up (imports, allocator)
            run_dir = Path(scratch) / f"run{round_}"
            if round_ % 2 == 0:
                hand = hand_loop_seconds(config, epochs)
                trained = trainer_seconds(config, run_dir)
            else:
                trained = trainer_seconds(config, run_dir)
                hand = hand_loop_seconds(config, epochs)
            last_run = run_dir
            if round_ == 0:
                continue
            hand_times.append(hand[0] / epochs)
            trainer_times.append(trained[0] / epochs)
            ratios.append(trained[0] / hand[0])
            cpu_ratios.append(trained[1] / hand[1])
        schedule = schedule_of(last_run)
    load_after = os.getloadavg()

    print(
        f"# {datetime.date.today()} torch {torch.__version__} threads {threads} cpus "
        f"{os.cpu_count()} {platform.machine()} python {platform.python_version()}"
    )
    print(f"config {path.name} {' '.join(overrides)}")
    print(f"trainer schedule: {schedule}")
    print(
        f"loadavg before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
        f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
    )
    print(f"{args.rounds} alternating rounds of {epochs} epochs each")
    print(f"hand loop  per epoch (median) {1000 * statistics.median(hand_times):8.1f} ms")
    print(f"Trainer    per epoch (median) {1000 * statistics.median(trainer_times):8.1f} ms")
    fastest = min(trainer_times) / min(hand_times)
    print(f"ratio of the fastest rounds (least disturbed by other jobs): {fastest:.3f}x")
    for label, values in (("wall-clock", ratios), ("CPU-time", cpu_ratios)):
        print(
            f"{label} ratio Trainer / hand loop: median {statistics.median(values):.3f}x "
            f"(min {min(values):.3f}, max {max(values):.3f}; per round "
            f"{', '.join(f'{r:.3f}' for r in values)})"
        )
    if args.json:
        write_result(
            args, path, overrides, threads, epochs, ratios, cpu_ratios, load_before, load_after
        )


def write_result(args, path, overrides, threads, epochs, ratios, cpu_ratios, before, after):
    """The result file that benchmarks/render_results.py turns into RESULTS.md's table."""
    import subprocess

    def git(*words: str) -> str:
        return subprocess.run(["git", *words], capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    command = "python benchmarks/bench_epoch_overhead.py " + " ".join(
        [f"--rounds {args.rounds}", *([f"--config {args.config}"] if args.config else [])]
    )
    info = {
        "command": command,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": git("rev-parse", "--short", "HEAD") + ("+uncommitted" if dirty else ""),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "torch": torch.__version__,
        "loadavg_1min_at_start": round(before[0], 2),
        "loadavg_1min_at_end": round(after[0], 2),
        "config": f"{path.name} {' '.join(overrides)}",
    }
    results = {
        "rounds": args.rounds,
        "epochs": epochs,
        "threads": threads,
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "median_cpu_ratio": statistics.median(cpu_ratios),
        "ratios": ratios,
        "cpu_ratios": cpu_ratios,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"info": info, "results": results}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
