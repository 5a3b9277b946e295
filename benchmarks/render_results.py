"""Write the generated tables of benchmarks/RESULTS.md from the result files in
benchmarks/results/ (never by hand: a number in a generated table is one a benchmark
wrote, with its command, commit, machine, date and load).

A generated table sits between ``<!-- BEGIN generated: NAME -->`` and
``<!-- END generated: NAME -->``; NAME is a result file's stem with a renderer below.

    python benchmarks/render_results.py            # rewrite RESULTS.md
    python benchmarks/render_results.py --check    # exit 1 when RESULTS.md is stale
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_DIR = HERE / "results"


def _header(info: dict) -> list[str]:
    load = f"load average {info.get('loadavg_1min_at_start')} -> {info.get('loadavg_1min_at_end')}"
    lines = [
        f"`{info['command']}` — {info['date_utc']} UTC, commit {info['commit']}, "
        f"{info['machine']}, torch {info['torch']}, {info['rounds']} interleaved rounds, {load}.",
        "",
    ]
    if info.get("rhubarbwu_skipped"):
        lines += [f"rhubarbwu not measured: {info['rhubarbwu_skipped']}.", ""]
    return lines


def render_collapse_report(data: dict) -> list[str]:
    """Issue 30's metrics claim: collapse_report vs its floor and rhubarbwu."""
    lines = _header(data["info"])
    lines += [
        "| threads | N | d | K | floor s | ours s | ours / floor | ours / floor+W | "
        "rhubarbwu s | rhubarbwu / floor |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    exponents = []
    for threads, entry in data["results"].items():
        for case in entry["claim"]:
            m = case["methods"]
            peer = m.get("rhubarbwu")
            with_w = m["ours"]["median_s"] / m["floor+W"]["median_s"]
            lines.append(
                f"| {threads} | {case['N']:,} | {case['d']} | {case['K']} | "
                f"{m['floor']['best_s']:.3f} | {m['ours']['best_s']:.3f} | "
                f"{m['ours']['median_ratio_vs_floor']:.2f}x | {with_w:.2f}x | "
                + (
                    f"{peer['best_s']:.3f} | {peer['median_ratio_vs_floor']:.2f}x |"
                    if peer
                    else "— | — |"
                )
            )
        if "exponents" in entry:
            for axis, values in entry["exponents"].items():
                exponents.append(
                    f"| {threads} | {axis} | {values['ours']:.2f} | {values['floor']:.2f} |"
                )
    lines += [
        "",
        "Ratios are medians over rounds of time / the same round's floor. floor = one float32 "
        "`X.T @ X` + `X @ M.T` (N x d x (d + K)); floor+W adds `X @ W.T` (the classifier's "
        "logits NC4 compares).",
    ]
    if exponents:
        lines += [
            "",
            "Fitted exponents of the best time (log-log slope over three sizes, the others "
            "fixed at N=20,000, d=512, K=100):",
            "",
            "| threads | in | ours | floor |",
            "|---|---|---|---|",
            *exponents,
        ]
    return lines


def render_reproduce_plan(data: dict) -> list[str]:
    """Issue 26: the papers' grid as ``reproduce --suite paper --plan`` prints it."""
    info = data["info"]
    return [
        f"`{info['command']}` — {info['date_utc']} UTC, commit {info['commit']}. Nothing "
        "trains; the GPU-hours are the command's stated estimate, not a measurement.",
        "",
        "```",
        *data["output"].rstrip("\n").splitlines(),
        "```",
    ]


def render_epoch_overhead(data: dict) -> list[str]:
    """Issue 30: the default job's epoch, Trainer vs a hand loop, interleaved rounds."""
    info, r = data["info"], data["results"]
    return [
        f"`{info['command']}` — {info['date_utc']} UTC, commit {info['commit']}, "
        f"{info['machine']}, torch {info['torch']}, load average "
        f"{info.get('loadavg_1min_at_start')} -> {info.get('loadavg_1min_at_end')}.",
        "",
        "| rounds | epochs per round | threads | Trainer / hand loop, wall (median) | range | "
        "CPU-time ratio (median) |",
        "|---|---|---|---|---|---|",
        f"| {r['rounds']} | {r['epochs']} | {r['threads']} | {r['median_ratio']:.3f}x | "
        f"{r['min_ratio']:.2f}-{r['max_ratio']:.2f} | {r['median_cpu_ratio']:.3f}x |",
    ]


def render_reproduce_jobs(data: dict) -> list[str]:
    """Issue 26: ``reproduce`` wall time with --jobs 1 and --jobs 2, one after the other."""
    info, r = data["info"], data["results"]
    lines = [
        f"`{info['command']}` — {info['date_utc']} UTC, commit {info['commit']}, "
        f"{info['machine']}; the {r['suite']} suite.",
        "",
        "| --jobs | wall s | load average (1 min) after |",
        "|---|---|---|",
    ]
    for run in r["runs"]:
        load = run.get("loadavg_1min_after", "—")
        lines.append(f"| {run['jobs']} | {run['wall_s']:.0f} | {load} |")
    same = "identical" if r["identical_measurements"] else "NOT identical"
    lines += [
        "",
        f"--jobs 2 / --jobs 1 = {r['ratio_jobs2_over_jobs1']:.2f} (target {r['target']}); "
        f"the measured values of every row: {same}.",
    ]
    return lines


RENDERERS: dict[str, Callable[[dict], list[str]]] = {
    "reproduce_jobs_quick": render_reproduce_jobs,
    "reproduce_jobs_full": render_reproduce_jobs,
    "collapse_report": render_collapse_report,
    "reproduce_plan": render_reproduce_plan,
    "epoch_overhead": render_epoch_overhead,
}


def render(text: str) -> str:
    """``text`` with every generated section rewritten from its result file."""
    for name, renderer in RENDERERS.items():
        path = RESULTS_DIR / f"{name}.json"
        pattern = re.compile(
            rf"(<!-- BEGIN generated: {name} -->\n).*?(<!-- END generated: {name} -->)", re.S
        )
        if not path.is_file() or not pattern.search(text):
            continue
        body = "\n".join(renderer(json.loads(path.read_text()))) + "\n"
        text = pattern.sub(lambda match, body=body: match.group(1) + body + match.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md is stale")
    args = parser.parse_args()
    current = RESULTS_MD.read_text()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print("benchmarks/RESULTS.md is stale: run python benchmarks/render_results.py")
            return 1
        return 0
    RESULTS_MD.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
