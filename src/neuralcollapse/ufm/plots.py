"""PNG plots of the UFM reproductions and of a single simulation (matplotlib, Agg backend).

Colours are the Okabe-Ito colour-blind-safe palette; heat maps use ``cividis``. matplotlib
is imported by the plot functions only, so importing this module stays cheap, and figures
are made without pyplot (no display, and the caller's backend is left alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuralcollapse._internal.colours import OKABE_ITO

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from neuralcollapse.ufm.reproductions import Reproduction
    from neuralcollapse.ufm.simulate import UFMResult

__all__ = ["OKABE_ITO", "plot_reproduction", "plot_simulation"]


def _positive(values: list[Any]) -> list[float | None]:
    """Values for a log axis: non-positive or missing values become gaps."""
    return [v if v is not None and v > 0 else None for v in values]


def _subplots(rows: int = 1, cols: int = 1, *, figsize: tuple[float, float]) -> tuple[Figure, Any]:
    """A figure and its axes, made without pyplot: no display, no global figure state and
    no change of the caller's matplotlib backend (``savefig`` renders with Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _plot_etf_optimum(rep: Reproduction, path: Path) -> Path:
    fig, axes = _subplots(1, 3, figsize=(13, 4))
    keys = (
        ("nc1", "NC1 = tr(Σ_W Σ_B⁺)/K"),
        ("nc2_etf_distance_classifier", "NC2: ETF distance of W"),
        ("nc3_self_duality", "NC3: ‖W/‖W‖ − M/‖M‖‖²"),
    )
    for ax, (key, title) in zip(axes, keys, strict=True):
        for i, (label, curve) in enumerate(rep.curves.items()):
            ax.plot(curve["step"], _positive(curve[key]), color=OKABE_ITO[i % 8], label=label)
        ax.axhline(rep.settings["threshold"], color="0.4", ls="--", lw=1, label="threshold")
        ax.set_yscale("log")
        ax.set_xlabel("gradient step")
        ax.set_ylabel(f"{key} (dimensionless)")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"etf-optimum [Z21]: CE + weight decay from random starts (agrees={rep.agrees})")
    return _save(fig, path)


