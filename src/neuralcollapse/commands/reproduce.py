"""``neuralcollapse reproduce``: the papers' claims, measured with paired seeds, with verdicts."""

from __future__ import annotations

import argparse
import datetime
import time
from pathlib import Path
from typing import Any

from neuralcollapse._internal.files import atomic_write_text
from neuralcollapse._internal.jsonio import write_json
from neuralcollapse.claims import (
    CLAIMS,
    ClaimRow,
    Context,
    Scale,
    run_claims,
    tree_mixture_overrides,
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
        "Verdicts: reproduced / not reproduced / inconclusive, by the rule in each row. "
        f"Claims: {', '.join(CLAIMS)}.",
    )
    parser.add_argument("claims", nargs="*", metavar="CLAIM", help="claims to run (default all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 seeds and short training: every claim in a few minutes on 2 CPU cores "
        "(verdicts are then weaker, and the output says so)",
    )
    parser.add_argument("--seeds", type=int, help="paired seeds (default 5, quick 3)")
    parser.add_argument(
        "--epochs", type=int, help="cap on every claim's training epochs (a smoke run)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default runs/reproduce-<time>); runs go in DIR/runs",
    )
    parser.add_argument(
        "--hierarchy",
        metavar="FILE",
        help="also test the [L23] claim on a mixture built on this class tree (edges CSV, "
        "nested JSON, paths CSV or builtin:cifar100)",
    )
    return parser


def _train(config, run_dir: Path) -> dict[str, Any]:
    from neuralcollapse.train.trainer import Trainer

    trainer = Trainer(config, run_dir)
    try:
        return trainer.fit()
    finally:
        trainer.close()


def format_rows(rows: list[ClaimRow]) -> str:
    lines = []
    for row in rows:
        lines.append(f"[{row.verdict.upper()}] {row.paper}: {row.claim}")
        lines.append(f"    setting:  {row.setting}")
        lines.append(f"    paper:    {row.paper_value}")
        lines.append(f"    measured: {row.measured}")
    return "\n".join(lines)


def _markdown(rows: list[ClaimRow], header: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Reproduction of the papers' claims",
        "",
        header,
        "",
        "| verdict | paper | claim | setting | paper value | measured |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = (r.verdict, r.paper, r.claim, r.setting, r.paper_value, r.measured)
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
            ("verdict", "paper", "claim", "setting", "paper value", "measured", "rule"),
            [
                (r.verdict, r.paper, r.claim, r.setting, r.paper_value, r.measured, r.rule)
                for r in rows
            ],
        )
    )
    return page.page("neuralcollapse reproduce", header, [section])


def run(args: argparse.Namespace) -> int:
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
    mode = "QUICK mode (short training, few seeds: weak verdicts)" if scale.quick else "full"
    if args.epochs is not None:
        mode += f", epochs capped at {args.epochs}"
    print(
        f"reproducing {len(args.claims) or len(CLAIMS)} claim(s), {mode}, {scale.seeds} "
        f"seeds -> {out}",
        flush=True,
    )
    started = time.perf_counter()
    context = Context(
        scale,
        out / "runs",
        train=_train,
        echo=lambda s: print(s, flush=True),
        hierarchy=args.hierarchy,
    )
    rows = run_claims(args.claims, context)
    elapsed = time.perf_counter() - started
    counts = {
        v: sum(r.verdict == v for r in rows)
        for v in ("reproduced", "not reproduced", "inconclusive")
    }
    header = (
        f"{mode}; {scale.seeds} paired seeds; {context.runs_trained} training runs; "
        f"{elapsed:.0f} s; " + ", ".join(f"{n} {v}" for v, n in counts.items())
    )
    payload = {
        "mode": "quick" if scale.quick else "full",
        "seeds": scale.seeds,
        "wall_time_s": elapsed,
        "summary": counts,
        "rows": [r.to_dict() for r in rows],
    }
    write_json(out / "reproduce.json", payload)
    atomic_write_text(out / "reproduce.md", _markdown(rows, header))
    atomic_write_text(out / "reproduce.html", _html(rows, header))
    print(format_rows(rows))
    print(header)
    print(f"wrote {out / 'reproduce.json'}, reproduce.md, reproduce.html")
    return 0
