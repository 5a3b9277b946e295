"""Time to render the end-of-run HTML report's figures: each figure, all of them, the page.

``neuralcollapse train`` writes ``report.html`` when a run ends; on the default run (the
digits recipe) that is five figures: loss, accuracy, collapse, per-class accuracy and class
similarity. For each figure this times building it (the plot function) and saving it (the
report's own :func:`neuralcollapse.report.writer.render_figure`: PNG at the report's DPI),
then the whole ``write_report`` call (reading the run, figures, HTML and files). Rounds are
interleaved and the median is reported; the load average before and after says how busy
the machine was. Beside the wall-clock time each row gives the CPU time of this process
(``time.process_time``): the rendering is single-threaded, so on a busy shared machine the
CPU time is the better estimate of the wall time on an idle one. Last, the report as the
end of ``neuralcollapse train`` pays it: a fresh interpreter that has imported the trainer
(torch, numpy) writes the page, paying matplotlib's import and first-figure set-up once.

``--against REV`` loads ``src/neuralcollapse/report/plots.py`` as it was at git revision
REV (read with ``git show``; nothing is checked out) and times its figures side by side
with the current ones, each saved the way that version's report saved them (PNG, 100 dpi,
PIL's default compression), in interleaved rounds of the same process::

    .venv/bin/python benchmarks/bench_report.py                     # trains the default run first
    .venv/bin/python benchmarks/bench_report.py --run-dir runs/digits_lt-20260101-120000
    .venv/bin/python benchmarks/bench_report.py --run-dir RUN --against f4ada83 --rounds 5

Without ``--run-dir`` the default recipe (30 epochs, a minute or two on 2 cores) is trained
into a temporary directory with the report, TensorBoard and the progress bar off.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuralcollapse.report import plots
from neuralcollapse.report.runs import RunData, read_run
from neuralcollapse.report.writer import render_figure, write_report

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0  # issue 17: the report's figures in <= 1 s on the default run


def train_default_run(folder: Path, epochs: int | None) -> Path:
    """The default recipe trained into ``folder/run`` (no report, no TensorBoard)."""
    from neuralcollapse.train import Trainer, load_config

    overrides = ["log.report=false", "log.tensorboard=false", "log.progress=off"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    run_dir = folder / "run"
    trainer = Trainer(load_config(None, overrides), run_dir)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return run_dir


def plots_at(revision: str) -> types.ModuleType:
    """``report/plots.py`` of git revision ``revision`` as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/neuralcollapse/report/plots.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"plots_at_{revision}")
    module.__file__ = f"{revision}:src/neuralcollapse/report/plots.py"
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102
    return module


