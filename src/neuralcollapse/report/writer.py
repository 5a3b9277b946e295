"""Assemble the report of one or several run directories into an HTML file and figures."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from neuralcollapse._internal.files import atomic_write_bytes, atomic_write_text
from neuralcollapse._internal.names import BALANCED, COLLAPSE_KEYS, FEW, MANY, MEDIUM, NC1, TOP1
from neuralcollapse._internal.text import format_percent, format_sci
from neuralcollapse._version import __version__
from neuralcollapse.errors import UsageError
from neuralcollapse.report import html as page_html
from neuralcollapse.report.html import Section
from neuralcollapse.report.plots import (
    MAX_CLASS_LABELS,
    few_shot_classes,
    plot_accuracy,
    plot_collapse,
    plot_hierarchy,
    plot_loss,
    plot_per_class_accuracy,
    plot_similarity,
)
from neuralcollapse.report.runs import (
    RunData,
    as_float,
    has_values,
    latest,
    lookup,
    read_run,
    unique_labels,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGE_FORMATS = ("png", "svg")
DPI = 100
# zlib level of the PNG files: 3 encodes about a third faster than PIL's default 6 for
# files a few per cent larger (the collapse figure: 85 instead of 126 ms, 4 % larger).
PNG_COMPRESSION = 3
METRIC_COLUMNS = (
    (TOP1, "top-1 %", True),
    (BALANCED, "balanced %", True),
    (MANY, "many %", True),
    (MEDIUM, "medium %", True),
    (FEW, "few %", True),
    *((f"collapse.{key}", f"NC{i}", False) for i, key in enumerate(COLLAPSE_KEYS, 1)),
)

HIERARCHY_COLUMNS = (
    "top1_error",
    "mistake_severity",
    "hier_dist@1",
    "hier_dist@5",
    "mistakes@1",
    "mistakes@5",
)


def render_figure(fig: Figure, image_format: str) -> bytes:
    """The bytes of ``fig`` as a PNG (Agg, :data:`DPI`, zlib level :data:`PNG_COMPRESSION`)
    or an SVG file."""
    buffer = io.BytesIO()
    extra = {"pil_kwargs": {"compress_level": PNG_COMPRESSION}} if image_format == "png" else {}
    fig.savefig(buffer, format=image_format, dpi=DPI, **extra)
    return buffer.getvalue()


class _Figures:
    """Saves each figure beside the HTML and returns its embedded ``<figure>``."""

    def __init__(self, folder: Path, image_format: str) -> None:
        self.folder, self.image_format = folder, image_format

    def embed(self, name: str, fig: Figure, alt: str, caption: str) -> str:
        data = render_figure(fig, self.image_format)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{name}.{self.image_format}"
        atomic_write_bytes(path, data)  # replaces a link at the name, never writes through
        return page_html.figure(data, self.image_format, alt, caption)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def _pct(value: Any) -> str:
    return format_percent(value, missing="–")


def _sci(value: Any) -> str:
    return format_sci(value, missing="–")


def _text(value: Any) -> str:
    return "–" if value is None else str(value)


def _metric_cells(test: dict[str, Any] | None) -> list[str]:
    test = test or {}
    return [(_pct if is_pct else _sci)(lookup(test, key)) for key, _, is_pct in METRIC_COLUMNS]


def _result_rows(run: RunData) -> list[list[str]]:
    """Final (test, and validation when held out) and best test results; the last record
    stands in when there is no summary. No best row when the run chose no best epoch."""
    if run.summary is not None:
        final = run.summary.get("final")
        rows = [[run.label, "final", *_metric_cells(final)]]
        if isinstance(final, dict) and isinstance(final.get("val"), dict):
            rows.append([run.label, "final, validation split", *_metric_cells(final["val"])])
        best = run.summary.get("best")
        if isinstance(best, dict):
            chosen = ""
            if best.get("split") and best.get("metric"):
                chosen = f", on {best['split']} {best['metric']}"
            epoch = run.summary.get("best_epoch")
            rows.append([run.label, f"best (epoch {epoch}{chosen})", *_metric_cells(best)])
        return rows
    if run.records:
        last = run.records[-1]
        return [
            [
                run.label,
                f"last evaluated (epoch {last.get('epoch')})",
                *_metric_cells(last.get("test")),
            ]
        ]
    return []


def _facts_row(run: RunData) -> list[str]:
    config, summary = run.config, run.summary or {}
    planned = lookup(config, "train.epochs")
    done = run.records[-1].get("epoch") if run.records else 0
    wall = as_float(summary.get("wall_time_s"))
    return [
        run.label,
        str(lookup(config, "data.name") or "–"),
        str(lookup(config, "model.name") or "–"),
        f"{lookup(config, 'head.kind') or '–'} / {lookup(config, 'head.neck') or '–'}",
        str(lookup(config, "loss.name") or "–"),
        f"{done} / {planned if planned is not None else '?'}",
        _text(summary.get("best_epoch")),
        "–" if math.isnan(wall) else f"{wall:.1f}",
        _text(summary.get("seed", lookup(config, "train.seed"))),
        _text(summary.get("device")),
    ]


def _summary_section(runs: Sequence[RunData]) -> Section:
    title = "Summary" if len(runs) == 1 else "Comparison"
    section = Section("summary", title)
    section.add(
        page_html.table(
            (
                "run",
                "data",
                "model",
                "head / neck",
                "loss",
                "epochs done / planned",
                "best epoch",
                "wall time (s)",
                "seed",
                "device",
            ),
            [_facts_row(run) for run in runs],
        )
    )
    rows = [row for run in runs for row in _result_rows(run)]
    if rows:
        section.add(
            page_html.paragraph(
                "Test set; accuracy in %, collapse metrics unitless (lower = more "
                "collapsed; NC4 is the fraction of samples)."
            )
        )
        section.add(
            page_html.table(("run", "evaluation", *(name for _, name, _ in METRIC_COLUMNS)), rows)
        )
    for run in runs:
        for key in ("summary", "records", "collapse"):
            if key in run.notes:
                section.note(f"{run.label}: {run.notes[key]}")
        summary = run.summary or {}
        if run.summary is not None and not isinstance(summary.get("best"), dict):
            rule = summary.get("best_rule")
            section.note(f"{run.label}: no best epoch" + (f": {rule}" if rule else ""))
    return section


def _config_section(runs: Sequence[RunData]) -> Section:
    section = Section("config", "Configuration")
    for run in runs:
        if not run.config:
            section.note(f"{run.label}: no config.yaml")
            continue
        text = yaml.safe_dump(run.config, sort_keys=False, default_flow_style=None)
        summary = f"{run.label}: config.yaml ({run.path})"
        # One run's config is shown open; several are folded to keep the page short.
        section.add(page_html.preformatted(text, summary, open_=len(runs) == 1))
    versions = [run.summary.get("versions") for run in runs if run.summary]
    if versions and isinstance(versions[0], dict):
        listed = ", ".join(f"{k} {v}" for k, v in versions[0].items())
        section.add(page_html.paragraph(f"versions: {listed}", css_class="meta"))
    return section


def _curve_runs(runs: Sequence[RunData], section: Section, key: str) -> dict[str, list]:
    """Runs with at least two evaluated epochs that have ``key``; notes for the others."""
    chosen = {}
    for run in runs:
        if not has_values(run.records, key):
            section.note(f"{run.label}: no {key} values in metrics.jsonl")
        elif len(run.records) < 2:
            section.note(f"{run.label}: only {len(run.records)} evaluated epoch, no curve")
        else:
            chosen[run.label] = run.records
    return chosen


def _curve(
    section: Section,
    figures: _Figures,
    runs: Sequence[RunData],
    spec: tuple[str, str, Callable[[dict[str, list]], Figure], str],
) -> None:
    name, key, plot, caption = spec
    chosen = _curve_runs(runs, section, key)
    if chosen:
        section.add(figures.embed(name, plot(chosen), caption, caption))


def _curves_section(runs: Sequence[RunData], figures: _Figures) -> Section:
    section = Section("curves", "Training curves")
    specs = (
        ("loss", "train_loss", plot_loss, "Training loss per epoch."),
        (
            "accuracy",
            f"test.{TOP1}",
            plot_accuracy,
            "Accuracy per epoch: overall (left) and on the test set by shot group (right).",
        ),
        (
            "collapse",
            f"test.collapse.{NC1}",
            plot_collapse,
            "NC1-NC4 per epoch on a log scale, on train and test features. A value of "
            "exactly 0 (NC4 once every sample agrees with its nearest class mean) has no "
            "place on a log axis and leaves a gap.",
        ),
    )
    for spec in specs:
        _curve(section, figures, runs, spec)
    return section


def _hierarchy_section(runs: Sequence[RunData], figures: _Figures) -> Section:
    section = Section("hierarchy", "Hierarchy")
    with_tree = [run for run in runs if run.has_hierarchy]
    if not with_tree:
        section.note("no class hierarchy in these runs: no mistake-severity or hier-dist@k")
        return section
    spec = (
        "hierarchy",
        "test.hierarchical.mistake_severity",
        plot_hierarchy,
        "Test mistake severity and hierarchical distance@k per epoch (lower = milder).",
    )
    _curve(section, figures, with_tree, spec)
    rows = []
    for run in with_tree:
        last = run.records[-1]
        values = [_sci(lookup(last, f"test.hierarchical.{key}")) for key in HIERARCHY_COLUMNS]
        rows.append([run.label, str(last.get("epoch")), *values])
    section.add(
        page_html.paragraph("Test set at the last evaluated epoch; LCA heights in tree levels.")
    )
    section.add(page_html.table(("run", "epoch", *HIERARCHY_COLUMNS), rows))
    return section


def _shot_thresholds(runs: Sequence[RunData]) -> tuple[float, float] | None:
    """The (many, few) bounds when every run splits shot groups by the same counts."""
    splits = {
        (
            lookup(r.config, "eval.shot_split"),
            lookup(r.config, "eval.many"),
            lookup(r.config, "eval.few"),
        )
        for r in runs
    }
    if len(splits) != 1:
        return None  # different bounds per run: no single pair of lines is right for all
    split, many, few = splits.pop()
    if split != "count" or math.isnan(as_float(many)) or math.isnan(as_float(few)):
        return None
    return float(many), float(few)


def _labelled_classes(run: RunData, counts: list[Any]) -> tuple[list[int], str]:
    """The classes whose names the per-class figure writes, and how they were chosen: the
    few-shot classes of the run's count split (``eval.few``), else the rarest classes."""
    few = as_float(lookup(run.config, "eval.few"))
    numeric = [as_float(c) for c in counts]
    if lookup(run.config, "eval.shot_split") in (None, "count") and not math.isnan(few):
        return few_shot_classes(numeric, few), f"fewer than {few:g} training images"
    rarest = sorted(range(len(numeric)), key=lambda k: (numeric[k], k))
    return rarest[:MAX_CLASS_LABELS], "the rarest classes"


