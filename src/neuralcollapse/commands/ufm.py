"""``neuralcollapse ufm``: run the unconstrained feature model, or one of its reproductions.

::

    neuralcollapse ufm etf-optimum --out runs/ufm            # a reproduction
    neuralcollapse ufm minority-collapse steps_learnable=5000 # its parameters as KEY=VALUE
    neuralcollapse ufm simulate --config my.yaml loss=dr classifier=etf

Each writes ``DIR/<name>.json`` and ``DIR/<name>.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

NAMES = ("etf-optimum", "minority-collapse", "dr-vs-ce", "haframe", "simulate")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
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
        "--hierarchy", type=Path, help="haframe (and simulate): class tree, child,parent CSV"
    )
    _accept_trailing_overrides(parser)
    return parser


def _accept_trailing_overrides(parser: argparse.ArgumentParser) -> None:
    """Let KEY=VALUE overrides follow options (``ufm simulate --out D lr=0.1``).

    argparse fills the ``overrides`` positional from the words before the first option
    only and rejects later ones as unrecognised; this collects those later KEY=VALUE
    words into ``overrides`` instead, leaving anything else unrecognised.
    """
    parse_known_args = parser.parse_known_args

    def parse_with_trailing(args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = parse_known_args(args, namespace)
        trailing = [a for a in extras if "=" in a and not a.startswith("-")]
        namespace.overrides = [*(namespace.overrides or []), *trailing]
        return namespace, [a for a in extras if a not in trailing]

    parser.parse_known_args = parse_with_trailing  # type: ignore[method-assign]


def _parse_overrides(overrides: list[str]) -> dict[str, Any]:
    values = {}
    for text in overrides:
        if "=" not in text:
            raise ValueError(f"override {text!r} must look like key=value")
        key, raw = text.split("=", 1)
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ValueError(f"override {text!r}: cannot parse the value ({exc})") from None
    return values


def _reproduction_kwargs(function: Any, overrides: list[str]) -> dict[str, Any]:
    known = list(inspect.signature(function).parameters)
    values = _parse_overrides(overrides)
    for key in values:
        if key not in known or key == "hierarchy":
            allowed = ", ".join(k for k in known if k != "hierarchy")
            raise ValueError(f"unknown parameter {key!r}; known: {allowed}")
    return values


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_json(payload: dict[str, Any], path: Path) -> None:
    """Atomic write: never a half-written file under the final name."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(_json_safe(payload), out, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
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
            raise ValueError("--hierarchy applies to 'haframe' and 'simulate' only")
        if not args.hierarchy.is_file():
            raise FileNotFoundError(f"hierarchy file {str(args.hierarchy)!r} does not exist")
        kwargs["hierarchy"] = str(args.hierarchy)
    try:
        rep = function(**kwargs)
    except TypeError as exc:  # a value of the wrong type for a parameter
        raise ValueError(f"{args.name}: {exc}") from None
    _write_json(rep.to_dict(), out / f"{args.name}.json")
    plot_reproduction(rep, out / f"{args.name}.png")
    print(format_table(rep.table))
    print(f"expected: {rep.expected}")
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
    _write_json(payload, out / "simulate.json")
    plot_simulation(result, out / "simulate.png")
    keys = ("step", "loss", "accuracy", "nc1", "nc2_etf_distance_means", "nc3_self_duality")
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
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    if args.config is not None and args.name != "simulate":
        raise ValueError("--config applies to 'simulate' only")
    out.mkdir(parents=True, exist_ok=True)
    if args.name == "simulate":
        return _run_simulate(args, out)
    return _run_reproduction(args, out)
