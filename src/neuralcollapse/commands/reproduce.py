"""``neuralcollapse reproduce``: the papers' claims, measured with paired seeds, with verdicts."""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from neuralcollapse._internal.files import atomic_write_text
from neuralcollapse._internal.jsonio import write_json
from neuralcollapse.claims import (
    CLAIMS,
    COUNT,
    VERDICTS,
    ClaimRow,
    Context,
    Scale,
    run_claims,
    tree_mixture_overrides,
)
from neuralcollapse.commands.sweep_options import (
    add_launcher_options,
    make_sweep,
    sigterm_interrupts,
)
from neuralcollapse.errors import UsageError, usage_errors


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reproduce",
        help="verdicts on the papers' claims, paired seeds",
        description="Run the claims of [Y22], [Z21] and [L23] on CPU-sized data (digits, "
        "MNIST-5k, hierarchical mixtures, the UFM) with paired seeds, and write "
        "DIR/reproduce.json (one row per claim and setting: paper, claim, setting, "
        "paper_value, measured, verdict, rule), DIR/reproduce.md and DIR/reproduce.html. "
        "Verdicts: reproduced / not reproduced / inconclusive, by the rule in each row "
        "(exact one-sided paired t-tests at alpha 0.05, TOST for 'as well as', "
        "Holm-Bonferroni over the run); count (arithmetic), smoke (under-trained: no "
        "verdict), too few seeds. "
        f"Claims: {', '.join(CLAIMS)}.",
    )
    parser.add_argument("claims", nargs="*", metavar="CLAIM", help="claims to run (default all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 seeds and short training: every claim runs in a few minutes on 2 CPU cores; "
        "the runs are under-trained, so the rows are 'smoke' (statistics, no verdict)",
    )
    parser.add_argument("--seeds", type=int, help="paired seeds (default 5, quick 3)")
    parser.add_argument(
        "--epochs",
        type=int,
        help="cap on every claim's training epochs (a smoke run: below the full scale's "
        "epochs the rows get no verdict)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default runs/reproduce-<time>); runs go in DIR/runs",
    )
    parser.add_argument(
        "--table",
        type=Path,
        metavar="FILE",
        help="train nothing: print the claim table of a reproduce.json (the one README and "
        "benchmarks/RESULTS.md hold), with its commit, date, machine and command",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="with --table: README's summary (one line per claim) instead of one row per setting",
    )
    parser.add_argument(
        "--hierarchy",
        metavar="FILE",
        help="also test the [L23] claim on a mixture built on this class tree (edges CSV, "
        "nested JSON, paths CSV or builtin:cifar100)",
    )
    suite = parser.add_argument_group(
        "paper suites",
        "--suite trains the papers' own grids (their recipes x --seeds, default 5) on their "
        "data, on GPUs: a SLURM or Ray cluster (--launcher). It writes the runs, no verdicts.",
    )
    suite.add_argument(
        "--suite",
        choices=("paper", "y22", "y22-baselines", "z21", "l23"),
        help="a paper's grid (paper: all of them) instead of the CPU claims",
    )
    suite.add_argument(
        "--plan",
        action="store_true",
        help="with --suite: print the grid (recipes, runs, epochs, estimated GPU-hours) and "
        "train nothing",
    )
    suite.add_argument(
        "--data-dir",
        metavar="DIR",
        help="with --suite: the folder holding every data set (replaces the recipes' data/)",
    )
    suite.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="with --suite: data.root of one data set (data.name, e.g. cifar100=/data/c100; "
        "list_file is ImageNet-LT); repeatable",
    )
    suite.add_argument(
        "--epoch-seconds",
        type=float,
        metavar="S",
        help="with --plan: your measured seconds per epoch, for the GPU-hours estimate "
        "(default: this project's stated assumption per data set)",
    )
    add_launcher_options(parser)
    return parser


def format_rows(rows: list[ClaimRow]) -> str:
    lines = []
    for row in rows:
        lines.append(f"[{row.verdict.upper()}] {row.paper}: {row.claim}")
        lines.append(f"    setting:  {row.setting}")
        lines.append(f"    paper:    {row.paper_value}")
        lines.append(f"    measured: {row.measured}")
        if row.test is not None:
            lines.append(f"    test:     {_test_text(row.test)}")
    return "\n".join(lines)