def _plot_minority(rep: Reproduction, path: Path) -> Path:
    fig, ax = _subplots(figsize=(7, 4.5))
    ratios = [row["ratio"] for row in rep.table]
    series = (
        ("learnable_W_minor_cos", "learnable W: minority rows", "o-"),
        ("learnable_means_minor_cos", "learnable W: minority class means", "s--"),
        ("etf_means_minor_cos", "fixed ETF: minority class means", "^-"),
    )
    for i, (key, label, style) in enumerate(series):
        ax.plot(ratios, [row[key] for row in rep.table], style, color=OKABE_ITO[i], label=label)
    ax.axhline(rep.curves["etf_cosine"], color="0.4", ls=":", lw=1, label="-1/(K-1)")
    ax.axhline(1.0, color="0.7", ls=":", lw=1, label="collapsed (cosine 1)")
    ax.set_xscale("log")
    ax.set_xlabel("imbalance ratio n_major / n_minor")
    ax.set_ylabel("mean pairwise cosine among minority classes")
    ax.set_title(f"minority-collapse (Fang 2021, [Y22]); agrees={rep.agrees}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_dr_vs_ce(rep: Reproduction, path: Path) -> Path:
    """Top row: NC1 against the step at each loss's best learning rate, one panel per
    variant (solid balanced, dashed imbalanced). Bottom row: final NC1 against the learning
    rate over the whole grid (open markers: the target was never reached)."""
    variants = list(dict.fromkeys(key.split("/")[0] for key in rep.curves))
    fig, axes = _subplots(2, len(variants), figsize=(4.6 * len(variants), 8))
    axes = axes.reshape(2, len(variants))
    target = rep.measured["nc1_target"]
    grid = rep.measured["lr_grid"]
    for col, variant in enumerate(variants):
        top, bottom = axes[0, col], axes[1, col]
        for data, style in (("balanced", "-"), ("imbalanced", "--")):
            key = f"{variant}/{data}"
            cell, sweep = rep.measured["cells"][key], rep.measured["sweeps"][key]
            for i, loss in enumerate(("dr", "ce")):
                curve = rep.curves[key][loss]
                info = cell[loss]
                hit = info["steps_to_target"]
                when = "not reached" if hit is None else f"{hit} steps"
                top.plot(
                    curve["step"],
                    _positive(curve["nc1"]),
                    style,
                    color=OKABE_ITO[i],
                    label=f"{loss} {data[:3]}: lr {info['lr']:g}, {when}",
                )
                reached = [s is not None for s in sweep[loss]["steps_to_target"]]
                finals = _positive(sweep[loss]["final_nc1"])
                bottom.plot(grid, finals, style, color=OKABE_ITO[i], lw=1, label=f"{loss} {data}")
                for lr, value, hit in zip(grid, finals, reached, strict=True):
                    if value is not None:
                        bottom.plot(
                            [lr],
                            [value],
                            "o",
                            color=OKABE_ITO[i],
                            markerfacecolor=OKABE_ITO[i] if hit else "none",
                        )
        judged = f"{variant}/balanced" in rep.measured["verdicts"]
        top.set_title(f"{variant}{'' if judged else ' (control, not judged)'}")
        bottom.set_title(f"{variant}: final NC1 over the lr grid")
        for ax in (top, bottom):
            ax.axhline(target, color="0.4", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_ylabel("NC1 (dimensionless)")
            ax.legend(fontsize=7)
        top.set_xlabel("gradient step")
        bottom.set_xscale("log")
        bottom.set_xlabel("learning rate (filled: target reached)")
    fig.suptitle(
        f"dr-vs-ce [Y22]: fixed ETF, each loss at its best lr, NC1 target {target:g} "
        f"(agrees={rep.agrees})"
    )
    return _save(fig, path)


def _plot_haframe(rep: Reproduction, path: Path) -> Path:
    fig, axes = _subplots(1, 3, figsize=(14, 4.3))
    target = rep.curves["target"]
    measured = rep.curves["cosine_frame"]["cosines"]
    for ax, matrix, title in (
        (axes[0], target, "target S (HAFrame similarity)"),
        (axes[1], measured, "cosines of the class means (HAFrame loss)"),
    ):
        image = ax.imshow(matrix, cmap="cividis", vmin=-1, vmax=1)
        ax.set_title(title)
        ax.set_xlabel("class index")
        ax.set_ylabel("class index")
        fig.colorbar(image, ax=ax, label="cosine")
    k = len(target)
    pairs = [(i, j) for i in range(k) for j in range(k) if i < j]
    xs = [target[i][j] for i, j in pairs]
    for n, (loss, marker) in enumerate((("cosine_frame", "o"), ("ce", "x"))):
        cos = rep.curves[loss]["cosines"]
        axes[2].scatter(
            xs, [cos[i][j] for i, j in pairs], marker=marker, s=18, color=OKABE_ITO[n], label=loss
        )
    low = min(xs) - 0.1
    axes[2].plot([low, 1], [low, 1], color="0.4", ls="--", lw=1, label="measured = target")
    axes[2].set_xlabel("target cosine S_ij")
    axes[2].set_ylabel("measured cosine of class means")
    axes[2].set_title("every class pair")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"haframe [L23]: collapsed means vs the HAFrame similarity (agrees={rep.agrees})")
    return _save(fig, path)


_PLOTTERS = {
    "etf-optimum": _plot_etf_optimum,
    "minority-collapse": _plot_minority,
    "dr-vs-ce": _plot_dr_vs_ce,
    "haframe": _plot_haframe,
}


def plot_reproduction(rep: Reproduction, path: str | Path) -> Path:
    """Write the PNG of a reproduction to ``path``; returns the path."""
    if rep.name not in _PLOTTERS:
        raise ValueError(f"no plot for reproduction {rep.name!r}; known: {', '.join(_PLOTTERS)}")
    return _PLOTTERS[rep.name](rep, Path(path))


def plot_simulation(result: UFMResult, path: str | Path) -> Path:
    """Loss, accuracy, NC1-NC3 and norms against the step of one run, as a PNG."""
    fig, axes = _subplots(1, 3, figsize=(14, 4))
    steps = result.series("step")
    axes[0].plot(steps, _positive(result.series("loss")), color=OKABE_ITO[0], label="objective")
    axes[0].plot(
        steps, _positive(result.series("data_loss")), color=OKABE_ITO[1], label="loss term"
    )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("objective (loss units)")
    twin = axes[0].twinx()
    twin.plot(steps, result.series("accuracy"), color=OKABE_ITO[2], ls="--", label="accuracy")
    twin.set_ylabel("training accuracy (fraction)")
    axes[0].set_title("objective and accuracy")
    lines = axes[0].get_lines() + twin.get_lines()
    axes[0].legend(lines, [line.get_label() for line in lines], fontsize=8, loc="center right")
    for i, key in enumerate(
        ("nc1", "nc2_etf_distance_means", "nc2_etf_distance_classifier", "nc3_self_duality")
    ):
        axes[1].plot(steps, _positive(result.series(key)), color=OKABE_ITO[i], label=key)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("metric (dimensionless)")
    axes[1].set_title("neural-collapse metrics")
    axes[1].legend(fontsize=8)
    for i, key in enumerate(("W_norm", "H_norm")):
        axes[2].plot(steps, result.series(key), color=OKABE_ITO[i + 4], label=f"‖{key[0]}‖_F")
    axes[2].set_ylabel("Frobenius norm")
    axes[2].set_title("norms of W and H")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("gradient step")
    c = result.config
    fig.suptitle(
        f"UFM: K={c.num_classes}, d={c.dim}, N={result.H.shape[0]}, {c.head_kind} W, "
        f"{c.loss} loss, {c.optimizer} lr={c.lr}"
    )
    return _save(fig, path)