def _per_class_section(runs: Sequence[RunData], figures: _Figures) -> Section:
    section = Section("per-class", "Accuracy per class")
    points, labelled, names, rules = {}, {}, {}, set()
    for run in runs:
        # Training counts do not change between epochs: any epoch that measured the
        # collapse report has them. Accuracy: the last epoch that measured it.
        counts = latest(run.records, "train.collapse.class_counts")
        accuracy = latest(run.records, "test.per_class")
        if not isinstance(counts, list) or not isinstance(accuracy, list):
            section.note(f"{run.label}: no per-class accuracy or training counts recorded")
        elif len(counts) != len(accuracy):
            section.note(
                f"{run.label}: {len(counts)} class counts but {len(accuracy)} "
                "per-class accuracies; left out"
            )
        else:
            points[run.label] = (counts, accuracy)
            labelled[run.label], rule = _labelled_classes(run, counts)
            rules.add(rule)
            if run.class_names is not None and len(run.class_names) == len(counts):
                names[run.label] = run.class_names
    if points:
        named = "by name" if len(names) == len(points) else "by name (by index where no name)"
        caption = (
            "Test accuracy of each class at the last evaluated epoch against its "
            "number of training images; dotted lines bound the shot groups. Classes with "
            f"{' or '.join(sorted(rules))} are labelled {named} (at most "
            f"{MAX_CLASS_LABELS} per run, rarest first). The axis reaches past 0 and 100 % "
            "so that points there show whole."
        )
        try:
            fig = plot_per_class_accuracy(
                points,
                thresholds=_shot_thresholds(runs),
                class_names=names,
                labelled=labelled,
            )
        except ValueError as exc:
            section.note(str(exc))
        else:
            section.add(figures.embed("per_class_accuracy", fig, caption, caption))
    return section