# ----------------------------------------------------------------- statistics as text


def _p_text(p: float | None) -> str:
    if p is None:
        return "—"
    if p < 1e-4:
        return "<1e-4"
    return f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def _diff_text(test: dict[str, Any]) -> str:
    """Mean difference and its 95% interval in display units, e.g. ``+2.64 [+0.23, +5.05]
    points``."""
    scale, unit = test.get("scale", 1.0), test.get("unit", "")
    lo, hi = test["ci95"]
    text = f"{scale * test['mean']:+.2f} [{scale * lo:+.2f}, {scale * hi:+.2f}]"
    return f"{text} {unit}" if unit else text


def _parts(test: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(test["components"].items()) if "components" in test else [("", test)]


def _test_text(test: dict[str, Any]) -> str:
    """One line: n, mean [95% CI], t (df), one-sided p and the Holm-adjusted p."""
    pieces = []
    for name, part in _parts(test):
        margin = part.get("margin")
        within = f", TOST within +-{part.get('scale', 1.0) * margin:g}" if margin else ""
        prefix = f"{name}: " if name else ""
        pieces.append(
            f"{prefix}n={part['n']}, mean {_diff_text(part)} (95% CI), t={part['t']:.2f} "
            f"({part['df']} df{within})"
        )
    direction = "for" if test["p_for"] <= test["p_against"] else "against"
    return (
        "; ".join(pieces)
        + f"; one-sided p {direction} the claim {_p_text(test['p'])}, Holm-adjusted "
        f"{_p_text(test.get('p_adjusted'))}"
    )


def _cells(row: ClaimRow) -> tuple[str, str, str, str, str]:
    """n, difference (95% CI), t (df), p, Holm p of a row ("—" where no test)."""
    test = row.test
    if test is None:
        return ("—",) * 5
    parts = _parts(test)
    named = len(parts) > 1
    n = ", ".join(str(p["n"]) for _, p in parts[:1])
    diff = "; ".join(f"{name + ' ' if named else ''}{_diff_text(p)}" for name, p in parts)
    t = "; ".join(
        f"{name + ' ' if named else ''}{p['t']:.2f}"
        + (f" (TOST ±{p.get('scale', 1.0) * p['margin']:g})" if p.get("margin") else "")
        for name, p in parts
    )
    df = parts[0][1]["df"]
    direction = "for" if test["p_for"] <= test["p_against"] else "against"
    return (
        n,
        diff,
        f"{t} ({df} df)",
        f"{_p_text(test['p'])} {direction}",
        _p_text(test.get("p_adjusted")),
    )


def _markdown(rows: list[ClaimRow], header: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Reproduction of the papers' claims",
        "",
        header,
        "",
        "| verdict | paper | claim | setting | paper value | measured | n | difference (95% CI) "
        "| t | p (one-sided) | Holm p |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.verdict, r.paper, r.claim, r.setting, r.paper_value, r.measured, *_cells(r))
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    lines += ["", "## Rules", ""]
    lines += [f"- **{r.claim_id}** ({r.setting}): {r.rule}" for r in rows]
    return "\n".join(lines) + "\n"


def _html(rows: list[ClaimRow], header: str) -> str:
    from neuralcollapse.report import html as page

    section = page.Section("claims", "Claims")
    section.add(page.paragraph(header))
    section.add(
        page.table(
            (
                "verdict",
                "paper",
                "claim",
                "setting",
                "paper value",
                "measured",
                "n",
                "difference (95% CI)",
                "t",
                "p (one-sided)",
                "Holm p",
                "rule",
            ),
            [
                (
                    r.verdict,
                    r.paper,
                    r.claim,
                    r.setting,
                    r.paper_value,
                    r.measured,
                    *_cells(r),
                    r.rule,
                )
                for r in rows
            ],
        )
    )
    return page.page("neuralcollapse reproduce", header, [section])


# ----------------------------------------------------------------- generated tables

# Short names of the claims for README's summary table (one line per claim).
_TITLES = {
    "y22-etf-dr-vs-learnable": "[Y22] ETF + DR beats learnable CE",
    "y22-faster-convergence": "[Y22] fixed frame converges faster (epochs to 90% of final top-1)",
    "y22-dr-vs-ce": "[Y22] DR beats CE on the fixed ETF",
    "y22-minority-collapse": "[Y22] minority collapse of the learnable classifier",
    "y22-vs-lt-baselines": "[Y22] ETF + DR beats the long-tailed baselines (digits ratio 100)",
    "y22-ufm-dr-vs-ce": "[Y22] DR converges faster than CE in the UFM",
    "z21-ufm-etf-optimum": "[Z21] UFM + CE + weight decay ends at a simplex ETF",
    "z21-d-equals-k": "[Z21] fixed ETF with d = K trains as well as learnable",
    "z21-parameter-saving": "[Z21] d = K makes ResNet-18 smaller",
    "l23-haframe-severity": "[L23] HAFrame lowers mistake severity at comparable top-1",
}
_COLUMNS = ("reproduced", "not reproduced", "inconclusive")


def verdict_counts(rows: list[ClaimRow]) -> dict[str, int]:
    """How many rows got each verdict (every verdict label, zeros included)."""
    return {v: sum(r.verdict == v for r in rows) for v in VERDICTS}


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n or v in _COLUMNS)


def provenance(command: str) -> dict[str, str]:
    """Commit, date, machine and command of a reproduce run (its tables' header)."""
    import os
    import platform
    import subprocess
    from importlib import metadata

    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        commit += " (uncommitted changes)" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = f"neuralcollapse {metadata.version('neuralcollapse')} (not a git checkout)"
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    machine = (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"Python {platform.python_version()}, torch {torch_version}"
    )
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {"commit": commit, "date": now, "machine": machine, "command": command}


def _table_header(payload: dict[str, Any], source: str) -> list[str]:
    p = payload.get("provenance", {})
    rows = [ClaimRow.from_dict(r) for r in payload["rows"]]
    lines = [
        f"<!-- generated by `neuralcollapse reproduce --table {source}`: do not edit by hand -->",
        f"Generated from `{source}`: commit {p.get('commit', 'unknown')}, "
        f"{p.get('date', 'date unknown')}, {p.get('machine', 'machine unknown')}; command "
        f"`{p.get('command', 'unknown')}`.",
    ]
    if p.get("note"):
        lines += ["", p["note"]]
    lines += [
        "",
        f"Verdicts: {_counts_text(verdict_counts(rows))}. Tests: exact paired Student-t, "
        "one-sided at alpha = 0.05 in the claimed direction (TOST within the stated margin "
        "for 'as well as'), t signed so that positive points towards the claim, p-values "
        "Holm-adjusted over the run's tested rows; the rule of each row is in the file.",
    ]
    return lines


def rows_table(payload: dict[str, Any], source: str) -> str:
    """The per-row markdown table of a reproduce.json (benchmarks/RESULTS.md's form)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = _table_header(payload, source) + [
        "",
        "| claim | setting | n | difference (95% CI) | t | p (one-sided) | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in (ClaimRow.from_dict(v) for v in payload["rows"]):
        title = _TITLES.get(r.claim_id, f"{r.paper.split(' ')[0]} {r.claim}")
        if r.claim_id in ("y22-etf-dr-vs-learnable", "y22-vs-lt-baselines"):
            title = f"{r.paper.split(' ')[0]} {r.claim}"
        n, diff, t, p, holm_p = _cells(r)
        if r.test is None:
            diff = r.measured
        cells = (title, r.label or r.setting, n, diff, t, p, holm_p, f"**{r.verdict}**")
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def summary_table(payload: dict[str, Any], source: str) -> str:
    """README's grouped table: one line per claim, its settings under their verdicts."""
    rows = [ClaimRow.from_dict(v) for v in payload["rows"]]
    groups: dict[str, list[ClaimRow]] = {}
    for r in rows:
        groups.setdefault(r.claim_id, []).append(r)

    def entry(r: ClaimRow) -> str:
        if r.test is None or "components" in r.test:
            return r.label
        unit = r.test.get("unit", "")
        value = f"{r.test.get('scale', 1.0) * r.test['mean']:+.2f}"
        return f"{r.label} {value} {unit}" if unit else f"{r.label} {value}"

    lines = _table_header(payload, source) + [
        "",
        "| claim | reproduced | not reproduced | inconclusive | other |",
        "|---|---|---|---|---|",
    ]
    for claim_id, members in groups.items():
        title = _TITLES.get(claim_id, f"{members[0].paper.split(' ')[0]} {members[0].claim}")
        cells = [title]
        for verdict in _COLUMNS:
            picked = [entry(r) for r in members if r.verdict == verdict]
            cells.append("; ".join(picked) or "—")
        other = [
            f"{r.verdict}: {r.measured if r.verdict == COUNT else r.label}"
            for r in members
            if r.verdict not in _COLUMNS
        ]
        cells.append("; ".join(other) or "—")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def read_payload(path: Path) -> dict[str, Any]:
    """A reproduce.json, checked enough to make tables from; UsageError when not one."""
    from neuralcollapse._internal.jsonio import JSONError, loads

    try:
        payload = loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"--table {path}: cannot read it: {exc.strerror or exc}") from exc
    except JSONError as exc:  # also nesting too deep to read: one line, no RecursionError
        raise UsageError(f"--table {path}: not a JSON file ({exc})") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise UsageError(f"--table {path}: not a reproduce.json (no 'rows' list)")
    return payload


