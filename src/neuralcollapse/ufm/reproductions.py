"""The UFM theory of docs/theory.md §5-6, reproduced: each function runs small simulations and
compares what it measures with what the paper predicts.

Every reproduction returns a :class:`Reproduction` holding the paper's prediction
(``expected``, with the numeric thresholds used), the numbers measured (``measured``), and
``agrees``, computed from those numbers and thresholds only. Nothing is tuned after the
fact: a disagreement is returned as ``agrees=False``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neuralcollapse.errors import ConfigError, usage_errors
from neuralcollapse.frames import describe
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.ufm.config import UFMConfig
from neuralcollapse.ufm.simulate import UFMResult, build_problem, simulate

__all__ = [
    "REPRODUCTIONS",
    "Reproduction",
    "binary_tree",
    "dr_vs_ce",
    "etf_optimum",
    "haframe",
    "minority_collapse",
]


@dataclass
class Reproduction:
    """One reproduction's outcome.

    Attributes:
        name: the CLI name (``etf-optimum``, ...).
        expected: the paper's prediction and the thresholds ``agrees`` applies.
        measured: the numbers ``agrees`` was computed from (JSON-ready).
        agrees: whether the measurements meet the stated prediction.
        table: rows (dicts with the same keys) for display.
        curves: per-run series for the plot (JSON-ready).
        settings: the parameters of the run.
        wall_time_s: seconds it took.
    """

    name: str
    expected: str
    measured: dict[str, Any]
    agrees: bool
    table: list[dict[str, Any]]
    curves: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; top-level keys ``expected``, ``measured``, ``agrees`` first."""
        return {
            "expected": self.expected,
            "measured": self.measured,
            "agrees": self.agrees,
            "name": self.name,
            "settings": self.settings,
            "table": self.table,
            "wall_time_s": self.wall_time_s,
            "curves": self.curves,
        }


