"""Every script in examples/ runs as ``python examples/<name>.py --small`` would, on tiny
data, and prints what it promises. The scripts run in this process (``runpy``), with
``--small --out <tmp>``, from an empty working directory; a script whose extra is not
installed is skipped, naming it."""

from __future__ import annotations

import csv
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NEEDS = {
    "plain_loop": ("sklearn",),
    "lightning_callback": ("sklearn", "lightning"),
    "torchmetrics_collection": ("sklearn", "torchmetrics"),
    "export_and_predict": ("sklearn",),
    "longtail_baselines": ("sklearn",),
}


def run_example(name: str, tmp_path: Path, monkeypatch, capsys) -> str:
    for module in NEEDS[name]:
        pytest.importorskip(module, reason=f"examples/{name}.py needs {module} (see README)")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--small", "--out", str(tmp_path / "out")])
    monkeypatch.delitem(sys.modules, "_common", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only contend on a shared machine
    try:
        runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    assert list(work.iterdir()) == []  # everything went to --out
    return capsys.readouterr().out


def test_every_example_is_listed_here_and_in_the_readme():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(NEEDS)
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    assert all(f"examples/{name}.py" in readme for name in scripts)


def test_plain_loop(tmp_path, monkeypatch, capsys):
    out = run_example("plain_loop", tmp_path, monkeypatch, capsys)
    lines = re.findall(r"epoch (\d): top-1 (\S+)  few-shot (\S+)  NC1 (\S+)  NC3 (\S+)", out)
    assert [int(epoch) for epoch, *_ in lines] == [1, 2, 3]
    assert float(lines[-1][1]) > 0.5  # it learns
    assert float(lines[-1][3]) < float(lines[0][3])  # and collapses


def test_lightning_callback(tmp_path, monkeypatch, capsys):
    out = run_example("lightning_callback", tmp_path, monkeypatch, capsys)
    assert re.search(r"validation NC1 \S+, training NC1 \S+", out)
    (metrics,) = (tmp_path / "out" / "lightning").rglob("metrics.csv")
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(1 for row in rows if row.get("nc/train/nc1")) == 2
    assert sum(1 for row in rows if row.get("nc/nc1")) == 2


def test_torchmetrics_collection(tmp_path, monkeypatch, capsys):
    out = run_example("torchmetrics_collection", tmp_path, monkeypatch, capsys)
    values = dict(re.findall(r"^(\S+)\s+(\S+)$", out, re.M))
    assert set(values) == {"acc", "nc1", "nc2_etf_distance_means", "nc3_zhu"}
    assert 0.2 < float(values["acc"]) <= 1.0


def test_export_and_predict(tmp_path, monkeypatch, capsys):
    out = run_example("export_and_predict", tmp_path, monkeypatch, capsys)
    ours = re.search(r"raw test images: top-1 (\S+)", out).group(1)
    theirs = re.search(r"the run's own test top-1:\s+(\S+)", out).group(1)
    assert ours == theirs
    assert (tmp_path / "out" / "exported" / "preprocessor_config.json").is_file()


def test_longtail_baselines(tmp_path, monkeypatch, capsys):
    out = run_example("longtail_baselines", tmp_path, monkeypatch, capsys)
    rows = re.findall(r"^(.+?)\s+(\d+\.\d)\s+(\S+)\s+(\S+)$", out, re.M)
    assert [name.strip() for name, *_ in rows] == [
        "learnable CE",
        "learnable CE + logit adjustment",
        "fixed ETF + DR",
    ]
    assert all(0 < float(top1) <= 100 for _, top1, *_ in rows)
