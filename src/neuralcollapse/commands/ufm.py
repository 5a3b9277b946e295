"""``neuralcollapse ufm``: run the unconstrained feature model, or one of its reproductions.

::

    neuralcollapse ufm etf-optimum --out runs/ufm            # a reproduction
    neuralcollapse ufm minority-collapse steps_learnable=5000 # its parameters as KEY=VALUE
    neuralcollapse ufm simulate --config my.yaml loss=dr head_kind=etf

Each writes ``DIR/<name>.json`` and ``DIR/<name>.png`` and prints a table. KEY=VALUE
overrides may come before or after the options (the command line gathers them).
"""

from __future__ import annotations

import argparse
import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from neuralcollapse._internal.jsonio import write_json
from neuralcollapse._internal.names import NC1, NC2_ETF_DISTANCE_MEANS, NC3_SELF_DUALITY
from neuralcollapse._internal.text import format_sci
from neuralcollapse.config import coerce, parse_override
from neuralcollapse.errors import UsageError

NAMES = ("etf-optimum", "minority-collapse", "dr-vs-ce", "haframe", "simulate")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Declare ``ufm`` and its arguments."""
    parser = subparsers.add_parser(
        "ufm",
        help="unconstrained feature model: simulate, or reproduce the theory",
        description=(
            "Reproduce a prediction of the unconstrained feature model (etf-optimum, "
            "minority-collapse, dr-vs-ce, haframe), or run one simulation from a config "
            "(simulate). KEY=VALUE overrides set a reproduction's parameters or a UFMConfig "
            "key; values are parsed as YAML."
        ),
    )
    parser.add_argument("name", choices=NAMES, help="reproduction to run, or 'simulate'")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="parameter overrides")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/ufm"), help="output folder (default runs/ufm)"
    )
    parser.add_argument("--config", type=Path, help="simulate: YAML file of UFMConfig keys")
    parser.add_argument(
        "--hierarchy",
        type=Path,
        help="haframe (and simulate): class tree file (child,parent CSV, nested JSON or "
        "leaf,level1,... CSV)",
    )
    return parser


def _reproduction_kwargs(function: Callable[..., Any], overrides: list[str]) -> dict[str, Any]:
    """The reproduction's keyword arguments from ``key=value`` overrides, each value checked
    against the parameter's annotation."""
    hints = typing.get_type_hints(function)
    known = [k for k in inspect.signature(function).parameters if k != "hierarchy"]
    values: dict[str, Any] = {}
    for text in overrides:
        parts, value = parse_override(text)
        key = ".".join(parts)
        if key not in known:
            raise UsageError(f"unknown parameter {key!r}; known: {', '.join(known)}")
        values[key] = coerce(value, hints[key], key) if key in hints else value
    return values


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return format_sci(value, digits=4)
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of dicts as an aligned text table (columns from the first row)."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    cells = [[_format(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _run_reproduction(args: argparse.Namespace, out: Path) -> int:
    from neuralcollapse.ufm import REPRODUCTIONS
    from neuralcollapse.ufm.plots import plot_reproduction

    function = REPRODUCTIONS[args.name]
    kwargs = _reproduction_kwargs(function, args.overrides)
    if args.hierarchy is not None:
        if args.name != "haframe":
            raise UsageError("--hierarchy applies to 'haframe' and 'simulate' only")
        if not args.hierarchy.is_file():
            raise FileNotFoundError(f"hierarchy file {str(args.hierarchy)!r} does not exist")
        kwargs["hierarchy"] = str(args.hierarchy)
    rep = function(**kwargs)
    write_json(out / f"{args.name}.json", rep.to_dict())
    plot_reproduction(rep, out / f"{args.name}.png")
    print(format_table(rep.table))
    print(f"expected: {rep.expected}")
    if rep.scope:
        print(f"scope: {rep.scope}")
    verdicts = rep.measured.get("verdicts")
    if isinstance(verdicts, dict):
        print("verdicts: " + ", ".join(f"{key}={value}" for key, value in verdicts.items()))
    print(f"agrees: {rep.agrees}  ({rep.wall_time_s:.1f} s)")
    print(f"wrote {out / (args.name + '.json')} and {out / (args.name + '.png')}")
    return 0


def _run_simulate(args: argparse.Namespace, out: Path) -> int:
    from neuralcollapse.ufm import load_ufm_config, simulate
    from neuralcollapse.ufm.plots import plot_simulation

    overrides = list(args.overrides)
    if args.hierarchy is not None:
        overrides.append(f"hierarchy={json.dumps(str(args.hierarchy))}")
    config = load_ufm_config(args.config, overrides)
    result = simulate(config)
    payload = {
        "config": config.to_dict(),
        "final": None if result.final is None else result.final.to_dict(),
        "history": result.history,
        "wall_time_s": result.wall_time_s,
        "log_time_s": result.log_time_s,
        "diverged": result.diverged,
    }
    write_json(out / "simulate.json", payload)
    plot_simulation(result, out / "simulate.png")
    keys = ("step", "loss", "accuracy", NC1, NC2_ETF_DISTANCE_MEANS, NC3_SELF_DUALITY)
    every = max(len(result.history) // 10, 1)
    shown = result.history[::every] + (
        [] if (len(result.history) - 1) % every == 0 else [result.history[-1]]
    )
    print(format_table([{k: entry.get(k) for k in keys} for entry in shown]))
    print(f"{result.wall_time_s:.2f} s ({result.log_time_s:.2f} s logging)")
    if result.diverged:
        print("the objective diverged (NaN or inf): lower lr")
    print(f"wrote {out / 'simulate.json'} and {out / 'simulate.png'}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the reproduction or simulation ``args.name``; returns the exit code."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a folder")
    if args.config is not None and args.name != "simulate":
        raise UsageError("--config applies to 'simulate' only")
    out.mkdir(parents=True, exist_ok=True)
    if args.name == "simulate":
        return _run_simulate(args, out)
    return _run_reproduction(args, out)
