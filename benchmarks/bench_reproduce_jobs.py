"""Wall time of ``neuralcollapse reproduce`` with ``--jobs 1`` and ``--jobs 2`` (issue 26).

Claim measured: on a 2-core machine the full CPU suite with ``--jobs 2`` takes at most 0.6x
the wall time of ``--jobs 1``, with the same numbers.

Both runs happen in one sitting on the same machine, each in a fresh output folder (so
neither reuses the other's runs), one after the other (never at once: they would share the
cores). After both, the measured values of every row of the two reproduce.json files are
compared: the runs are seeded, so they must agree exactly.

The full suite takes about an hour per run on 2 cores (benchmarks/RESULTS.md); ``--quick``
(passed on to reproduce) measures the short suite instead, in minutes.

Usage: python benchmarks/bench_reproduce_jobs.py [--quick] [--out DIR] [--json OUT]
Writes OUT (default DIR/bench_reproduce_jobs.json) and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path


def cli_prefix() -> list[str]:
    """The installed ``neuralcollapse`` script, else ``python -m neuralcollapse``."""
    script = shutil.which("neuralcollapse")
    return [script] if script else [sys.executable, "-m", "neuralcollapse"]


def run_suite(out: Path, jobs: int, quick: bool) -> dict:
    command = [*cli_prefix(), "reproduce", "--out", str(out), "--jobs", str(jobs)]
    command += ["--quick"] if quick else []
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    # the 1-minute load average after each run: other jobs on the machine slow both sides
    return {
        "jobs": jobs,
        "command": " ".join(command),
        "wall_s": wall,
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }


def measured(out: Path) -> list[tuple[str, str, str]]:
    rows = json.loads((out / "reproduce.json").read_text())["rows"]
    return [(r["claim_id"], r["setting"], r["measured"]) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick suite (minutes)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_reproduce_jobs"))
    parser.add_argument("--json", type=Path, help="result file (default OUT/...json)")
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = args.out / stamp
    results = []
    for jobs in (1, 2):
        results.append(run_suite(base / f"jobs{jobs}", jobs, args.quick))
        print(f"--jobs {jobs}: {results[-1]['wall_s']:.0f} s", flush=True)
    same = measured(base / "jobs1") == measured(base / "jobs2")
    ratio = results[1]["wall_s"] / results[0]["wall_s"]
    payload = {
        "suite": "quick" if args.quick else "full",
        "date_utc": stamp,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "runs": results,
        "ratio_jobs2_over_jobs1": ratio,
        "target": "at most 0.6 on 2 cores",
        "identical_measurements": same,
    }
    target = args.json or base / "bench_reproduce_jobs.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"{'jobs':>5}{'wall (s)':>12}")
    for r in results:
        print(f"{r['jobs']:>5}{r['wall_s']:>12.0f}")
    print(f"jobs 2 / jobs 1 = {ratio:.2f} (target <= 0.6); identical measurements: {same}")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