def save_as_before(fig: Any) -> bytes:
    """How the report saved a figure before :func:`render_figure` (PNG, 100 dpi)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def figure_makers(module: types.ModuleType, run: RunData, current: bool) -> dict[str, Callable]:
    """The default run's five report figures, made by ``module``'s plot functions with
    what the report passes them (the current module also gets the class names)."""
    runs = {run.label: run.records}
    last = run.records[-1]
    points = {run.label: (last["train"]["collapse"]["class_counts"], last["test"]["per_class"])}
    many, few = (float(run.config["eval"][key]) for key in ("many", "few"))
    extra = {}
    if current:
        extra = {"class_names": {run.label: run.class_names or []}}
    return {
        "loss": lambda: module.plot_loss(runs),
        "accuracy": lambda: module.plot_accuracy(runs),
        "collapse": lambda: module.plot_collapse(runs),
        "per_class_accuracy": lambda: module.plot_per_class_accuracy(
            points, thresholds=(many, few), **extra
        ),
        "similarity": lambda: module.plot_similarity(
            run.class_means, run.frame, frame_name=run.frame_kind, subtitle="epoch"
        ),
    }


Sample = tuple[float, float, float, int]  # build s, save s, CPU s (both), bytes


def time_figures(
    variants: dict[str, tuple[dict[str, Callable], Callable[[Any], bytes]]], rounds: int
) -> dict[str, dict[str, list[Sample]]]:
    """A :data:`Sample` of every figure of every variant in each of ``rounds``
    interleaved rounds."""
    times: dict[str, dict[str, list[Sample]]] = {
        v: {name: [] for name in makers} for v, (makers, _) in variants.items()
    }
    for _ in range(rounds):
        for variant, (makers, save) in variants.items():
            for name, make in makers.items():
                cpu, start = time.process_time(), time.perf_counter()
                fig = make()
                built = time.perf_counter()
                size = len(save(fig))
                done, cpu = time.perf_counter(), time.process_time() - cpu
                times[variant][name].append((built - start, done - built, cpu, size))
    return times


def cold_report(run_dir: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the first report of a fresh interpreter that has imported
    the trainer, as at the end of ``neuralcollapse train``: matplotlib's import included."""
    code = textwrap.dedent(
        f"""
        import time
        import neuralcollapse.train
        cpu, start = time.process_time(), time.perf_counter()
        from neuralcollapse.report import write_report
        write_report([{str(run_dir)!r}], {str(out)!r})
        print(time.perf_counter() - start, time.process_time() - cpu)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall, cpu = done.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, help="a finished run (default: train one)")
    parser.add_argument("--epochs", type=int, help="epochs of the trained default run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--against", metavar="REV", help="also time plots.py of git REV")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_dir = args.run_dir or train_default_run(folder, args.epochs)
        run = read_run(run_dir)
        import matplotlib

        print(f"# report figures, {datetime.datetime.now():%Y-%m-%d %H:%M}")
        print(
            f"run {run_dir} ({len(run.records)} epochs); python {platform.python_version()}, "
            f"matplotlib {matplotlib.__version__}, {os.cpu_count()} CPUs; {args.rounds} rounds"
        )
        before = os.getloadavg()
        variants = {"current": (figure_makers(plots, run, True), lambda f: render_figure(f, "png"))}
        if args.against:
            old = plots_at(args.against)
            variants[args.against] = (figure_makers(old, run, False), save_as_before)
        # One untimed pass: fonts, caches and lazy imports are paid once per process.
        time_figures(variants, 1)
        times = time_figures(variants, args.rounds)
        pages, page_cpu = [], []
        for _ in range(args.rounds):
            cpu, start = time.process_time(), time.perf_counter()
            write_report([run_dir], folder / "page" / "report.html")
            pages.append(time.perf_counter() - start)
            page_cpu.append(time.process_time() - cpu)
        cold, cold_cpu = cold_report(run_dir, folder / "cold" / "report.html")
        after = os.getloadavg()

    def median(variant: str, name: str, index: int) -> float:
        return statistics.median(sample[index] for sample in times[variant][name])

    print()
    columns = [f"{v}: wall ms (build + save) | {v}: CPU ms" for v in variants]
    print("| figure | " + " | ".join(columns) + (" | ratio (CPU) |" if args.against else " |"))
    print("|---" * (2 * len(variants) + 1 + bool(args.against)) + "|")
    wall = dict.fromkeys(variants, 0.0)
    cpu = dict.fromkeys(variants, 0.0)
    for name in times["current"]:
        cells = []
        for variant in variants:
            build, save = median(variant, name, 0), median(variant, name, 1)
            wall[variant] += build + save
            cpu[variant] += median(variant, name, 2)
            cells.append(f"{1e3 * (build + save):.0f} ({1e3 * build:.0f} + {1e3 * save:.0f})")
            cells.append(f"{1e3 * median(variant, name, 2):.0f}")
        if args.against:
            cells.append(f"{median(args.against, name, 2) / median('current', name, 2):.2f}x")
        print(f"| {name} | " + " | ".join(cells) + " |")
    totals = [f"**{1e3 * wall[v]:.0f}** | **{1e3 * cpu[v]:.0f}**" for v in variants]
    ratio = f" | {cpu[args.against] / cpu['current']:.2f}x" if args.against else ""
    print("| all five | " + " | ".join(totals) + ratio + " |")
    print()
    verdict = "meets" if cpu["current"] <= TARGET_S else "misses"
    print(
        f"figures, current: {wall['current']:.2f} s wall, {cpu['current']:.2f} s CPU (medians "
        f"per figure, summed); the CPU time {verdict} the {TARGET_S:g} s target"
    )
    print(
        f"write_report, whole page (warm process): median {statistics.median(pages):.2f} s "
        f"wall, {statistics.median(page_cpu):.2f} s CPU"
    )
    print(
        f"write_report at the end of training (fresh process, trainer imported, matplotlib "
        f"not yet): {cold:.2f} s wall, {cold_cpu:.2f} s CPU"
    )
    print(f"load average (1, 5, 15 min) before: {before}, after: {after}")


if __name__ == "__main__":
    main()