def _similarity_section(runs: Sequence[RunData], figures: _Figures) -> Section:
    section = Section("similarity", "Class geometry")
    for run in runs:
        if "similarity" in run.notes:
            section.note(f"{run.label}: {run.notes['similarity']}")
        if run.class_means is None and run.frame is None:
            continue
        epoch = f"epoch {run.checkpoint_epoch}" if run.checkpoint_epoch is not None else ""
        subtitle = ", ".join(p for p in (run.label if len(runs) > 1 else "", epoch) if p)
        fig = plot_similarity(
            run.class_means, run.frame, frame_name=run.frame_kind, subtitle=subtitle
        )
        name = "similarity" if len(runs) == 1 else f"similarity_{_slug(run.label)}"
        shown = [
            "test-set class means (centred)" if run.class_means is not None else "",
            f"the {run.frame_kind} rows" if run.frame is not None else "",
        ]
        caption = (
            f"{run.label}: cosine similarity between {' and between '.join(s for s in shown if s)}"
            f", last checkpoint ({epoch}). Under neural collapse the two matrices agree. "
            "The diagonal (each class against itself, always 1) is grey and left out of the "
            "colour scale, which spans the largest off-diagonal |cosine| of the panels "
            "(symmetric about 0); grey rows and columns are classes absent from the test set."
        )
        section.add(figures.embed(name, fig, f"cosine similarity matrices of {run.label}", caption))
    return section


