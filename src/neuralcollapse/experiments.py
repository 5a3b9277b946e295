"""Side-by-side experiments: variants of a config trained over the same seeds, compared pairwise.

A *variant* is a config (a packaged recipe name or a YAML path) with its own overrides,
written as one string: ``"digits_lt head.kind=learnable head.neck=none loss.name=ce"``.
Common overrides (``--set``) apply to every variant first; a variant's own overrides win.
Every variant is trained with the seeds 0..N-1 (``train.seed``), so seed s of one variant
and seed s of another share their data subset and order: the per-seed differences are
*paired*, and their mean +- std and win count say more than two overlapping error bars.

Two variants that resolve to the same config are refused: a comparison must compare what
it says.

The runs go through :mod:`neuralcollapse.sweep`: each is identified by its config and
seed, so a comparison started again reuses what finished, resumes what was interrupted,
and can run its runs in parallel or on a cluster (a ``Sweep`` with another launcher).
"""

from __future__ import annotations

import math
import shlex
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuralcollapse.errors import UsageError
from neuralcollapse.train.config import Config, config_from_dict, config_to_dict, load_config
from neuralcollapse.train.recipes import resolve_config_path

if TYPE_CHECKING:
    from neuralcollapse.sweep import RunResult, RunSpec, Sweep

__all__ = [
    "COLUMNS",
    "Column",
    "Interrupted",
    "Variant",
    "VariantResult",
    "aggregate",
    "paired_statistics",
    "parse_variant",
    "resolve_variants",
    "run_variants",
    "variant_specs",
]


@dataclass(frozen=True)
class Column:
    """One compared quantity: where it is in ``summary.json`` and which way is better."""

    label: str
    path: tuple[str, ...]
    higher_is_better: bool
    percent: bool = False


COLUMNS = (
    Column("top1", ("final", "top1"), True, percent=True),
    Column("best top1", ("best", "top1"), True, percent=True),
    Column("balanced", ("final", "balanced"), True, percent=True),
    Column("many", ("final", "many"), True, percent=True),
    Column("medium", ("final", "medium"), True, percent=True),
    Column("few", ("final", "few"), True, percent=True),
    Column("nc1 train", ("final", "train", "collapse", "nc1"), False),
    Column("nc1 test", ("final", "collapse", "nc1"), False),
    Column("best epoch", ("best_epoch",), False),
)
HIERARCHY_COLUMNS = (
    Column("severity", ("final", "hierarchical", "mistake_severity"), False),
    Column("hier_dist@1", ("final", "hierarchical", "hier_dist@1"), False),
    Column("hier_dist@5", ("final", "hierarchical", "hier_dist@5"), False),
)


@dataclass
class Variant:
    """A config and its own overrides, resolved (``config`` is checked)."""

    label: str
    source: str
    overrides: list[str]
    config: Config