def print_table(path: Path, *, summary: bool) -> int:
    payload = read_payload(path)
    print(summary_table(payload, str(path)) if summary else rows_table(payload, str(path)), end="")
    return 0


def _command(args: argparse.Namespace, out: Path) -> str:
    """The command line of this run, as a user would type it again."""
    words = ["neuralcollapse", "reproduce", *args.claims]
    words += ["--quick"] if args.quick else []
    for flag in ("seeds", "epochs", "hierarchy"):
        if getattr(args, flag) is not None:
            words += [f"--{flag}", str(getattr(args, flag))]
    jobs, launcher = getattr(args, "jobs", None), getattr(args, "launcher", None)
    words += ["--jobs", str(jobs)] if jobs not in (None, 1) else []
    words += ["--launcher", str(launcher)] if launcher not in (None, "local") else []
    words += ["--out", str(out)]
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={threads} " if threads else "") + shlex.join(words)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "table", None) is not None:
        return print_table(args.table, summary=args.summary)
    if args.suite is not None:
        return run_suite(args)
    if args.plan:
        raise UsageError("--plan prints a paper grid: give --suite NAME (e.g. --suite paper)")
    for name in ("seeds", "epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} must be >= 1, got {value}")
    unknown = [c for c in args.claims if c not in CLAIMS]
    if unknown:
        raise UsageError(f"unknown claim(s) {unknown}; choose from {', '.join(CLAIMS)}")
    if args.hierarchy is not None:
        # Fail before hours of training, not at the last claim.
        with usage_errors(f"--hierarchy {args.hierarchy}"):
            tree_mixture_overrides(args.hierarchy)
    scale = Scale.make(quick=args.quick, seeds=args.seeds, epochs=args.epochs)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"reproduce-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    mode = (
        "QUICK mode (short training, few seeds: smoke rows, no verdicts)" if scale.quick else "full"
    )
    if args.epochs is not None:
        mode += f", epochs capped at {args.epochs}"
        if scale.capped and not scale.quick:
            mode += " (under-trained: smoke rows, no verdicts)"
    print(
        f"reproducing {len(args.claims) or len(CLAIMS)} claim(s), {mode}, {scale.seeds} "
        f"seeds -> {out}",
        flush=True,
    )
    started = time.perf_counter()
    partial = False
    with sigterm_interrupts(), make_sweep(args, out / "runs", out) as sweep:
        context = Context(
            scale,
            out / "runs",
            sweep=sweep,
            echo=lambda s: print(s, flush=True),
            hierarchy=args.hierarchy,
        )
        try:
            planned = context.prepare(args.claims)
            print(
                f"{planned} training run(s), {sweep.counts['reused']} of them finished before",
                flush=True,
            )
            rows = run_claims(args.claims, context)
        except KeyboardInterrupt:
            partial = True
            rows = context.finished_rows(args.claims)
        runs = {**sweep.counts, "total": sweep.total}
    elapsed = time.perf_counter() - started
    counts = verdict_counts(rows)
    header = (
        f"{mode}; {scale.seeds} paired seeds; {context.runs_trained} training runs; "
        f"{elapsed:.0f} s; {_counts_text(counts)}"
    )
    if partial:
        header = (
            f"PARTIAL (interrupted; {runs['total'] - sum(runs[k] for k in _RUN_STATES)} of "
            f"{runs['total']} runs unfinished, claims without all their runs left out); {header}"
        )
    payload = {
        "provenance": provenance(_command(args, out)),
        "mode": "quick" if scale.quick else "full",
        "seeds": scale.seeds,
        "wall_time_s": elapsed,
        "partial": partial,
        "runs": runs,
        "summary": counts,
        "rows": [r.to_dict() for r in rows],
    }
    write_json(out / "reproduce.json", payload)
    atomic_write_text(out / "reproduce.md", _markdown(rows, header))
    atomic_write_text(out / "reproduce.html", _html(rows, header))
    print(format_rows(rows))
    print(header)
    print(f"runs: {runs['reused']} reused, {runs['resumed']} resumed, {runs['trained']} trained")
    print(f"wrote {out / 'reproduce.json'}, reproduce.md, reproduce.html")
    if partial:
        print("interrupted: the same command continues where this one stopped")
        return 130
    return 0


