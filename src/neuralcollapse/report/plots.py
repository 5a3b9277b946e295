"""The report's figures, one function each, from plain run records to a matplotlib Figure.

The curve functions take ``runs``: a mapping from a run's label to its ``metrics.jsonl``
records (dicts with ``epoch``, ``train_loss``, ``train`` / ``test`` metric dicts). With
one run, colour tells the metrics apart; with several, colour is the run and line style
the metric, so the runs overlay on the same axes.

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure`), never
pyplot: nothing is registered globally, nothing needs a display, and the user's own
backend choice is left alone. Saving picks Agg for PNG and the SVG backend for SVG.
matplotlib is imported inside the plot functions only, so importing this module (and
:mod:`neuralcollapse.report`) stays cheap.

Speed: the report is written at the end of every training run, so its figures are laid
out on a fixed grid (margins in inches, :func:`_figure`) instead of matplotlib's
constrained layout, which measures every text box of every axes several times and cost
about half the rendering time; log axes carry no minor ticks where 1-2-5 major ticks are
labelled (each tick is several artists). benchmarks/bench_report.py times each figure.

Colours are the Okabe-Ito palette (distinguishable under the common colour-vision
deficiencies); heatmaps use ColorBrewer's diverging RdBu, also colour-blind safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from neuralcollapse._internal.colours import OKABE_ITO
from neuralcollapse._internal.names import (
    BALANCED,
    NC1,
    NC2_ETF_DISTANCE_MEANS,
    NC3_SELF_DUALITY,
    NC4_NCC_MISMATCH,
    SHOT_GROUPS,
    TOP1,
)
from neuralcollapse.report.runs import has_key, series

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

PALETTE = OKABE_ITO
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
HEATMAP_CMAP = "RdBu_r"
# Cells without a colour: the masked diagonal of a similarity map and absent classes.
HEATMAP_BLANK = "#dddddd"
# At most this many class names written next to the per-class points of one run.
MAX_CLASS_LABELS = 12

Runs = Mapping[str, Sequence[dict[str, Any]]]
# (key in the record, legend name) of each metric a panel shows.
Metrics = Sequence[tuple[str, str]]

ACCURACY_OVERALL: Metrics = (
    (f"test.{TOP1}", "test top-1"),
    (f"test.{BALANCED}", "test balanced"),
    (f"train.{TOP1}", "train top-1"),
)
ACCURACY_GROUPS: Metrics = tuple((f"test.{group}", f"{group}-shot") for group in SHOT_GROUPS)
# (metric, panel title, y label) of the four collapse panels; train and test features each.
COLLAPSE_PANELS = (
    # Plain Unicode, not mathtext: a process's first mathtext label cost 0.25 s (busy 2 cores).
    (NC1, "NC1: within-class variability", "tr(Σ_W Σ_B⁺) / K (unitless)"),
    (NC2_ETF_DISTANCE_MEANS, "NC2: class means vs simplex ETF", "distance to ETF (unitless)"),
    (NC3_SELF_DUALITY, "NC3: classifier–means self-duality", "distance (unitless)"),
    (NC4_NCC_MISMATCH, "NC4: mismatch with nearest class mean", "fraction of samples"),
)
HIERARCHY_SEVERITY: Metrics = (("test.hierarchical.mistake_severity", "mistake severity"),)
HIERARCHY_DISTANCE: Metrics = (
    ("test.hierarchical.hier_dist@1", "hier-dist@1"),
    ("test.hierarchical.hier_dist@5", "hier-dist@5"),
)
# Axis labels: the x label's top this far below the frame, the y label's right side this
# far left of it (inches).
LABEL_OFFSETS = (0.3, 0.55)
# Percent axes reach a little past 0 and 100 so that markers there are not cut by the frame.
PERCENT_LIMITS = (-3.0, 103.0)


@dataclass(frozen=True)
class Margins:
    """Fixed figure margins and gaps between panels, in inches."""

    left: float = 0.8
    right: float = 0.2
    bottom: float = 0.55
    top: float = 0.4
    wgap: float = 0.75  # between columns
    hgap: float = 0.75  # between rows


def _figure(
    size: tuple[float, float],
    grid: tuple[int, int] = (1, 1),
    margins: Margins = Margins(),
    *,
    sharey: bool = False,
) -> tuple[Figure, np.ndarray]:
    """A figure of ``size`` inches with a ``rows x cols`` grid of axes at fixed margins;
    returns the figure and its axes, flattened row by row."""
    from matplotlib.figure import Figure

    width, height = size
    rows, cols = grid
    m = margins
    axes_width = (width - m.left - m.right - (cols - 1) * m.wgap) / cols
    axes_height = (height - m.bottom - m.top - (rows - 1) * m.hgap) / rows
    if axes_width <= 0 or axes_height <= 0:
        raise ValueError(f"figure {size} in too small for a {rows}x{cols} grid with {m}")
    fig = Figure(figsize=size)
    fig.subplots_adjust(
        left=m.left / width,
        right=1.0 - m.right / width,
        bottom=m.bottom / height,
        top=1.0 - m.top / height,
        wspace=m.wgap / axes_width,
        hspace=m.hgap / axes_height,
    )
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey)
    return fig, axes.ravel()


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

    A curve joins the epochs that measured its metric (collapse metrics every
    ``eval.collapse_every`` epochs, accuracy every ``eval.every``); null and non-finite
    values of a measured epoch are gaps, and so are non-positive values on a log axis,
    which cannot place them (NC4 is exactly 0 once every sample is NCC-consistent).
    Lines are not clipped at the frame, so a marker on an axis limit (100 %) stays whole.
    """
    drawn = 0
    several = len(runs) > 1
    for r, (label, records) in enumerate(runs.items()):
        for m, (key, name) in enumerate(metrics):
            epochs, values = series([rec for rec in records if has_key(rec, key)], key)
            values = values * scale
            if log:
                values = np.where(values > 0, values, np.nan)
            if not np.isfinite(values).any():
                continue
            legend = f"{label}: {name}" if several else name
            ax.plot(epochs, values, label=legend, clip_on=False, **_style(r, m, several))
            drawn += 1
    if log and drawn:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis, ax.get_ylim())
    return drawn