def _number(value: float | None) -> float | None:
    """A float for JSON: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mean_pairwise_cosine(rows: Tensor) -> float:
    """Mean cosine over distinct pairs of the rows of a (m, d) matrix, m >= 2."""
    unit = F.normalize(rows.double(), dim=1)
    gram = unit @ unit.T
    m = rows.shape[0]
    return float((gram.sum() - gram.diagonal().sum()) / (m * (m - 1)))


def _class_means(result: UFMResult) -> Tensor:
    """(K, d) float64 uncentred class means of the final features."""
    k = result.config.num_classes
    sums = torch.zeros(k, result.H.shape[1], dtype=torch.float64, device=result.H.device)
    sums.index_add_(0, result.labels, result.H.double())
    counts = torch.bincount(result.labels, minlength=k).double().unsqueeze(1)
    return (sums / counts).cpu()


def _final(result: UFMResult, name: str) -> float:
    """A metric of the final report; NaN when the run diverged (no report)."""
    return math.nan if result.final is None else float(getattr(result.final, name))


def _below(value: float | None, target: float) -> bool:
    """``value < target``, False for a missing value (a diverged log step)."""
    return value is not None and value < target


def _curve(result: UFMResult, *keys: str) -> dict[str, list[Any]]:
    return {key: [_number(v) for v in result.series(key)] for key in ("step", *keys)}


# --------------------------------------------------------------------------- etf-optimum


def etf_optimum(
    *,
    seeds: int = 5,
    num_classes: int = 10,
    dim: int = 16,
    n_per_class: int = 20,
    weight_decay: float = 5e-3,
    steps: int = 3000,
    lr: float = 0.5,
    threshold: float = 1e-3,
) -> Reproduction:
    """[Z21]: balanced, learnable W and b, CE with weight decay, d >= K-1: every run from a
    random start ends at a simplex ETF with NC1, NC2, NC3 below ``threshold``.

    Each seed is a different random start; SGD with momentum 0.9, full batch. The runs
    agree on the optimum when their final objectives differ by under 1e-4 (relative).
    """
    expected = (
        f"[Z21] CE + weight decay (lambda_W = lambda_H = lambda_b = {weight_decay}), "
        f"balanced, d={dim} >= K-1={num_classes - 1}: every global minimiser is a simplex "
        "ETF with within-class collapse and self-duality, and every other critical point is "
        f"a strict saddle, so from {seeds} random starts: NC1, NC2 (ETF distance of the "
        "centred class means and of W) and NC3 (self-duality) all < "
        f"{threshold:g}, W is an ETF up to scale (describe(W).etf_distance < {threshold:g}) "
        "and all runs reach the same objective (max relative spread < 1e-4: no spurious "
        "minimum)."
    )
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"seeds must be an integer >= 1, got {seeds!r}")
    start = time.perf_counter()
    rows, curves = [], {}
    for seed in range(seeds):
        config = UFMConfig(
            num_classes=num_classes,
            dim=dim,
            n_per_class=n_per_class,
            head_kind="learnable",
            loss="ce",
            lambda_W=weight_decay,
            lambda_H=weight_decay,
            lambda_b=weight_decay,
            optimizer="sgd",
            lr=lr,
            steps=steps,
            log_every=max(steps // 60, 1),
            seed=seed,
        )
        result = simulate(config)
        rows.append(
            {
                "seed": seed,
                "nc1": _final(result, "nc1"),
                "nc2_etf_distance_means": _final(result, "nc2_etf_distance_means"),
                "nc2_etf_distance_W": _final(result, "nc2_etf_distance_classifier"),
                "nc3_self_duality": _final(result, "nc3_self_duality"),
                "W_etf_distance": math.nan if result.diverged else describe(result.W).etf_distance,
                "objective": result.history[-1]["loss"],
                "accuracy": result.history[-1]["accuracy"],
            }
        )
        curves[f"seed {seed}"] = _curve(
            result, "nc1", "nc2_etf_distance_classifier", "nc3_self_duality", "loss"
        )
    metric_keys = ("nc1", "nc2_etf_distance_means", "nc2_etf_distance_W", "nc3_self_duality")
    worst = {key: max(row[key] for row in rows) for key in (*metric_keys, "W_etf_distance")}
    objectives = [row["objective"] for row in rows]
    spread = (max(objectives) - min(objectives)) / abs(min(objectives))
    # NaN (a diverged run) compares False, so it can never count as agreement.
    agrees = all(value < threshold for value in worst.values()) and spread < 1e-4
    measured = {
        **{f"max_{key}": _number(value) for key, value in worst.items()},
        "objective_relative_spread": _number(spread),
        "objectives": [_number(v) for v in objectives],
        "runs": len(rows),
    }
    return Reproduction(
        name="etf-optimum",
        expected=expected,
        measured=measured,
        agrees=agrees,
        table=[{k: _number(v) if isinstance(v, float) else v for k, v in r.items()} for r in rows],
        curves=curves,
        settings={
            "seeds": seeds,
            "num_classes": num_classes,
            "dim": dim,
            "n_per_class": n_per_class,
            "weight_decay": weight_decay,
            "steps": steps,
            "lr": lr,
            "threshold": threshold,
        },
        wall_time_s=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- minority collapse


def minority_collapse(
    *,
    ratios: tuple[float, ...] | list[float] = (1, 10, 100, 1000),
    n_major: int = 1000,
    num_classes: int = 10,
    dim: int = 16,
    weight_decay: float = 5e-3,
    steps_learnable: int = 10000,
    steps_fixed: int = 3000,
    lr: float = 1.0,
    seed: int = 0,
) -> Reproduction:
    """Fang 2021 / [Y22]: K/2 major classes of ``n_major`` samples, K/2 minor classes of
    ``n_major / ratio``; CE with weight decay, a learnable W (and b) against a fixed ETF.

    lambda_W = lambda_b = ``weight_decay``; lambda_H = 1/N, so that the decay per feature
    (N lambda_H = 1) is the same at every ratio although N changes. The minority rows get
    only a tiny share of the gradient at large ratios, so they converge slowly: at lr 0.5
    and 10,000 steps the ratio-1000 run was still moving (cosine 0.65, 1.00 after 20,000
    steps); lr 1.0 reaches the same end point within the default 10,000 steps.
    """
    ratios = [float(r) for r in ratios]
    if not ratios or not all(1 <= r < math.inf for r in ratios):
        raise ConfigError(f"ratios must be a non-empty list of numbers >= 1, got {ratios}")
    etf_cos = -1.0 / (num_classes - 1)
    expected = (
        "Fang 2021: with a learnable W, the mean pairwise cosine of the minority classifier "
        "rows rises toward 1 as the imbalance ratio grows (minority collapse); [Y22]: with "
        "a fixed simplex ETF the minority class means stay at cosine -1/(K-1) = "
        f"{etf_cos:.4f} to each other at every ratio. Agreement: learnable cosine within "
        f"0.05 of {etf_cos:.4f} at ratio {ratios[0]:g}, non-decreasing in the ratio (0.02 "
        f"tolerance) and >= 0.9 at ratio {ratios[-1]:g}; fixed-ETF minority mean (uncentred) "
        "cosine within 0.01 of -1/(K-1) at every ratio."
    )
    start = time.perf_counter()
    major = num_classes // 2
    rows = []
    for ratio in ratios:
        minor = int(n_major / ratio)
        if minor < 1:
            raise ConfigError(f"n_major={n_major} / ratio={ratio:g} leaves a class with 0 samples")
        counts = [n_major] * major + [minor] * (num_classes - major)
        row: dict[str, Any] = {"ratio": ratio, "n_major": n_major, "n_minor": minor}
        for head_kind, steps in (("learnable", steps_learnable), ("etf", steps_fixed)):
            config = UFMConfig(
                num_classes=num_classes,
                dim=dim,
                counts=counts,
                head_kind=head_kind,
                loss="ce",
                lambda_W=weight_decay,
                lambda_H=1.0 / sum(counts),
                lambda_b=weight_decay,
                optimizer="sgd",
                lr=lr,
                steps=steps,
                log_every=steps,
                seed=seed,
            )
            result = simulate(config)
            means = _class_means(result)[major:]
            if head_kind == "learnable":
                row["learnable_W_minor_cos"] = _mean_pairwise_cosine(result.W[major:])
                row["learnable_means_minor_cos"] = _mean_pairwise_cosine(means)
            else:
                row["etf_means_minor_cos"] = _mean_pairwise_cosine(means)
            minority = result.labels >= major
            logits = result.H @ result.W.T + (0 if result.b is None else result.b)
            hits = (logits.argmax(dim=1) == result.labels)[minority].double().mean()
            row[f"{head_kind}_minor_accuracy"] = float(hits)
        rows.append(row)
    learn = [row["learnable_W_minor_cos"] for row in rows]
    fixed = [row["etf_means_minor_cos"] for row in rows]
    monotone = all(b >= a - 0.02 for a, b in zip(learn, learn[1:], strict=False))
    learn_ok = abs(learn[0] - etf_cos) < 0.05 and monotone and learn[-1] >= 0.9
    fixed_error = max(abs(c - etf_cos) for c in fixed)
    measured = {
        "ratios": ratios,
        "learnable_W_minor_cos": [_number(v) for v in learn],
        "learnable_means_minor_cos": [_number(r["learnable_means_minor_cos"]) for r in rows],
        "etf_means_minor_cos": [_number(v) for v in fixed],
        "learnable_non_decreasing": monotone,
        "etf_max_abs_deviation_from_minus_1_over_K_minus_1": _number(fixed_error),
    }
    return Reproduction(
        name="minority-collapse",
        expected=expected,
        measured=measured,
        agrees=learn_ok and fixed_error < 0.01,
        table=rows,
        curves={"etf_cosine": etf_cos},
        settings={
            "ratios": ratios,
            "n_major": n_major,
            "num_classes": num_classes,
            "dim": dim,
            "weight_decay": weight_decay,
            "steps_learnable": steps_learnable,
            "steps_fixed": steps_fixed,
            "lr": lr,
            "seed": seed,
        },
        wall_time_s=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- dr-vs-ce


def dr_vs_ce(
    *,
    num_classes: int = 10,
    dim: int = 16,
    n_max: int = 40,
    imbalance_ratio: float = 10.0,
    lambda_H: float = 5e-4,
    steps: int = 1000,
    lr: float = 0.5,
    log_every: int = 5,
    nc1_target: float = 1e-2,
    seed: int = 0,
) -> Reproduction:
    """[Y22]: fixed ETF, step-imbalanced counts, CE against DR from the same start H0.

    Both use SGD with momentum 0.9 at the same ``lr`` and lambda_H; the frame is fixed (no
    W decay, no bias). Steps to reach NC1 < ``nc1_target`` are read at the log steps
    (resolution ``log_every``); None means never within ``steps``.
    """
    expected = (
        "[Y22]: with a fixed ETF classifier the optimum is collapse onto the ETF for CE and "
        "DR alike, whatever the class counts, and DR converges better. Agreement: both "
        f"reach NC1 < {nc1_target:g} and DR needs fewer steps than CE (counted every "
        f"{log_every} steps)."
    )
    base = UFMConfig(
        num_classes=num_classes,
        dim=dim,
        n_per_class=n_max,
        imbalance_ratio=imbalance_ratio,
        profile="step",
        head_kind="etf",
        lambda_H=lambda_H,
        optimizer="sgd",
        lr=lr,
        steps=steps,
        log_every=log_every,
        seed=seed,
    )
    start = time.perf_counter()
    problem = build_problem(base)
    rows, curves, reached = [], {}, {}
    for loss in ("ce", "dr"):
        config = UFMConfig(**{**base.to_dict(), "loss": loss})
        result = simulate(config, start=problem)
        hit = next((e["step"] for e in result.history if _below(e.get("nc1"), nc1_target)), None)
        reached[loss] = hit
        rows.append(
            {
                "loss": loss,
                f"steps_to_nc1<{nc1_target:g}": hit,
                "final_nc1": _number(_final(result, "nc1")),
                "final_objective": _number(result.history[-1]["loss"]),
                "final_accuracy": result.history[-1]["accuracy"],
                "diverged": result.diverged,
            }
        )
        curves[loss] = _curve(result, "nc1", "loss", "data_loss")
    ce_steps, dr_steps = reached["ce"], reached["dr"]
    agrees = dr_steps is not None and (ce_steps is None or dr_steps < ce_steps)
    measured = {
        "ce_steps_to_nc1_target": ce_steps,
        "dr_steps_to_nc1_target": dr_steps,
        "nc1_target": nc1_target,
        "ce_final_nc1": rows[0]["final_nc1"],
        "dr_final_nc1": rows[1]["final_nc1"],
        "class_counts": problem.counts.tolist(),
    }
    return Reproduction(
        name="dr-vs-ce",
        expected=expected,
        measured=measured,
        agrees=agrees,
        table=rows,
        curves=curves,
        settings={**base.to_dict(), "nc1_target": nc1_target},
        wall_time_s=time.perf_counter() - start,
    )


# --------------------------------------------------------------------------- haframe


def binary_tree(depth: int = 3) -> Hierarchy:
    """A balanced binary class tree with 2**depth leaves ``c0``, ``c1``, ... (depth >= 1)."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    edges, level = [], ["root"]
    for height in range(depth - 1, -1, -1):
        children = []
        for parent in level:
            for branch in ("0", "1"):
                child = f"c{len(children)}" if height == 0 else f"{parent}.{branch}"
                children.append(child)
                edges.append((child, parent))
        level = children
    return Hierarchy.from_edges(edges)