_RUN_STATES = ("reused", "resumed", "trained")


def _data_roots(items: list[str]) -> dict[str, str]:
    roots = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--data-root {item!r}: give NAME=PATH, e.g. cifar100=/data/c100")
        roots[name] = path
    return roots


def run_suite(args: argparse.Namespace) -> int:
    """``reproduce --suite NAME``: train a paper's grid (or print it with --plan)."""
    from neuralcollapse.sweep.suites import (
        DEFAULT_SEEDS,
        missing_data,
        plan_text,
        suite_specs,
    )

    if args.claims or args.quick or args.hierarchy or args.epochs is not None:
        raise UsageError(
            "--suite trains the papers' recipes as they are: drop the claim names, --quick, "
            "--epochs and --hierarchy"
        )
    if args.epoch_seconds is not None and args.epoch_seconds <= 0:
        raise UsageError(f"--epoch-seconds must be > 0, got {args.epoch_seconds}")
    seeds = args.seeds or DEFAULT_SEEDS
    specs = suite_specs(
        args.suite, seeds=seeds, data_dir=args.data_dir, roots=_data_roots(args.data_root)
    )
    if args.plan:
        print(plan_text(args.suite, specs, seeds=seeds, measured_epoch_s=args.epoch_seconds))
        return 0
    problems = missing_data(specs)
    if problems:
        for problem in problems:
            print(problem.line(), file=sys.stderr)
        raise UsageError(
            f"--suite {args.suite}: {len(problems)} data set(s) missing (above), nothing "
            "trained; point --data-dir DIR or --data-root NAME=PATH at them"
        )
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"suite-{args.suite}-{stamp}"
    print(f"suite {args.suite}: {len(specs)} runs -> {out / 'runs'}", flush=True)
    with sigterm_interrupts(), make_sweep(args, out / "runs", out) as sweep:
        try:
            results = sweep.run(specs)
        except KeyboardInterrupt:
            results = None
        counts = sweep.counts
        index = [
            {
                "recipe": r.spec.label.rsplit(" seed ", 1)[0],
                "seed": r.spec.config.train.seed,
                "run_dir": str(r.run_dir),
                "status": r.status,
                "final": r.summary.get("final"),
            }
            for r in sweep.results.values()
        ]
    payload = {"suite": args.suite, "seeds": seeds, "partial": results is None, "runs": index}
    write_json(out / "suite.json", payload)
    print(
        f"runs: {counts['reused']} reused, {counts['resumed']} resumed, {counts['trained']} "
        f"trained; wrote {out / 'suite.json'}"
    )
    return 130 if results is None else 0
