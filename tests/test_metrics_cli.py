"""End-to-end tests of ``neuralcollapse metrics``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralcollapse.cli import main
from neuralcollapse.metrics import collapse_report

K, D = 5, 7


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    means = 3.0 * torch.randn(K, D, generator=gen)
    labels = torch.randint(0, K, (150,), generator=gen)
    features = means[labels] + torch.randn(150, D, generator=gen)
    linear = torch.nn.Linear(D, K)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(K, D, generator=gen))
        linear.bias.copy_(torch.randn(K, generator=gen))
    return features, labels, linear


def test_pt_file_with_linear_state_dict_prints_table_and_writes_json(tmp_path, data, capsys):
    features, labels, linear = data
    torch.save({"features": features, "labels": labels}, tmp_path / "f.pt")
    torch.save(linear.state_dict(), tmp_path / "head.pt")
    out = tmp_path / "report.json"
    code = main(
        [
            "metrics",
            str(tmp_path / "f.pt"),
            "--classifier",
            str(tmp_path / "head.pt"),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "NC1  tr(Sw Sb^+)/K" in printed and "NC4  NCC mismatch" in printed
    report = json.loads(out.read_text())
    expected = collapse_report(features, labels, classifier=linear.weight, bias=linear.bias)
    assert report["file"] == str(tmp_path / "f.pt")
    for name, value in expected.to_dict().items():
        assert report[name] == (pytest.approx(value) if isinstance(value, float) else value)
    assert f"{expected.nc1:.6g}" in printed


def test_npz_file_with_separate_bias_and_balanced_mean(tmp_path, data):
    features, labels, linear = data
    labels = torch.where(labels == 4, 3, labels)  # class 4 absent, K = 5 from the classifier
    np.savez(tmp_path / "f.npz", features=features.numpy(), labels=labels.numpy().astype(np.int32))
    np.save(tmp_path / "w.npy", linear.weight.detach().numpy())
    torch.save(linear.bias.detach(), tmp_path / "b.pt")
    out = tmp_path / "r.json"
    code = main(
        [
            "metrics",
            str(tmp_path / "f.npz"),
            "--classifier",
            str(tmp_path / "w.npy"),
            "--bias",
            str(tmp_path / "b.pt"),
            "--global-mean",
            "balanced",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["global_mean"] == "balanced" and report["absent_classes"] == [4]
    expected = collapse_report(
        features, labels, classifier=linear.weight, bias=linear.bias, global_mean="balanced"
    )
    assert report["nc4_ncc_mismatch"] == pytest.approx(expected.nc4_ncc_mismatch)
    assert report["nc1"] == pytest.approx(expected.nc1, rel=1e-12)


def test_without_classifier_leaves_classifier_rows_empty(tmp_path, data, capsys):
    features, labels, _ = data
    torch.save({"features": features, "labels": labels}, tmp_path / "f.pt")
    assert main(["metrics", str(tmp_path / "f.pt"), "--num-classes", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(l for l in lines if "NC3  self-duality" in l)
    assert line.split()[-1] == "-"
    assert next(l for l in lines if l.startswith("absent classes")).endswith("5, 6")


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["missing.pt"], "does not exist"),
        (None, ["f.csv"], "must end in one of"),
        ({"feats": 1}, ["f.pt"], "no 'features' entry"),
        ({"features": torch.zeros(4, 2)}, ["f.pt"], "no 'labels' entry"),
        ({"features": torch.zeros(4, 2), "labels": torch.zeros(4)}, ["f.pt"], "integer"),
        (
            {"features": torch.zeros(4, 2), "labels": torch.zeros(4, dtype=torch.long)},
            ["f.pt"],
            "at least two classes",
        ),
        (
            {"features": torch.randn(4, 2), "labels": torch.tensor([0, 1, 0, 1])},
            ["f.pt", "--bias", "f.pt"],
            "--bias needs --classifier",
        ),
        (
            {"features": torch.randn(4, 2), "labels": torch.tensor([0, 1, 0, 1])},
            ["f.pt", "--classifier", "f.pt"],
            "no 'weight' entry",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch, setup, args, message):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        torch.save(setup, tmp_path / "f.pt")
    assert main(["metrics", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neuralcollapse metrics: error:") and message in err
    assert len(err.splitlines()) == 1


def test_installed_script_runs(tmp_path, data):
    script = Path(sys.executable).with_name("neuralcollapse")
    if not script.exists():
        pytest.skip("the neuralcollapse script is not installed next to this interpreter")
    features, labels, _ = data
    torch.save({"features": features, "labels": labels}, tmp_path / "f.pt")
    done = subprocess.run(
        [str(script), "metrics", str(tmp_path / "f.pt"), "--json", str(tmp_path / "o.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "NC1" in done.stdout
    assert json.loads((tmp_path / "o.json").read_text())["num_samples"] == 150
    bad = subprocess.run(
        [str(script), "metrics", str(tmp_path / "nope.pt")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr
