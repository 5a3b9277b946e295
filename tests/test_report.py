"""Run reports: each plot function on small inputs, the HTML report of real short runs,
sections left out with a note where data is missing, the CLI, and the page as a browser
shows it (headless Chromium)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pytest

from neuralcollapse.cli import main
from neuralcollapse.frames import simplex_etf
from neuralcollapse.report import (
    cosine_matrix,
    plot_accuracy,
    plot_collapse,
    plot_hierarchy,
    plot_loss,
    plot_per_class_accuracy,
    plot_similarity,
    read_run,
    write_report,
)
from neuralcollapse.report.plots import PALETTE
from neuralcollapse.report.runs import series
from neuralcollapse.train import Trainer, load_checkpoint, load_config
from neuralcollapse.train.recipes import resolve_config_path

NO_FILES = ["log.report=false", "log.tensorboard=false"]
DIGITS_FIGURES = {"loss", "accuracy", "collapse", "per_class_accuracy", "similarity"}


# ------------------------------------------------------------------------ small inputs


def record(epoch: int, *, hierarchy: bool = False, scale: float = 1.0) -> dict:
    """One metrics.jsonl object of a 3-class run, values shrinking with the epoch."""
    collapse = {
        "nc1": scale / epoch,
        "nc2_etf_distance_means": 0.5 / epoch,
        "nc3_self_duality": 0.4 / epoch,
        "nc4_ncc_mismatch": 0.0 if epoch > 1 else 0.1,  # 0 cannot sit on a log axis
        "class_counts": [50, 10, 2],
    }
    split = {
        "top1": 0.5 + 0.1 * epoch,
        "balanced": 0.4 + 0.1 * epoch,
        "per_class": [0.9, 0.5, None],
        "many": 0.9,
        "medium": 0.5,
        "few": None,
        "collapse": collapse,
    }
    out = {"epoch": epoch, "train_loss": 1.0 / epoch, "train": split, "test": dict(split)}
    if hierarchy:
        out["test"]["hierarchical"] = {
            "mistake_severity": 2.0 - 0.1 * epoch,
            "hier_dist@1": 1.0 / epoch,
            "hier_dist@5": 1.5 / epoch,
        }
    return out


def records(n: int = 3, **kwargs) -> list[dict]:
    return [record(e, **kwargs) for e in range(1, n + 1)]


def line_labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_plot_loss_one_line_per_run_labelled():
    fig = plot_loss({"a": records(), "b": records(scale=2.0)})
    (ax,) = fig.axes
    assert line_labels(ax) == ["a: training loss", "b: training loss"]
    assert ax.get_xlabel() == "epoch" and "loss" in ax.get_ylabel() and ax.get_title()
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [1.0, 0.5, 1 / 3])
    colours = {mcolors.to_hex(line.get_color()).upper() for line in ax.get_lines()}
    assert colours == set(PALETTE[:2])  # Okabe-Ito, one colour per run


def test_plot_loss_log_scale_only_for_positive_losses():
    assert plot_loss({"run": records()}).axes[0].get_yscale() == "log"
    signed = [dict(r, train_loss=v) for r, v in zip(records(), (0.5, 0.0, -0.1), strict=True)]
    ax = plot_loss({"run": signed}).axes[0]
    assert ax.get_yscale() == "linear" and "log" not in ax.get_title()
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.5, 0.0, -0.1])


def test_plot_accuracy_in_percent_with_shot_groups():
    fig = plot_accuracy({"run": records(2)})
    overall, groups = fig.axes
    assert line_labels(overall) == ["test top-1", "test balanced", "train top-1"]
    # "few" is None in every record, so it has no line; many and medium do.
    assert line_labels(groups) == ["many-shot", "medium-shot"]
    np.testing.assert_allclose(overall.get_lines()[0].get_ydata(), [60.0, 70.0])
    assert overall.get_ylabel() == "accuracy (%)"
    # 0-100 % ticks on a range a little wider, lines unclipped: a marker at 100 % shows
    # whole instead of half hidden under the frame.
    low, high = overall.get_ylim()
    assert low < 0 and high > 100 and list(overall.get_yticks()) == [0, 20, 40, 60, 80, 100]
    assert not any(line.get_clip_on() for ax in fig.axes for line in ax.get_lines())


def test_plot_collapse_log_scale_masks_zeros_and_empty_panels():
    recs = records(3)
    for r in recs:
        r["train"]["collapse"] = dict(r["train"]["collapse"], nc3_self_duality=None)
        r["test"]["collapse"] = dict(r["test"]["collapse"], nc3_self_duality=None)
    fig = plot_collapse({"run": recs})
    nc1, nc2, nc3, nc4 = fig.axes
    assert nc1.get_yscale() == "log" and nc4.get_yscale() == "log"
    assert line_labels(nc1) == ["train", "test"]
    # NC3 is null throughout: the panel says so instead of plotting on a log axis.
    assert nc3.get_lines() == [] and nc3.get_yscale() == "linear"
    assert any(t.get_text() == "no values" for t in nc3.texts)
    # NC4 is exactly 0 after epoch 1: a gap, not a crash or a point at -inf.
    assert np.isnan(nc4.get_lines()[0].get_ydata()[1:]).all()
    assert "NC1" in nc1.get_title() and "log" in nc1.get_title()


def test_plot_hierarchy_two_panels():
    fig = plot_hierarchy({"a": records(2, hierarchy=True), "b": records(2, hierarchy=True)})
    severity, distance = fig.axes
    assert line_labels(severity) == ["a: mistake severity", "b: mistake severity"]
    assert len(distance.get_lines()) == 4  # @1 and @5 for each run
    # Several runs: colour is the run, line style the metric.
    styles = {line.get_linestyle() for line in distance.get_lines()}
    assert styles == {"-", "--"}
    assert "LCA" in severity.get_ylabel()


def test_plot_per_class_accuracy_log_x_skips_absent_classes():
    fig = plot_per_class_accuracy({"run": ([50, 10, 2], [0.9, 0.5, None])}, thresholds=(20.0, 5.0))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "test accuracy (%)"
    (points,) = ax.collections
    np.testing.assert_allclose(points.get_offsets(), [[50, 90], [10, 50]])
    assert len(ax.get_lines()) == 2  # the many / few bounds
    assert not points.get_clip_on() and ax.get_ylim()[1] > 100
    with pytest.raises(ValueError, match="2 counts but 3"):
        plot_per_class_accuracy({"run": ([1, 2], [0.1, 0.2, 0.3])})


def test_cosine_matrix_of_simplex_etf_and_absent_class():
    k = 5
    cos = cosine_matrix(simplex_etf(k, 8, seed=0).numpy())
    np.testing.assert_allclose(np.diag(cos), 1.0, atol=1e-6)
    off = cos[~np.eye(k, dtype=bool)]
    np.testing.assert_allclose(off, -1 / (k - 1), atol=1e-6)
    means = np.array([[1.0, 0.0], [np.nan, np.nan], [0.0, 2.0]])
    cos = cosine_matrix(means)
    assert np.isnan(cos[1]).all() and cos[0, 2] == 0.0 and cos[2, 2] == pytest.approx(1.0)


def test_plot_similarity_side_by_side_shared_scale():
    rng = np.random.default_rng(0)
    fig = plot_similarity(
        rng.normal(size=(4, 6)),
        simplex_etf(4, 6, seed=0).numpy(),
        frame_name="fixed frame",
        subtitle="epoch 3",
    )
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in heatmaps] == [
        "centred class means (test features)",
        "fixed frame rows",
    ]
    for ax in heatmaps:
        assert ax.get_xlabel() == "class index"
        shown = ax.images[0].get_array()
        assert np.ma.getmaskarray(shown).diagonal().all() or np.isnan(shown.diagonal()).all()
    assert len(fig.axes) == 3  # and one colour bar for both
    assert "epoch 3" in fig.get_suptitle()
    only_frame = plot_similarity(None, np.eye(3))
    assert len([ax for ax in only_frame.axes if ax.images]) == 1


def test_similarity_colour_scale_comes_from_the_off_diagonal():
    """Both panels share a scale symmetric about 0 spanning the largest off-diagonal
    |cosine| of either; the diagonal (1) is blank, not the top of the scale."""
    rng = np.random.default_rng(1)
    means = rng.normal(size=(5, 7))
    frame = simplex_etf(5, 7, seed=0).numpy().astype(np.float64)
    fig = plot_similarity(means, frame)
    # Independent float64 reference: normalise the rows, Gram matrix, drop the diagonal.
    off = []
    for rows in (means, frame):
        unit = rows / np.sqrt((rows**2).sum(axis=1, keepdims=True))
        gram = unit @ unit.T
        off.append(np.abs(gram[~np.eye(5, dtype=bool)]))
    limit = max(o.max() for o in off)
    for ax in (ax for ax in fig.axes if ax.images):
        low, high = ax.images[0].get_clim()
        assert (low, high) == pytest.approx((-limit, limit), rel=1e-12)
        shown = np.ma.filled(np.ma.asarray(ax.images[0].get_array(), dtype=float), np.nan)
        assert np.isnan(np.diag(shown)).all()
        assert np.isfinite(shown[~np.eye(5, dtype=bool)]).all()
    assert limit < 0.999  # the diagonal's 1 would have set the top of the old scale
    assert "off-diagonal" in fig.axes[-1].get_ylabel()  # the colour bar says so
    # ETF alone: every off-diagonal entry is -1/(K-1), and that sets the range.
    etf = plot_similarity(None, frame)
    assert etf.axes[0].images[0].get_clim() == pytest.approx((-0.25, 0.25), rel=1e-6)


def test_few_shot_classes_are_named_on_the_per_class_figure():
    counts = [100, 50, 12, 5, 3]
    accuracy = [1.0, 0.9, 0.8, None, 0.0]
    names = ["cat", "dog", "owl", "eel", "yak"]
    fig = plot_per_class_accuracy(
        {"run": (counts, accuracy)}, thresholds=(60.0, 20.0), class_names={"run": names}
    )
    ax = fig.axes[0]
    named = {t.get_text(): t.xy for t in ax.texts if t.get_text() in names}
    # Few-shot = fewer than 20 images: owl (12), yak (3); eel (5) is absent from the test set.
    assert named == {"owl": (12.0, 80.0), "yak": (3.0, 0.0)}
    # Without names the class index stands in; an explicit choice overrides the default.
    fig = plot_per_class_accuracy({"run": (counts, accuracy)}, labelled={"run": [0, 1]})
    assert {t.get_text() for t in fig.axes[0].texts} == {"0", "1"}
    # At most max_labels names, the rarest first.
    fig = plot_per_class_accuracy(
        {"run": (counts, accuracy)}, thresholds=(60.0, 200.0), max_labels=2
    )
    assert {t.get_text() for t in fig.axes[0].texts if t.get_text().isdigit()} == {"2", "4"}


def test_curves_join_the_epochs_that_measured_the_metric():
    """Collapse metrics every few epochs (eval.collapse_every): the curve joins the
    measured epochs instead of leaving isolated markers; a null value still is a gap."""
    recs = records(4)
    for r in recs[1:3]:  # epochs 2 and 3 measured accuracy only
        r["train"] = {k: v for k, v in r["train"].items() if k != "collapse"}
        r["test"] = {k: v for k, v in r["test"].items() if k != "collapse"}
    recs[3]["test"] = dict(recs[3]["test"], collapse=dict(recs[3]["test"]["collapse"], nc1=None))
    nc1 = plot_collapse({"run": recs}).axes[0]
    train, test = nc1.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 4])
    np.testing.assert_allclose(train.get_ydata(), [1.0, 0.25])
    np.testing.assert_array_equal(test.get_xdata(), [1, 4])
    assert np.isnan(test.get_ydata()[1])  # measured, but null: a gap


def test_report_names_the_few_shot_classes_of_the_run(digits_run, tmp_path, monkeypatch):
    from neuralcollapse.report import writer

    run = copy_run(digits_run, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["class_names"] == [str(k) for k in range(10)]  # the trainer saves them
    names = [f"digit-{k}" for k in range(10)]
    (run / "summary.json").write_text(json.dumps(dict(summary, class_names=names)))
    seen = {}

    def spy(points, **kwargs):
        seen.update(kwargs)
        return plot_per_class_accuracy(points, **kwargs)

    monkeypatch.setattr(writer, "plot_per_class_accuracy", spy)
    text = write_report([run]).read_text()
    label = read_run(run).label
    counts = read_run(run).records[-1]["train"]["collapse"]["class_counts"]
    few = [k for k in range(10) if counts[k] < 20]  # eval.few = 20 in the default recipe
    assert few and sorted(seen["labelled"][label]) == few
    assert seen["class_names"] == {label: names}
    assert "labelled by name" in text and "fewer than 20 training images" in text
    assert "left out of the colour scale" in text  # the similarity caption


def test_few_shot_rule_matches_shot_groups():
    from neuralcollapse.data import shot_groups
    from neuralcollapse.report.plots import few_shot_classes

    counts = [500, 120, 100, 40, 20, 19, 3, 0]
    expected = shot_groups(counts, many=100, few=20).few.tolist()
    assert sorted(few_shot_classes(counts, 20)) == sorted(expected)
    assert few_shot_classes(counts, 20) == [7, 6, 5]  # rarest first


@pytest.mark.parametrize(
    ("limits", "ticks"),
    [
        ((0.04, 0.33), [0.05, 0.1, 0.2]),  # 1-2-5 multiples
        ((0.316, 0.518), [0.4, 0.5]),  # too short for 1-2-5: every multiple
        ((0.0654, 0.167), [0.07, 0.08, 0.09, 0.1]),
        ((0.01176, 0.01837), [0.012, 0.014, 0.016, 0.018]),  # shorter: round values
    ],
)
def test_log_axis_ticks_are_plain_and_without_minor_ticks(limits, ticks):
    from matplotlib.figure import Figure

    from neuralcollapse.report.plots import plain_log_ticks

    ax = Figure().add_subplot()
    ax.set_yscale("log")
    ax.set_ylim(*limits)
    plain_log_ticks(ax.yaxis, limits)
    np.testing.assert_allclose(ax.yaxis.get_majorticklocs(), ticks, rtol=1e-12)
    assert len(ax.yaxis.get_minorticklocs()) == 0
    labels = ax.yaxis.get_major_formatter().format_ticks(ax.yaxis.get_majorticklocs())
    assert labels == [f"{t:g}" for t in ticks]  # 0.2, not 2 x 10^-1


def test_round_ticks_are_inside_the_limits_and_few():
    from neuralcollapse.report.plots import round_ticks

    assert round_ticks(-0.45, 31.45, most=5) == [0, 10, 20, 30]
    assert round_ticks(0.95, 2.05, most=5) == [1, 2]
    assert round_ticks(-0.5, 9.5, most=10) == list(range(10))
    assert round_ticks(-0.5, 99.5, most=10) == list(range(0, 100, 10))
    assert round_ticks(3.0, 1.0, most=4) == [] and round_ticks(0, float("nan"), most=4) == []
    for high in (7, 13, 55, 180, 999):
        ticks = round_ticks(0.0, float(high), most=6)
        assert 1 <= len(ticks) <= 6 and all(0 <= t <= high for t in ticks)
    with pytest.raises(ValueError, match="most"):
        round_ticks(0, 1, most=0)


@pytest.mark.parametrize("module", ["neuralcollapse.report", "neuralcollapse.ufm.plots"])
def test_importing_the_report_does_not_import_matplotlib(module):
    code = f"import sys, {module}; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("plot", "args"),
    [
        (plot_loss, ({},)),
        (plot_loss, ({"a": [{"epoch": 1, "train_loss": None}]},)),
        (plot_accuracy, ({"a": [{"epoch": 1}]},)),
        (plot_collapse, ({"a": []},)),
        (plot_hierarchy, ({"a": records(2)},)),
        (plot_per_class_accuracy, ({"a": ([1, 2], [None, None])},)),
        (plot_similarity, (None, None)),
    ],
)
def test_plot_functions_refuse_empty_input(plot, args):
    with pytest.raises(ValueError, match="no|nothing"):
        plot(*args)


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_figures_save_without_a_display(fmt, magic, tmp_path):
    path = tmp_path / f"f.{fmt}"
    plot_accuracy({"run": records()}).savefig(path, format=fmt)
    assert path.read_bytes().startswith(magic)


# ----------------------------------------------------------------------- real runs


def train(run_dir: Path, *overrides: str, recipe: str | None = None) -> Path:
    config = load_config(resolve_config_path(recipe), [*NO_FILES, *overrides])
    Trainer(config, run_dir).fit()
    return run_dir


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    """The default recipe, 2 epochs (a few seconds)."""
    return train(tmp_path_factory.mktemp("runs") / "digits", "train.epochs=2")


@pytest.fixture(scope="module")
def hier_run(tmp_path_factory) -> Path:
    return train(
        tmp_path_factory.mktemp("runs") / "hier", "train.epochs=2", recipe="hier_mixture_haframe"
    )


def copy_run(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("report*"))
    return target


def embedded_images(text: str) -> list[tuple[str, bytes]]:
    return [
        (mime, base64.b64decode(data))
        for mime, data in re.findall(r'<img src="data:([^;]+);base64,([^"]+)"', text)
    ]


def notes(text: str) -> list[str]:
    return re.findall(r'<p class="note">(.*?)</p>', text)


def test_report_of_default_run_is_self_contained(digits_run, tmp_path):
    run = copy_run(digits_run, tmp_path)
    path = write_report([run])
    assert path == run / "report.html"
    text = path.read_text()
    files = {p.stem: p for p in (run / "report_figures").iterdir()}
    assert set(files) == DIGITS_FIGURES
    images = embedded_images(text)
    assert len(images) == len(files)
    # The embedded images are the very files saved beside the page.
    assert {data for _, data in images} == {p.read_bytes() for p in files.values()}
    assert all(mime == "image/png" and data.startswith(b"\x89PNG") for mime, data in images)
    # Nothing that could reach the network or run code.
    assert "<script" not in text.lower() and "<link" not in text.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for heading in (
        "Summary",
        "Training curves",
        "Accuracy per class",
        "Class geometry",
        "Configuration",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert "digits_lt" in text and "final" in text
    assert any("no class hierarchy" in n for n in notes(text))
    assert path.stat().st_mode & 0o044  # readable beyond its owner, like the run's files


def test_summary_table_shows_best_and_validation_rows_only_when_there(digits_run, tmp_path):
    run = copy_run(digits_run, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    final = summary["final"]
    chosen = dict(
        summary,
        final=dict(final, val=dict(final, top1=0.5)),
        best=dict(final, split="val", metric="top1", epoch=1),
        best_epoch=1,
    )
    (run / "summary.json").write_text(json.dumps(chosen))
    text = write_report([run]).read_text()
    assert "best (epoch 1, on val top1)" in text and "final, validation split" in text
    assert "<td>50.0</td>" in text  # the validation row's top-1
    assert not any("no best epoch" in n for n in notes(text))
    rule = "no validation split to choose on: set data.val_fraction or data.val_list"
    without_val = {k: v for k, v in final.items() if k != "val"}  # a run with no val split
    (run / "summary.json").write_text(
        json.dumps(dict(summary, final=without_val, best=None, best_epoch=None, best_rule=rule))
    )
    text = write_report([run]).read_text()
    assert "<td>best (epoch" not in text and "final, validation split" not in text
    assert any(f"no best epoch: {rule}" in n for n in notes(text))


def test_class_geometry_comes_from_the_run_files(digits_run):
    run = read_run(digits_run)
    state = load_checkpoint(digits_run / "checkpoints" / "last.pt")
    frame = state["model"]["head.frame"].double().numpy()
    np.testing.assert_allclose(run.frame, frame)
    assert run.class_means.shape == frame.shape and np.isfinite(run.class_means).all()
    assert run.frame_kind == "fixed frame (etf)" and run.checkpoint_epoch == 2 and not run.notes
    # Centred by the sample-weighted global mean, as NC2 centres them.
    weights = np.asarray(run.records[-1]["test"]["collapse"]["class_counts"])
    np.testing.assert_allclose(weights @ run.class_means, 0.0, atol=1e-9)
    # Trained features lean towards their own frame row more than towards any other.
    cos = cosine_matrix(np.concatenate([run.class_means, frame]))[: len(frame), len(frame) :]
    assert (cos.argmax(axis=1) == np.arange(len(frame))).mean() >= 0.8


def test_report_needs_no_data_and_no_model(tmp_path):
    """Train on files, delete them and the checkpoints: the report still has every section."""
    from test_train import write_cifar_standin

    root = tmp_path / "data"
    write_cifar_standin(root, "cifar10", per_class=6)
    run = train(
        tmp_path / "run",
        "data.name=cifar10",
        f"data.root={root}",
        "data.imbalance_ratio=1",
        "model.name=small_cnn",
        "train.epochs=2",
        "train.batch_size=16",
    )
    shutil.rmtree(root)
    shutil.rmtree(run / "checkpoints")
    text = write_report([run]).read_text()
    for heading in ("Summary", "Training curves", "Accuracy per class", "Class geometry"):
        assert f"<h2>{heading}</h2>" in text
    assert (run / "report_figures" / "similarity.png").is_file()
    assert not any("could not" in n or "geometry.npz" in n for n in notes(text))


def test_report_with_hierarchy(hier_run, tmp_path):
    out = tmp_path / "h.html"
    text = write_report([hier_run], out).read_text()
    assert (tmp_path / "h_figures" / "hierarchy.png").is_file()
    assert "<h2>Hierarchy</h2>" in text and "mistake severity" in text.lower()
    assert not any("hierarchy" in n for n in notes(text))
    final = read_run(hier_run).records[-1]["test"]["hierarchical"]
    assert f"<td>{final['hier_dist@5']:.3g}</td>" in text.split("<h2>Hierarchy</h2>")[1]


def test_several_runs_overlay_and_compare(digits_run, hier_run, tmp_path):
    out = write_report([digits_run, hier_run], tmp_path / "cmp.html", image_format="svg")
    text = out.read_text()
    names = {p.name for p in (tmp_path / "cmp_figures").iterdir()}
    assert {
        "loss.svg",
        "collapse.svg",
        "hierarchy.svg",
        "similarity_digits.svg",
        "similarity_hier.svg",
    } <= names
    assert all(mime == "image/svg+xml" for mime, _ in embedded_images(text))
    assert "<h2>Comparison</h2>" in text
    table = text.split("<h2>Comparison</h2>")[1].split("</section>")[0]
    for run in (digits_run, hier_run):
        # The facts row, the final row, a final validation row when the run held one
        # out, and a best row when the run chose a best epoch.
        summary = json.loads((run / "summary.json").read_text())
        rows = 2 + ("val" in summary["final"]) + isinstance(summary["best"], dict)
        assert table.count(f"<tr><td>{run.name}</td>") == rows
    # Runs with the same directory name stay apart in legends and tables.
    same = write_report(
        [digits_run, copy_run(digits_run, tmp_path, "digits")],
        tmp_path / "same.html",
    )
    labels = re.findall(r"<tr><td>([^<]+)</td><td>digits</td>", same.read_text())
    assert len(labels) == len(set(labels)) == 2 and all(
        label.endswith("/digits") for label in labels
    )


def test_interrupted_run_leaves_sections_out_with_notes(digits_run, tmp_path):
    run = copy_run(digits_run, tmp_path)
    (run / "summary.json").unlink()
    last = (run / "metrics.jsonl").read_text().splitlines()[-1]  # fully evaluated
    (run / "metrics.jsonl").write_text(last + "\n" + last[:40])  # cut short mid-line
    (run / "geometry.npz").unlink()
    text = write_report([run]).read_text()
    found = notes(text)
    assert any("no readable summary.json" in n for n in found)
    assert any("1 unreadable line" in n for n in found)
    assert any("only 1 evaluated epoch" in n for n in found)
    assert any("no readable geometry.npz" in n for n in found)
    assert "last evaluated (epoch 2)" in text
    # Curves need two epochs; per-class accuracy needs only one.
    assert {p.stem for p in (run / "report_figures").iterdir()} == {"per_class_accuracy"}


def test_nan_and_infinity_in_metrics_are_gaps(digits_run, tmp_path):
    run = copy_run(digits_run, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    # Runs of older versions wrote NaN and Infinity tokens; they still read as gaps.
    lines[0] = re.sub(r'"nc1": [0-9.e-]+', '"nc1": NaN', lines[0])
    lines[1] = re.sub(r'"train_loss": [0-9.e-]+', '"train_loss": Infinity', lines[1])
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    records = read_run(run).records
    epochs, loss = series(records, "train_loss")
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and list(epochs) == [1.0, 2.0]
    assert np.isnan(series(records, "test.collapse.nc1")[1][0])
    assert np.isnan(series([{"epoch": 1, "x": True}], "x")[1]).all()
    write_report([run])
    assert {p.stem for p in (run / "report_figures").iterdir()} == DIGITS_FIGURES


def test_run_without_metrics_still_reports(tmp_path, digits_run):
    run = tmp_path / "bare"
    run.mkdir()
    shutil.copy(digits_run / "config.yaml", run)
    text = write_report([run]).read_text()
    assert any("no metrics.jsonl" in n for n in notes(text)) and embedded_images(text) == []


def test_bad_input_raises_clear_errors(tmp_path, digits_run):
    with pytest.raises(ValueError, match="no run directories"):
        write_report([])
    with pytest.raises(ValueError, match="image format"):
        write_report([digits_run], tmp_path / "x.html", image_format="jpg")
    with pytest.raises(ValueError, match="does not exist"):
        write_report([tmp_path / "missing"])
    with pytest.raises(ValueError, match="not a run directory"):
        write_report([tmp_path])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        write_report([tmp_path / "file"])
    with pytest.raises(ValueError, match="is a directory"):
        write_report([digits_run], tmp_path)


def test_report_command(digits_run, tmp_path, capsys):
    # Passes once "report" is registered in neuralcollapse.cli.COMMANDS.
    out = tmp_path / "cli.html"
    code = main(["report", str(digits_run), "--out", str(out), "--format", "svg"])
    assert code == 0 and capsys.readouterr().out.strip() == f"wrote {out}"
    assert (tmp_path / "cli_figures" / "loss.svg").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_report_command_module_directly(digits_run, tmp_path, capsys):
    import argparse

    from neuralcollapse.commands import report

    parser = argparse.ArgumentParser()
    report.add_parser(parser.add_subparsers())
    args = parser.parse_args(["report", str(digits_run), "--out", str(tmp_path / "r.html")])
    assert args.image_format == "png"
    assert report.run(args) == 0 and (tmp_path / "r.html").is_file()
    assert "wrote" in capsys.readouterr().out


# ---------------------------------------------------------------- in a real browser

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
)
# Inserted in a copy of the page only: records script errors, blocked requests and images
# that fail to load, then writes the verdict into the DOM once everything has loaded.
PROBE = """<script>
window.__nc = [];
addEventListener('securitypolicyviolation', e => __nc.push('blocked: ' + e.blockedURI));
addEventListener('error', e => __nc.push('error: ' + (e.message || e.target.src)), true);
addEventListener('load', () => {
  const images = [...document.images];
  const bad = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  const out = document.createElement('pre');
  out.id = 'nc-check';
  out.textContent = JSON.stringify({images: images.length, bad: bad, errors: __nc});
  document.body.appendChild(out);
});
</script>"""


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> tuple[str | None, str]:
    """A headless-capable Chromium on PATH (or at $NC_CHROMIUM); else None and why not.
    Nothing is installed here: `make chromium` (root, apt) is the explicit step."""
    override = os.environ.get("NC_CHROMIUM")
    if override:
        usable = Path(override).is_file() and os.access(override, os.X_OK)
        return (override, "") if usable else (None, f"NC_CHROMIUM={override} is not executable")
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found, ""
    return None, f"none of {', '.join(CHROMIUM_NAMES)} is on PATH"


@pytest.fixture(scope="module")
def chromium() -> str:
    path, why = find_chromium()
    if path is None:
        pytest.skip(
            f"headless Chromium unavailable: {why} (install it with `make chromium`, which "
            "uses apt-get as root, or point NC_CHROMIUM at a Chromium binary)"
        )
    return path


def run_chromium(chromium: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_report_loads_in_headless_chromium(chromium, digits_run, tmp_path):
    page = write_report([digits_run], tmp_path / "report.html")
    text = page.read_text()
    # The probe needs inline scripts, which the report's policy forbids: allow only those.
    probed = text.replace(
        "style-src 'unsafe-inline'", "style-src 'unsafe-inline'; script-src 'unsafe-inline'", 1
    )
    probed = probed.replace("</title>", "</title>\n" + PROBE, 1)
    probe_page = tmp_path / "probed.html"
    probe_page.write_text(probed)
    result = run_chromium(chromium, tmp_path, "--dump-dom", probe_page.as_uri())
    match = re.search(r'<pre id="nc-check">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the page did not finish loading:\n{result.stderr[-2000:]}"
    check = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check == {"images": len(DIGITS_FIGURES), "bad": [], "errors": []}
    # Chromium logs every console message, CSP violation and uncaught error as CONSOLE.
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    shot = tmp_path / "shot.png"
    run_chromium(
        chromium,
        tmp_path,
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        "--hide-scrollbars",
        page.as_uri(),
    )
    from PIL import Image

    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape == (1600, 1200) and pixels.std() > 10  # drawn, not a blank page


def test_learned_classifier_geometry_is_saved_for_learnable_heads(tmp_path):
    run_dir = train(
        tmp_path / "learnable",
        "train.epochs=1",
        "head.kind=learnable",
        "head.neck=none",
        "loss.name=ce",
    )
    run = read_run(run_dir)
    weight = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]["head.classifier.weight"]
    assert run.frame_kind == "learned classifier (learnable)"
    np.testing.assert_allclose(run.frame, weight.double().numpy())


def test_crafted_run_files_cannot_inject_html(digits_run, tmp_path):
    run = copy_run(digits_run, tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    summary["versions"] = {"torch": '<script>alert("x")</script>', "<img src=x>": "1"}
    summary["best_epoch"] = "<b>2</b>"
    (run / "summary.json").write_text(json.dumps(summary))
    config = (run / "config.yaml").read_text().replace("name: digits_lt", "name: <i>x</i>")
    (run / "config.yaml").write_text(config)
    text = write_report([run]).read_text()
    assert "<script" not in text and "<img src=x>" not in text and "<b>2</b>" not in text
    assert "&lt;script&gt;" in text and "form-action 'none'" in text


def test_shot_bounds_drawn_only_when_all_runs_share_them(tmp_path):
    from neuralcollapse.report.runs import RunData
    from neuralcollapse.report.writer import _shot_thresholds

    def run(split: str, many: int, few: int) -> RunData:
        config = {"eval": {"shot_split": split, "many": many, "few": few}}
        return RunData(path=tmp_path, label=split, config=config)

    assert _shot_thresholds([run("count", 100, 20), run("count", 100, 20)]) == (100.0, 20.0)
    assert _shot_thresholds([run("count", 100, 20), run("count", 50, 20)]) is None
    assert _shot_thresholds([run("index", 100, 20)]) is None
