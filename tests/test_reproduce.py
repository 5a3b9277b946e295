"""``neuralcollapse reproduce``: verdict rules by hand, and every claim end to end (tiny)."""

from __future__ import annotations

import dataclasses
import json
import math
import statistics

import pytest

from neuralcollapse.claims import CLAIMS, epochs_to_fraction, paired_verdict
from neuralcollapse.cli import main


def test_paired_verdict_follows_its_written_rule():
    better = [0.02, 0.03, 0.025, 0.04, 0.03]
    mean = statistics.fmean(better)
    se = statistics.stdev(better) / math.sqrt(5)
    assert mean / se > 2
    assert paired_verdict(better)[0] == "reproduced"
    assert paired_verdict([-d for d in better])[0] == "not reproduced"
    assert paired_verdict([0.01, -0.02, 0.015, -0.01])[0] == "inconclusive"
    assert paired_verdict([0.5])[0] == "inconclusive"  # one seed decides nothing
    # "Lower is better" flips the direction; identical differences have SE 0.
    assert paired_verdict([-2.0, -2.0, -2.0], higher_is_better=False)[0] == "reproduced"
    # "As well as" within a margin.
    assert paired_verdict([0.001, -0.002, 0.0], margin=0.01)[0] == "reproduced"
    assert paired_verdict([-0.05, -0.06, -0.055], margin=0.01)[0] == "not reproduced"
    assert "t > 2" in paired_verdict(better)[1]


def test_epochs_to_fraction():
    records = [{"epoch": e, "test": {"top1": v}} for e, v in enumerate([0.1, 0.5, 0.85, 0.9], 1)]
    assert epochs_to_fraction(records, 0.9) == 3  # 0.85 >= 0.9 * 0.9
    assert epochs_to_fraction([{"epoch": 1}]) is None


def test_reproduce_every_claim_end_to_end(tmp_path, capsys):
    out = tmp_path / "rep"
    code = main(["reproduce", "--quick", "--seeds", "2", "--epochs", "2", "--out", str(out)])
    assert code == 0
    payload = json.loads((out / "reproduce.json").read_text())
    rows = payload["rows"]
    assert {row["claim_id"] for row in rows} == set(CLAIMS)
    for row in rows:
        assert {"paper", "claim", "setting", "paper_value", "measured", "verdict", "rule"} <= set(
            row
        )
        assert row["verdict"] in ("reproduced", "not reproduced", "inconclusive")
    assert payload["mode"] == "quick" and payload["seeds"] == 2
    markdown = (out / "reproduce.md").read_text()
    assert markdown.count("\n| ") == len(rows) + 1  # header + one line per row
    html = (out / "reproduce.html").read_text()
    assert "<script" not in html and "reproduced" in html
    printed = capsys.readouterr().out
    assert "QUICK mode" in printed and "epochs capped at 2" in printed


def test_reproduce_refuses_unknown_claims(capsys):
    assert main(["reproduce", "no-such-claim"]) == 2
    assert "no-such-claim" in capsys.readouterr().err


@pytest.mark.parametrize("claim", ["z21-parameter-saving"])
def test_counted_claim_is_exact(tmp_path, claim):
    assert main(["reproduce", claim, "--out", str(tmp_path)]) == 0
    (row,) = json.loads((tmp_path / "reproduce.json").read_text())["rows"]
    assert row["details"]["learnable"] == 11_181_642 and row["details"]["d_equals_k"] == 8_867_432
    assert row["verdict"] == "reproduced"


def test_tree_mixture_overrides_fit_the_tree_size(tmp_path):
    from neuralcollapse.claims import tree_mixture_overrides

    # 100 leaves: inputs, features and the frame need 100 dimensions (the recipe has 32).
    overrides = tree_mixture_overrides("builtin:cifar100")
    assert "data.dim=100" in overrides
    assert "model.options={in_features: 100, hidden: [200], feature_dim: 100}" in overrides
    small = tmp_path / "tree.csv"
    small.write_text("child,parent\na,root\nb,root\nx,a\ny,a\nz,b\nw,b\n")
    assert "data.dim=32" in tree_mixture_overrides(str(small))  # never below the recipe's


def test_reproduce_refuses_a_bad_hierarchy_before_training(tmp_path, capsys):
    bad = tmp_path / "cycle.csv"
    bad.write_text("child,parent\na,b\nb,a\n")
    out = tmp_path / "rep"
    assert main(["reproduce", "--hierarchy", str(bad), "--out", str(out)]) == 2
    assert "--hierarchy" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written or trained
    assert main(["reproduce", "--hierarchy", str(tmp_path / "missing.csv")]) == 2


def test_no_few_shot_row_where_no_class_is_few_shot():
    # MNIST-5k at ratio 10 keeps 40..400 images a class: no few-shot group, so there is no
    # few-shot comparison to judge (rather than an "inconclusive" one)
    from types import SimpleNamespace

    from neuralcollapse.claims import Run, Scale, claim_etf_dr_vs_learnable

    def runs(recipe, overrides):
        few = None if recipe == "mnist5k_lt" else 0.5 + 0.01 * len(overrides)
        final = {"top1": 0.9 + 0.001 * len(overrides), "few": few}
        return [Run(summary={"final": final}, records=[]) for _ in range(3)]

    scale = dataclasses.replace(Scale.make(quick=False, seeds=3), mnist_ratios=(10,))
    rows = claim_etf_dr_vs_learnable(SimpleNamespace(scale=scale, runs=runs))
    per_setting = {}
    for row in rows:
        per_setting.setdefault(row.setting.split(",")[0], []).append(row.details["metric"])
    assert per_setting == {
        "digits LT ratio 10": ["top1", "few"],
        "digits LT ratio 50": ["top1", "few"],
        "digits LT ratio 100": ["top1", "few"],
        "MNIST-5k LT ratio 10": ["top1"],
    }
    assert all("no paired values" not in row.measured for row in rows)