@dataclass
class VariantResult:
    """A variant's summaries, one per seed, in seed order."""

    variant: Variant
    summaries: list[dict[str, Any]] = field(default_factory=list)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"NAME k=v k=v"`` -> ``("NAME", ["k=v", "k=v"])`` (shell-style quoting allowed)."""
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"variant {text!r}: {exc}") from None
    if not parts:
        raise UsageError("an empty variant: give a config name or path, then its overrides")
    source, overrides = parts[0], parts[1:]
    if "=" in source:
        raise UsageError(
            f"variant {text!r} starts with {source!r}, not a config: each variant is one "
            "argument 'CONFIG [KEY=VALUE ...]' (quote it), and --set KEY=VALUE applies to all"
        )
    bad = [item for item in overrides if "=" not in item]
    if bad:
        raise UsageError(f"variant {text!r}: {bad[0]!r} is not a KEY=VALUE override")
    return source, overrides


def _default_label(source: str, overrides: Sequence[str]) -> str:
    name = Path(source).stem
    return f"{name} {' '.join(overrides)}" if overrides else name


def resolve_variants(
    texts: Sequence[str],
    *,
    common: Sequence[str] = (),
    labels: Sequence[str] | None = None,
) -> list[Variant]:
    """Parse and check every variant (before anything trains).

    Raises:
        UsageError: a malformed variant, a label count that does not match, duplicate
            labels, or two variants with the same resolved config.
    """
    if not texts:
        raise UsageError("give at least one variant to compare")
    if labels and len(labels) != len(texts):
        raise UsageError(f"{len(labels)} --label value(s) for {len(texts)} variant(s)")
    variants = []
    for index, text in enumerate(texts):
        source, overrides = parse_variant(text)
        config = load_config(resolve_config_path(source), [*common, *overrides])
        label = labels[index] if labels else _default_label(source, overrides)
        variants.append(Variant(label, source, overrides, config))
    resolved = [_comparable(v.config) for v in variants]
    for i in range(len(variants)):
        for j in range(i + 1, len(variants)):
            if resolved[i] == resolved[j]:
                raise UsageError(
                    f"variants {i + 1} ({variants[i].label!r}) and {j + 1} "
                    f"({variants[j].label!r}) resolve to the same config: they would train "
                    "identical runs"
                )
    seen_labels: dict[str, int] = {}
    for index, variant in enumerate(variants):
        if variant.label in seen_labels:
            raise UsageError(
                f"variants {seen_labels[variant.label] + 1} and {index + 1} have the same label "
                f"{variant.label!r}; give distinct --label values"
            )
        seen_labels[variant.label] = index
    return variants


def _comparable(config: Config) -> dict[str, Any]:
    values = config_to_dict(config)
    values.pop("name", None)  # the name labels a run, it does not change it
    values["log"] = {}
    return values


def variant_specs(variants: Sequence[Variant], seeds: int) -> list[RunSpec]:
    """The runs of a comparison, seed-major (seed 0 of every variant first, so that an
    interrupted comparison still has pairs): each variant's config with ``train.seed``
    set, labelled ``'<label>' seed <s>``."""
    from neuralcollapse.sweep import RunSpec

    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    specs = []
    for seed in range(seeds):
        for variant in variants:
            values = config_to_dict(variant.config)
            values["train"]["seed"] = seed
            specs.append(RunSpec(config_from_dict(values), f"{variant.label!r} seed {seed}"))
    return specs


class Interrupted(KeyboardInterrupt):
    """A comparison stopped by an interrupt; ``results`` holds the runs that finished."""

    def __init__(self, results: list[VariantResult]) -> None:
        super().__init__("interrupted")
        self.results = results


def run_variants(
    variants: Sequence[Variant],
    seeds: int,
    runs_dir: Path,
    *,
    sweep: Sweep | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> list[VariantResult]:
    """Have every variant with seeds 0..``seeds``-1, through ``sweep`` (default: one
    after another in this process, into ``runs_dir``): finished runs are reused,
    interrupted ones resumed (see :mod:`neuralcollapse.sweep`).

    Raises:
        Interrupted: on an interrupt, with the results of the runs that finished.
    """
    from neuralcollapse.sweep import Sweep

    specs = variant_specs(variants, seeds)
    own = sweep is None
    sweep = Sweep(runs_dir) if sweep is None else sweep
    try:
        sweep.run(specs, on_result)
    except KeyboardInterrupt:
        raise Interrupted(_gather(variants, specs, sweep)) from None
    finally:
        if own:
            sweep.close()
    return _gather(variants, specs, sweep)


def _gather(
    variants: Sequence[Variant], specs: Sequence[RunSpec], sweep: Sweep
) -> list[VariantResult]:
    """Each variant's finished summaries, in seed order (``specs`` is seed-major)."""
    results = [VariantResult(v) for v in variants]
    for index, spec in enumerate(specs):
        done = sweep.results.get(spec.key)
        if done is not None:
            results[index % len(variants)].summaries.append(done.summary)
    return results


def lookup(summary: dict[str, Any], path: Sequence[str]) -> float | None:
    """The finite number at ``path`` of a summary, or None."""
    value: Any = summary
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def columns_for(results: Sequence[VariantResult]) -> tuple[Column, ...]:
    """The columns some run has a value for: the hierarchical ones only with a class
    hierarchy, the best epoch's only when a run chose one (on a validation split)."""

    def measured(column: Column) -> bool:
        return any(lookup(s, column.path) is not None for r in results for s in r.summaries)

    return tuple(column for column in COLUMNS + HIERARCHY_COLUMNS if measured(column))


def aggregate(summaries: Sequence[dict[str, Any]], columns: Sequence[Column]) -> dict[str, dict]:
    """Per column: mean, sample std (ddof 1; 0 for one run) and how many runs had it."""
    table = {}
    for column in columns:
        values = [v for v in (lookup(s, column.path) for s in summaries) if v is not None]
        table[column.label] = {
            "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else 0.0 if values else None,
            "n": len(values),
        }
    return table


def paired_statistics(
    baseline: Sequence[dict[str, Any]],
    other: Sequence[dict[str, Any]],
    columns: Sequence[Column],
) -> dict[str, dict]:
    """Per column, over the seeds both have: the differences other - baseline, their mean
    and sample std, and ``wins``: seeds where ``other`` is better (by the column's
    direction), ``losses`` and ``ties``."""
    table = {}
    pairs = _pairs(baseline, other)
    for column in columns:
        diffs = []
        for base, mine in pairs:
            a, b = lookup(base, column.path), lookup(mine, column.path)
            if a is not None and b is not None:
                diffs.append(b - a)
        sign = 1 if column.higher_is_better else -1
        table[column.label] = {
            "differences": diffs,
            "mean": statistics.fmean(diffs) if diffs else None,
            "std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0 if diffs else None,
            "wins": sum(1 for d in diffs if sign * d > 0),
            "losses": sum(1 for d in diffs if sign * d < 0),
            "ties": sum(1 for d in diffs if d == 0),
            "seeds": len(diffs),
            "higher_is_better": column.higher_is_better,
        }
    return table


def _pairs(
    baseline: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Summaries of the same seed side by side (by their ``seed``; by position for
    summaries without one), so that a partial comparison never pairs different seeds."""
    seeded = all("seed" in s for s in (*baseline, *other))
    if not seeded:
        return list(zip(baseline, other, strict=False))
    mine = {s["seed"]: s for s in other}
    return [(s, mine[s["seed"]]) for s in baseline if s["seed"] in mine]