def default_output(run_dirs: Sequence[Path]) -> Path:
    """``RUN_DIR/report.html`` for one run, ``report.html`` here for several."""
    return run_dirs[0] / "report.html" if len(run_dirs) == 1 else Path("report.html")


def write_report(
    run_dirs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    image_format: str = "png",
) -> Path:
    """Write the HTML report of one or several run directories; returns its path.

    The page is self-contained (figures embedded as data URIs, no scripts, no external
    requests); the same figures are saved as files in ``<out stem>_figures/``. Sections a
    run lacks data for (no hierarchy, a single evaluated epoch, missing checkpoint or data
    files) are left out with a one-line note.

    Args:
        run_dirs: run directories written by ``neuralcollapse train``.
        out: the HTML file (default ``RUN_DIR/report.html`` for one run, ``report.html``
            in the current directory for several).
        image_format: ``"png"`` or ``"svg"``.

    Raises:
        ValueError: no run directories, an unknown image format, a path that is a file.
        FileNotFoundError: a path that does not exist or holds no run.
    """
    if isinstance(run_dirs, str | Path):
        run_dirs = [run_dirs]
    if not run_dirs:
        raise UsageError("no run directories given; pass at least one RUN_DIR")
    if image_format not in IMAGE_FORMATS:
        raise UsageError(f"unknown image format {image_format!r}; choose png or svg")
    paths = [Path(p) for p in run_dirs]
    out_path = Path(out) if out is not None else default_output(paths)
    if out_path.is_dir():
        raise UsageError(f"output {out_path} is a directory; give the HTML file to write")
    runs = [read_run(path, label) for path, label in zip(paths, unique_labels(paths), strict=True)]
    figures = _Figures(out_path.with_name(f"{out_path.stem}_figures"), image_format)
    sections = [
        _summary_section(runs),
        _curves_section(runs, figures),
        _per_class_section(runs, figures),
        _similarity_section(runs, figures),
        _hierarchy_section(runs, figures),
        _config_section(runs),
    ]
    labels = ", ".join(run.label for run in runs)
    title = f"neuralcollapse report: {labels}"
    meta = f"{len(runs)} run(s): " + ", ".join(str(run.path) for run in runs)
    meta += f" — neuralcollapse {__version__}"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, page_html.page(title, meta, sections))
    return out_path