def _cosine_by_height(cosines: Tensor, heights: Tensor) -> dict[int, float]:
    off = ~torch.eye(heights.shape[0], dtype=torch.bool)
    return {
        int(h): float(cosines[(heights == h) & off].mean())
        for h in torch.unique(heights[off]).tolist()
    }


def haframe(
    *,
    hierarchy: Hierarchy | str | None = None,
    gamma: float = 2.0,
    alpha: float = 0.4,
    dim: int | None = None,
    n_per_class: int = 20,
    lambda_H: float = 5e-3,
    steps: int = 3000,
    lr: float = 0.5,
    tolerance: float = 0.05,
    seed: int = 0,
) -> Reproduction:
    """[L23]: features trained against a fixed HAFrame with its loss (CE + cosine
    regression, weight ``alpha``) collapse to class means whose cosines reproduce the
    HAFrame similarity S. Plain CE on the same frame is run alongside for contrast.

    Args:
        hierarchy: a Hierarchy, the path of a class tree file (any format
            :meth:`Hierarchy.load` reads), or None for :func:`binary_tree` with 8 leaves.
        dim: feature dimension; default K.
        tolerance: the largest allowed |cos(mu_i, mu_j) - S_ij| over class pairs.
    """
    if hierarchy is None:
        tree = binary_tree(3)
    elif isinstance(hierarchy, Hierarchy):
        tree = hierarchy
    else:
        with usage_errors():  # a malformed file is the user's input
            tree = Hierarchy.load(hierarchy)
    k = tree.num_classes
    expected = (
        f"[L23]: with the fixed HAFrame (gamma={gamma}) and its loss (alpha={alpha}), the "
        "collapsed class means have pairwise cosines equal to the HAFrame similarity S "
        "(siblings closer than cousins). Agreement: max over class pairs of "
        f"|cos(mu_i, mu_j) - S_ij| < {tolerance:g} for the HAFrame loss. Plain CE on the "
        "same frame is reported for contrast and not judged."
    )
    start = time.perf_counter()
    heights = tree.lca_heights()
    off = ~torch.eye(k, dtype=torch.bool)
    rows_by_loss, measured, curves = {}, {}, {}
    similarity = None
    for loss in ("cosine_frame", "ce"):
        config = UFMConfig(
            num_classes=k,
            dim=dim if dim is not None else k,
            n_per_class=n_per_class,
            head_kind="haframe",
            head_gamma=gamma,
            loss=loss,
            alpha=alpha,
            lambda_H=lambda_H,
            optimizer="sgd",
            lr=lr,
            steps=steps,
            log_every=max(steps // 60, 1),
            seed=seed,
        )
        result = simulate(config, hierarchy=tree)
        similarity = result.similarity.double().cpu()
        unit = F.normalize(_class_means(result), dim=1)
        cosines = unit @ unit.T
        error = (cosines - similarity)[off].abs()
        measured[f"{loss}_max_abs_error"] = _number(error.max())
        measured[f"{loss}_mean_abs_error"] = _number(error.mean())
        measured[f"{loss}_final_nc1"] = _number(_final(result, "nc1"))
        rows_by_loss[loss] = _cosine_by_height(cosines, heights)
        curves[loss] = {**_curve(result, "nc1", "loss"), "cosines": cosines.tolist()}
    assert similarity is not None
    target = _cosine_by_height(similarity, heights)
    table = [
        {
            "lca_height": h,
            "pairs": int(((heights == h) & off).sum()) // 2,
            "target_S": target[h],
            "cosine_frame_mean_cos": rows_by_loss["cosine_frame"][h],
            "ce_mean_cos": rows_by_loss["ce"][h],
        }
        for h in sorted(target)
    ]
    curves["target"] = similarity.tolist()
    measured["num_classes"] = k
    return Reproduction(
        name="haframe",
        expected=expected,
        measured=measured,
        agrees=measured["cosine_frame_max_abs_error"] is not None
        and measured["cosine_frame_max_abs_error"] < tolerance,
        table=table,
        curves=curves,
        settings={
            "hierarchy": hierarchy
            if isinstance(hierarchy, str)
            else "binary_tree(3)"
            if hierarchy is None
            else "given",
            "num_classes": k,
            "gamma": gamma,
            "alpha": alpha,
            "dim": dim if dim is not None else k,
            "n_per_class": n_per_class,
            "lambda_H": lambda_H,
            "steps": steps,
            "lr": lr,
            "tolerance": tolerance,
            "seed": seed,
        },
        wall_time_s=time.perf_counter() - start,
    )


REPRODUCTIONS: dict[str, Callable[..., Reproduction]] = {
    "etf-optimum": etf_optimum,
    "minority-collapse": minority_collapse,
    "dr-vs-ce": dr_vs_ce,
    "haframe": haframe,
}
