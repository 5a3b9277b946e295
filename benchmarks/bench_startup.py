"""Start-up time of the command line (issue 17, "Start-up").

Claims measured, against ``python -c "import torch"`` timed in the same run:

1. ``neuralcollapse --version`` takes at most 0.3 s and imports no torch.
2. ``neuralcollapse --help`` takes at most 1.2x ``import torch`` (in practice far less:
   it imports no command module, no torch, numpy or yaml).
3. ``neuralcollapse COMMAND --help`` imports only what its help shows (the table lists
   the heavy modules each one loads).

Every command runs in a fresh interpreter. The commands are timed in interleaved rounds
(one of each per round, so that all see the same machine load) and the median wall time
of each is reported. One extra run per command with ``PYTHONPROFILEIMPORTTIME=1`` (what
``python -X importtime`` prints) gives the total self import time and which heavy modules
were imported.

Usage: python benchmarks/bench_startup.py [--rounds 7] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "numpy", "yaml", "matplotlib", "PIL", "neuralcollapse.train.trainer")
HELP_COMMANDS = ("train", "eval", "compare", "metrics", "frame", "ufm", "report", "reproduce")


def cli_prefix() -> list[str]:
    """The installed ``neuralcollapse`` script, else ``python -m neuralcollapse``."""
    script = shutil.which("neuralcollapse")
    return [script] if script else [sys.executable, "-m", "neuralcollapse"]


def cases() -> dict[str, list[str]]:
    cli = cli_prefix()
    table = {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        "neuralcollapse --version": [*cli, "--version"],
        "neuralcollapse --help": [*cli, "--help"],
    }
    for command in HELP_COMMANDS:
        table[f"neuralcollapse {command} --help"] = [*cli, command, "--help"]
    return table


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def import_profile(argv: list[str]) -> dict[str, object]:
    """Total self import time (s) and the heavy modules imported, from one run with
    ``PYTHONPROFILEIMPORTTIME=1`` (the ``-X importtime`` report on stderr)."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, check=True
    )
    total_us = 0
    modules = set()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:") :].split("|")
        total_us += int(self_us)
        modules.add(name.strip())
    return {
        "import_s": total_us / 1e6,
        "heavy": [name for name in HEAVY if name in modules],
        "modules": len(modules),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    table = cases()
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "cli": " ".join(cli_prefix()),
        "rounds": args.rounds,
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    for argv in table.values():  # warm the file cache once, untimed
        wall_time(argv)
    times: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(args.rounds):
        for name, argv in table.items():
            times[name].append(wall_time(argv))
    reference = statistics.median(times['python -c "import torch"'])
    results = []
    print(f"{'command':34} {'median s':>9} {'vs torch':>9} {'imports s':>10}  heavy modules")
    for name, argv in table.items():
        profile = import_profile(argv)
        median = statistics.median(times[name])
        row = {"command": name, "median_s": median, "ratio_vs_import_torch": median / reference}
        row.update(profile)
        results.append(row)
        heavy = ", ".join(profile["heavy"]) or "-"
        print(
            f"{name:34} {median:>9.3f} {median / reference:>8.2f}x "
            f"{profile['import_s']:>10.3f}  {heavy}"
        )
    info["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    print(
        f"load average (1 min) at start {info['loadavg_1min_at_start']}, at end "
        f"{info['loadavg_1min_at_end']}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"info": info, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
