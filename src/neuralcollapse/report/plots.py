"""The report's figures, one function each, from plain run records to a matplotlib Figure.

The curve functions take ``runs``: a mapping from a run's label to its ``metrics.jsonl``
records (dicts with ``epoch``, ``train_loss``, ``train`` / ``test`` metric dicts). With
one run, colour tells the metrics apart; with several, colour is the run and line style
the metric, so the runs overlay on the same axes.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`), never
pyplot: nothing is registered globally, nothing needs a display, and the user's own
backend choice is left alone. Saving picks Agg for PNG and the SVG backend for SVG.

Colours are the Okabe-Ito palette (distinguishable under the common colour-vision
deficiencies); heatmaps use ColorBrewer's diverging RdBu, also colour-blind safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from neuralcollapse.report.runs import series

# Okabe-Ito, in an order that keeps the first colours far apart; yellow (poor on white) last.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#F0E442")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
HEATMAP_CMAP = "RdBu_r"

Runs = Mapping[str, Sequence[dict[str, Any]]]
# (key in the record, legend name) of each metric a panel shows.
Metrics = Sequence[tuple[str, str]]

ACCURACY_OVERALL: Metrics = (
    ("test.top1", "test top-1"),
    ("test.balanced", "test balanced"),
    ("train.top1", "train top-1"),
)
ACCURACY_GROUPS: Metrics = (
    ("test.many", "many-shot"),
    ("test.medium", "medium-shot"),
    ("test.few", "few-shot"),
)
# (metric, panel title, y label) of the four collapse panels; train and test features each.
COLLAPSE_PANELS = (
    ("nc1", "NC1: within-class variability", r"tr($\Sigma_W \Sigma_B^+$) / K (unitless)"),
    ("nc2_etf_distance_means", "NC2: class means vs simplex ETF", "distance to ETF (unitless)"),
    ("nc3_self_duality", "NC3: classifier–means self-duality", "distance (unitless)"),
    ("nc4_ncc_mismatch", "NC4: mismatch with nearest class mean", "fraction of samples"),
)
HIERARCHY_SEVERITY: Metrics = (("test.hierarchical.mistake_severity", "mistake severity"),)
HIERARCHY_DISTANCE: Metrics = (
    ("test.hierarchical.hier_dist@1", "hier-dist@1"),
    ("test.hierarchical.hier_dist@5", "hier-dist@5"),
)


def _style(run: int, metric: int, several_runs: bool) -> dict[str, Any]:
    """Line colour, style and marker: colour is the run when there are several runs."""
    colour = PALETTE[(run if several_runs else metric) % len(PALETTE)]
    style = LINESTYLES[metric % len(LINESTYLES)] if several_runs else "-"
    marker = MARKERS[(run if several_runs else metric) % len(MARKERS)]
    return {"color": colour, "linestyle": style, "marker": marker, "markersize": 3.5}


def _check_runs(runs: Runs) -> None:
    if not runs:
        raise ValueError("no runs to plot: runs is empty")


def _draw_metrics(
    ax: Axes, runs: Runs, metrics: Metrics, *, scale: float = 1.0, log: bool = False
) -> int:
    """Draw every (run, metric) curve on ``ax``; returns how many had data to draw.

    Non-finite values are gaps; on a log axis non-positive values are gaps too, since a
    log scale cannot place them (NC4 is exactly 0 once every sample is NCC-consistent).
    """
    drawn = 0
    several = len(runs) > 1
    for r, (label, records) in enumerate(runs.items()):
        for m, (key, name) in enumerate(metrics):
            epochs, values = series(records, key)
            values = values * scale
            if log:
                values = np.where(values > 0, values, np.nan)
            if not np.isfinite(values).any():
                continue
            legend = f"{label}: {name}" if several else name
            ax.plot(epochs, values, label=legend, **_style(r, m, several))
            drawn += 1
    if log and drawn:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis, ax.get_ylim())
    return drawn


def plain_log_ticks(axis: Axis, limits: tuple[float, float]) -> None:
    """Label a log axis with plain numbers (0.2, 0.5, 1) instead of 2 x 10^-1.

    Ticks go at 1-2-5 multiples of powers of ten inside ``limits``; an axis too short to
    hold two of them (say 0.7 to 0.85) keeps matplotlib's ticks, labelled plainly.
    """
    low, high = sorted(limits)
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    if low > 0 and math.isfinite(high):
        decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        ticks = [m * 10.0**e for e in decades for m in (1, 2, 5) if low <= m * 10.0**e <= high]
        if len(ticks) >= 2:
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(NullFormatter())
            return
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain)


def _finish_axes(ax: Axes, title: str, ylabel: str, drawn: int) -> None:
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if drawn:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)


def _require_drawn(drawn: int, what: str) -> None:
    if not drawn:
        raise ValueError(f"nothing to plot: no run has {what} values")


def plot_loss(runs: Runs) -> Figure:
    """Training loss per epoch (the mean over the epoch's batches), one curve per run.

    The y axis is logarithmic when every loss is positive (losses fall by orders of
    magnitude), linear otherwise (a loss that can be negative or zero).
    """
    _check_runs(runs)
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    metric = (("train_loss", "training loss"),)
    values = np.concatenate([series(records, "train_loss")[1] for records in runs.values()])
    finite = values[np.isfinite(values)]
    log = finite.size > 0 and bool((finite > 0).all())
    drawn = _draw_metrics(ax, runs, metric, log=log)
    _require_drawn(drawn, "training loss")
    scale = " (log scale)" if log else ""
    _finish_axes(ax, f"Training loss per epoch{scale}", "loss (mean over batches)", drawn)
    return fig


def plot_accuracy(runs: Runs) -> Figure:
    """Accuracy per epoch: overall (left) and on the test set by shot group (right), in %."""
    _check_runs(runs)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    overall = _draw_metrics(left, runs, ACCURACY_OVERALL, scale=100.0)
    groups = _draw_metrics(right, runs, ACCURACY_GROUPS, scale=100.0)
    _require_drawn(overall + groups, "accuracy")
    _finish_axes(left, "Overall accuracy per epoch", "accuracy (%)", overall)
    _finish_axes(right, "Test accuracy by shot group per epoch", "accuracy (%)", groups)
    left.set_ylim(0, 100)
    return fig


def plot_collapse(runs: Runs) -> Figure:
    """NC1-NC4 per epoch on a log scale, on train and test features (one panel each)."""
    _check_runs(runs)
    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    total = 0
    for ax, (metric, title, ylabel) in zip(axes, COLLAPSE_PANELS, strict=True):
        metrics = ((f"train.collapse.{metric}", "train"), (f"test.collapse.{metric}", "test"))
        drawn = _draw_metrics(ax, runs, metrics, log=True)
        _finish_axes(ax, f"{title} (log scale)", ylabel, drawn)
        total += drawn
    _require_drawn(total, "positive collapse-metric")
    fig.suptitle("Neural-collapse metrics per epoch (lower = more collapsed)")
    return fig


def plot_hierarchy(runs: Runs) -> Figure:
    """Mistake severity (left) and hierarchical distance@k (right) per epoch, test set."""
    _check_runs(runs)
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    severity = _draw_metrics(left, runs, HIERARCHY_SEVERITY)
    distance = _draw_metrics(right, runs, HIERARCHY_DISTANCE)
    _require_drawn(severity + distance, "hierarchical-metric")
    ylabel = "mean LCA height (tree levels)"
    _finish_axes(left, "Test mistake severity per epoch (lower = milder)", ylabel, severity)
    _finish_axes(right, "Test hierarchical distance@k per epoch", ylabel, distance)
    return fig


def plot_per_class_accuracy(
    points: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    *,
    thresholds: tuple[float, float] | None = None,
) -> Figure:
    """Test accuracy of each class against its number of training images (log x).

    Args:
        points: run label -> (training count per class, test accuracy per class in [0, 1]
            or None for a class absent from the test set).
        thresholds: optional (many, few) shot-group bounds drawn as vertical lines.
    """
    if not points:
        raise ValueError("no runs to plot: points is empty")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    drawn = 0
    for r, (label, (counts, accuracy)) in enumerate(points.items()):
        x = np.array([float(c) for c in counts])
        y = np.array([np.nan if a is None else 100.0 * float(a) for a in accuracy])
        if x.shape != y.shape:
            raise ValueError(f"{label}: {x.size} counts but {y.size} accuracies")
        keep = np.isfinite(y) & (x > 0)
        if not keep.any():
            continue
        style = {"color": PALETTE[r % len(PALETTE)], "marker": MARKERS[r % len(MARKERS)]}
        ax.scatter(x[keep], y[keep], label=label, alpha=0.8, s=22, **style)
        drawn += 1
    _require_drawn(drawn, "per-class accuracy")
    if thresholds is not None:
        for bound, name in zip(thresholds, ("many", "few"), strict=True):
            ax.axvline(bound, color="#777777", linestyle=":", linewidth=1)
            ax.annotate(
                f" {name} = {bound:g} images",
                (bound, 0.02),
                rotation=90,
                xycoords=("data", "axes fraction"),
                ha="right",
                va="bottom",
                fontsize="small",
                color="#555555",
            )
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis, ax.get_xlim())
    ax.set_ylim(-2, 102)
    ax.set_title("Test accuracy per class against its training count")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def cosine_matrix(rows: np.ndarray) -> np.ndarray:
    """``(K, K)`` cosine similarities of the rows of a ``(K, d)`` array.

    Rows that are zero or NaN (absent classes) give NaN rows and columns, shown blank.
    """
    rows = np.asarray(rows, dtype=float)
    if rows.ndim != 2:
        raise ValueError(f"expected a (K, d) array, got shape {rows.shape}")
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = np.where(norms > 0, rows / norms, np.nan)
    return np.clip(unit @ unit.T, -1.0, 1.0)


def plot_similarity(
    class_means: np.ndarray | None,
    frame: np.ndarray | None,
    *,
    frame_name: str = "frame",
    subtitle: str = "",
) -> Figure:
    """Heatmaps of the cosine similarity between class means and between frame rows.

    Args:
        class_means: ``(K, d)`` class means, centred by the global mean (test features),
            or None to show the frame only.
        frame: ``(K, d)`` classifier rows, or None to show the class means only.
        frame_name: what ``frame`` is, for the panel title ("fixed frame", ...).
        subtitle: appended to the figure title (e.g. the run and epoch).
    """
    panels = [
        (matrix, title)
        for matrix, title in (
            (class_means, "centred class means (test features)"),
            (frame, f"{frame_name} rows"),
        )
        if matrix is not None
    ]
    if not panels:
        raise ValueError("nothing to plot: neither class means nor a frame given")
    fig = Figure(figsize=(5.2 * len(panels) + 1.0, 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    image = None
    for ax, (matrix, title) in zip(axes, panels, strict=True):
        image = _heatmap(ax, cosine_matrix(matrix), title)
    fig.colorbar(image, ax=list(axes), label="cosine similarity", shrink=0.9)
    suffix = f" — {subtitle}" if subtitle else ""
    fig.suptitle(f"Cosine similarity between classes{suffix}")
    return fig


def _heatmap(ax: Axes, matrix: np.ndarray, title: str) -> AxesImage:
    # NaN (an absent class) shows light grey, apart from every similarity colour.
    cmap = colormaps[HEATMAP_CMAP].with_extremes(bad="#dddddd")
    image = ax.imshow(matrix, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title)
    ax.set_xlabel("class index")
    ax.set_ylabel("class index")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return image