def plain_log_ticks(axis: Axis, limits: tuple[float, float]) -> None:
    """Label a log axis with plain numbers (0.2, 0.5, 1) instead of 2 x 10^-1.

    Ticks go at 1-2-5 multiples of powers of ten inside ``limits``; an axis too short to
    hold two of them gets every integer multiple (0.3, 0.4, 0.5), and one shorter still
    (0.012 to 0.018) evenly spaced round values. There are no minor ticks: the labelled
    ones are dense enough to read, and every tick costs rendering time.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

    low, high = sorted(limits)
    ticks: list[float] = []
    if low > 0 and math.isfinite(high):
        decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
        for mantissas in ((1, 2, 5), range(1, 10)):
            ticks = [m * 10.0**e for e in decades for m in mantissas if low <= m * 10.0**e <= high]
            if len(ticks) >= 2:
                break
        if len(ticks) < 2:
            # steps of 1, 2 or 5 units keep the labels short (0.012, 0.014, 0.016): longer
            # ones (0.0144) would reach into the axis label, placed for "0.005"
            locator = MaxNLocator(nbins=3, steps=[1, 2, 5, 10])
            ticks = [t for t in locator.tick_values(low, high) if low <= t <= high]
    if ticks:
        axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def round_ticks(low: float, high: float, *, most: int) -> list[int]:
    """Tick positions for an integer axis (epochs, class indices) over ``[low, high]``:
    the multiples of the smallest step in 1, 2, 5, 10, 20, 50, ... that leaves at most
    ``most`` of them there. Only ticks inside the limits: matplotlib's locators add some
    outside, and each tick, drawn or not, costs rendering time."""
    if most < 1:
        raise ValueError(f"most must be >= 1, got {most}")
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        return []
    scale = 1
    while True:
        for multiple in (1, 2, 5):
            step = multiple * scale
            ticks = list(range(math.ceil(low / step) * step, math.floor(high) + 1, step))
            if len(ticks) <= most:
                return ticks
        scale *= 10


def _title(ax: Axes, title: str) -> None:
    """The axes title at a fixed height: matplotlib otherwise measures the axes' tick
    labels at every draw to keep the title clear of ticks on top, which these axes lack."""
    ax.set_title(title, y=1.0, pad=6.0)


def _labels(
    ax: Axes,
    xlabel: str,
    ylabel: str | None,
    *,
    below: float = LABEL_OFFSETS[0],
    left: float = LABEL_OFFSETS[1],
) -> None:
    """Axis labels at fixed distances from the frame (inches: the x label's top
    ``below`` it, the y label's right side ``left`` of it), clear of the longest tick
    labels used here ("0.005"). matplotlib would otherwise measure every tick label at
    every draw to place them; fixed places also line up the labels of stacked panels."""
    from matplotlib.transforms import offset_copy

    fig = ax.get_figure()
    ax.set_xlabel(xlabel, va="top")
    ax.xaxis.set_label_coords(
        0.5, 0.0, transform=offset_copy(ax.transAxes, fig=fig, y=-below, units="inches")
    )
    if ylabel is not None:
        ax.set_ylabel(ylabel, va="bottom")
        ax.yaxis.set_label_coords(
            0.0, 0.5, transform=offset_copy(ax.transAxes, fig=fig, x=-left, units="inches")
        )


def _finish_axes(
    ax: Axes, title: str, ylabel: str | None, drawn: int, *, legend: bool = True
) -> None:
    from matplotlib.ticker import FixedLocator

    _title(ax, title)
    # At most 5 epoch ticks (0, 10, 20, 30): every tick costs rendering time.
    ax.xaxis.set_major_locator(FixedLocator(round_ticks(*ax.get_xlim(), most=5)))
    _labels(ax, "epoch", ylabel)
    ax.grid(True, which="major", alpha=0.3)
    if drawn:
        if legend:
            ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)


def _percent_axis(ax: Axes) -> None:
    """0-100 % ticks on limits a little wider, so markers at 0 or 100 % are not cut."""
    from matplotlib.ticker import FixedLocator

    ax.set_ylim(*PERCENT_LIMITS)
    ax.yaxis.set_major_locator(FixedLocator(range(0, 101, 20)))


def _require_drawn(drawn: int, what: str) -> None:
    if not drawn:
        raise ValueError(f"nothing to plot: no run has {what} values")


def plot_loss(runs: Runs) -> Figure:
    """Training loss per epoch (the mean over the epoch's batches), one curve per run.

    The y axis is logarithmic when every loss is positive (losses fall by orders of
    magnitude), linear otherwise (a loss that can be negative or zero).
    """
    _check_runs(runs)
    fig, (ax,) = _figure((6.4, 3.6))
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
    fig, (left, right) = _figure((11, 3.8), (1, 2), Margins(wgap=0.45), sharey=True)
    overall = _draw_metrics(left, runs, ACCURACY_OVERALL, scale=100.0)
    groups = _draw_metrics(right, runs, ACCURACY_GROUPS, scale=100.0)
    _require_drawn(overall + groups, "accuracy")
    _finish_axes(left, "Overall accuracy per epoch", "accuracy (%)", overall)
    _finish_axes(right, "Test accuracy by shot group per epoch", None, groups)  # shared y
    _percent_axis(left)  # shared with the right panel
    return fig


def plot_collapse(runs: Runs) -> Figure:
    """NC1-NC4 per epoch on a log scale, on train and test features (one panel each)."""
    _check_runs(runs)
    fig, axes = _figure((11, 7), (2, 2), Margins(top=0.75, hgap=0.85, wgap=0.9))
    total = 0
    for ax, (metric, title, ylabel) in zip(axes, COLLAPSE_PANELS, strict=True):
        metrics = ((f"train.collapse.{metric}", "train"), (f"test.collapse.{metric}", "test"))
        drawn = _draw_metrics(ax, runs, metrics, log=True)
        _finish_axes(ax, f"{title} (log scale)", ylabel, drawn, legend=False)
        total += drawn
    _require_drawn(total, "positive collapse-metric")
    fig.suptitle("Neural-collapse metrics per epoch (lower = more collapsed)", y=0.985)
    # The panels share their legend entries: one legend for the figure, under the title.
    handles = {}
    for ax in axes:
        for line in ax.get_lines():
            handles.setdefault(line.get_label(), line)
    fig.legend(
        list(handles.values()),
        list(handles),
        loc="upper right",  # on the title's line, right of it
        bbox_to_anchor=(1.0, 1.0),
        ncols=min(len(handles), 4),
        fontsize="small",
        frameon=False,
    )
    return fig


def plot_hierarchy(runs: Runs) -> Figure:
    """Mistake severity (left) and hierarchical distance@k (right) per epoch, test set."""
    _check_runs(runs)
    fig, (left, right) = _figure((11, 3.8), (1, 2))
    severity = _draw_metrics(left, runs, HIERARCHY_SEVERITY)
    distance = _draw_metrics(right, runs, HIERARCHY_DISTANCE)
    _require_drawn(severity + distance, "hierarchical-metric")
    ylabel = "mean LCA height (tree levels)"
    _finish_axes(left, "Test mistake severity per epoch (lower = milder)", ylabel, severity)
    _finish_axes(right, "Test hierarchical distance@k per epoch", ylabel, distance)
    return fig


def few_shot_classes(counts: Sequence[float], few: float) -> list[int]:
    """Indices of the classes with fewer than ``few`` training images (the few-shot rule
    of :func:`neuralcollapse.data.shot_groups`, ``n_k < few``), rarest first."""
    order = sorted(range(len(counts)), key=lambda k: (float(counts[k]), k))
    return [k for k in order if float(counts[k]) < few]


def plot_per_class_accuracy(
    points: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
    *,
    thresholds: tuple[float, float] | None = None,
    class_names: Mapping[str, Sequence[str]] | None = None,
    labelled: Mapping[str, Sequence[int]] | None = None,
    max_labels: int = MAX_CLASS_LABELS,
) -> Figure:
    """Test accuracy of each class against its number of training images (log x).

    Some points carry their class name: by default the few-shot classes (fewer than the
    ``few`` bound of ``thresholds`` training images), at most ``max_labels`` per run,
    rarest first. Points sit on a range a little wider than 0-100 % and are not clipped,
    so a class at 100 % shows whole above the frame's edge.

    Args:
        points: run label -> (training count per class, test accuracy per class in [0, 1]
            or None for a class absent from the test set).
        thresholds: optional (many, few) shot-group bounds drawn as vertical lines.
        class_names: run label -> name of each class (missing: the class index).
        labelled: run label -> indices of the classes to name, overriding the default.
        max_labels: most names written per run.
    """
    if not points:
        raise ValueError("no runs to plot: points is empty")
    fig, (ax,) = _figure((6.4, 4.2), margins=Margins(left=0.75, bottom=0.6))
    drawn = 0
    for r, (label, (counts, accuracy)) in enumerate(points.items()):
        x = np.array([float(c) for c in counts])
        y = np.array([np.nan if a is None else 100.0 * float(a) for a in accuracy])
        if x.shape != y.shape:
            raise ValueError(f"{label}: {x.size} counts but {y.size} accuracies")
        keep = np.isfinite(y) & (x > 0)
        if not keep.any():
            continue
        colour = PALETTE[r % len(PALETTE)]
        style = {"color": colour, "marker": MARKERS[r % len(MARKERS)]}
        ax.scatter(x[keep], y[keep], label=label, alpha=0.8, s=22, clip_on=False, **style)
        if labelled is not None:
            chosen = list(labelled.get(label, ()))
        elif thresholds is not None:
            chosen = few_shot_classes(list(x), thresholds[1])
        else:
            chosen = []
        names = (class_names or {}).get(label)
        _name_points(ax, x, y, [k for k in chosen if keep[k]][:max_labels], names, colour)
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
    _percent_axis(ax)
    _title(ax, "Test accuracy per class against its training count")
    _labels(ax, "training images of the class (log scale)", "test accuracy (%)")
    ax.grid(True, which="major", alpha=0.3)
    if len(points) > 1:
        ax.legend(fontsize="small")
    return fig


def _name_points(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    chosen: Sequence[int],
    names: Sequence[str] | None,
    colour: str,
) -> None:
    """Write the class name beside each chosen point; neighbours (in x) alternate above
    and below their point so that names of classes with similar counts do not overlap."""
    if names is not None and len(names) != len(x):
        names = None  # a names list of another length belongs to another class order
    for i, k in enumerate(sorted(chosen, key=lambda k: (x[k], k))):
        text = str(names[k]) if names is not None else str(k)
        below = i % 2 == 1
        ax.annotate(
            text,
            (x[k], y[k]),
            xytext=(4, -9 if below else 3),
            textcoords="offset points",
            fontsize="small",
            color=colour,
            annotation_clip=False,
        )


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


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """A float copy of a square ``(K, K)`` matrix with its diagonal set to NaN."""
    out = np.array(matrix, dtype=float)
    np.fill_diagonal(out, np.nan)
    return out


def off_diagonal_limit(matrices: Sequence[np.ndarray]) -> float:
    """The largest ``|value|`` off the diagonals of ``matrices`` (NaN ignored): the colour
    range ``[-limit, limit]`` of the similarity maps; 1 when there is no such value."""
    values = [np.abs(off_diagonal(m)) for m in matrices]
    finite = [v[np.isfinite(v)] for v in values]
    largest = max((float(v.max()) for v in finite if v.size), default=0.0)
    return largest if largest > 0 else 1.0


def plot_similarity(
    class_means: np.ndarray | None,
    frame: np.ndarray | None,
    *,
    frame_name: str = "frame",
    subtitle: str = "",
) -> Figure:
    """Heatmaps of the cosine similarity between class means and between frame rows.

    The diagonal (every class against itself, always 1) is masked and left out of the
    colour scale, which spans ``[-m, m]`` for the largest off-diagonal ``|cos|`` ``m`` of
    both panels together (symmetric, so 0 stays white and the panels compare): otherwise
    the diagonal's 1 would squeeze the informative off-diagonal values (-1/(K-1) for a
    simplex ETF) into a sliver of the scale.

    Args:
        class_means: ``(K, d)`` class means, centred by the global mean (test features),
            or None to show the frame only.
        frame: ``(K, d)`` classifier rows, or None to show the class means only.
        frame_name: what ``frame`` is, for the panel title ("fixed frame", ...).
        subtitle: appended to the figure title (e.g. the run and epoch).
    """
    panels = [
        (cosine_matrix(matrix), title)
        for matrix, title in (
            (class_means, "centred class means (test features)"),
            (frame, f"{frame_name} rows"),
        )
        if matrix is not None
    ]
    if not panels:
        raise ValueError("nothing to plot: neither class means nor a frame given")
    limit = off_diagonal_limit([matrix for matrix, _ in panels])
    # Square panels of SIDE inches; the colour bar and its labels right of them.
    side, bar_gap, bar_width = 3.6, 0.25, 0.18
    margins = Margins(left=0.65, right=bar_gap + bar_width + 0.85, bottom=0.6, top=0.7, wgap=0.7)
    n = len(panels)
    width = margins.left + n * side + (n - 1) * margins.wgap + margins.right
    fig, axes = _figure((width, margins.bottom + side + margins.top), (1, n), margins)
    image = None
    for ax, (matrix, title) in zip(axes, panels, strict=True):
        image = _heatmap(ax, off_diagonal(matrix), title, limit)
    left = fig.subplotpars.right + bar_gap / width
    bar = fig.add_axes(
        (left, fig.subplotpars.bottom, bar_width / width, side / fig.get_figheight())
    )
    fig.colorbar(image, cax=bar, label="cosine similarity (off-diagonal)")
    suffix = f" — {subtitle}" if subtitle else ""
    fig.suptitle(f"Cosine similarity between classes{suffix}")
    return fig


def _heatmap(ax: Axes, matrix: np.ndarray, title: str, limit: float) -> AxesImage:
    from matplotlib import colormaps
    from matplotlib.ticker import FixedLocator

    # NaN (the diagonal, an absent class) shows light grey, apart from every other colour.
    cmap = colormaps[HEATMAP_CMAP].with_extremes(bad=HEATMAP_BLANK)
    image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    _title(ax, title)
    _labels(ax, "class index", "class index", left=0.4)  # short tick labels
    classes = FixedLocator(round_ticks(-0.5, len(matrix) - 0.5, most=10))
    ax.xaxis.set_major_locator(classes)
    ax.yaxis.set_major_locator(classes)
    return image
