"""End to end: the `neuralcollapse frame` command, in process and as the installed script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralcollapse.cli import main
from neuralcollapse.frames import simplex_etf


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        code = main(list(args))
        raise SystemExit(code)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_etf_prints_geometry(capsys):
    code, out, err = run_cli(capsys, "frame", "etf", "--classes", "10", "--dim", "64")
    assert code == 0 and err == ""
    assert "K=10 classes in d=64 dims, rank 9" in out
    assert "cosine max         -0.1111111" in out


def test_etf_json_and_saved_frames_round_trip(capsys, tmp_path: Path):
    pt, npy = tmp_path / "w.pt", tmp_path / "w.npy"
    code, out, _ = run_cli(
        capsys,
        "frame",
        "etf",
        "--classes",
        "5",
        "--dim",
        "4",
        "--seed",
        "3",
        "--dtype",
        "float64",
        "--json",
        "--out",
        str(pt),
    )
    assert code == 0
    report = json.loads(out)
    assert report["num_classes"] == 5 and report["rank"] == 4 and report["seed"] == 3
    assert report["max_cosine"] == pytest.approx(-0.25, abs=1e-12)
    assert report["saved_to"] == str(pt)
    saved = torch.load(pt)
    assert torch.equal(saved, simplex_etf(5, 4, seed=3, dtype=torch.float64))

    run_cli(
        capsys, "frame", "etf", "--classes", "5", "--dim", "4", "--seed", "3", "--out", str(npy)
    )
    np.testing.assert_array_equal(np.load(npy), simplex_etf(5, 4, seed=3).numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npy", "w.pt"]  # no temp files left


def test_spread_reports_bound(capsys):
    code, out, _ = run_cli(
        capsys, "frame", "spread", "--classes", "12", "--dim", "3", "--steps", "200", "--json"
    )
    report = json.loads(out)
    assert code == 0
    assert report["coherence_bound"] > 0
    assert report["max_cosine"] >= report["coherence_bound"]
    assert report["coherence_gap"] == pytest.approx(
        report["max_cosine"] - report["coherence_bound"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frame", "etf", "--classes", "10", "--dim", "5"], "no simplex ETF of num_classes=10"),
        (["frame", "etf", "--classes", "1", "--dim", "5"], "num_classes must be >= 2"),
        (["frame", "etf", "--classes", "abc", "--dim", "5"], "invalid int value: 'abc'"),
        (["frame", "hexagon", "--classes", "3", "--dim", "5"], "invalid choice: 'hexagon'"),
        (["frame", "etf", "--classes", "3"], "etf needs --dim"),
        (["frame", "haframe", "--gamma", "2"], "haframe needs --hierarchy FILE"),
        (["frame", "etf", "--classes", "3", "--dim", "3", "--out", "w.txt"], "must end in .pt or"),
        (["frame", "spread", "--classes", "3", "--dim", "3", "--steps", "0"], "steps must be >= 1"),
        (
            ["frame", "etf", "--classes", "3", "--dim", "3", "--out", "/no/such/dir/w.pt"],
            "does not exist",
        ),
    ],
)
def test_bad_values_give_one_line_and_exit_2(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_installed_script_runs_the_default_command():
    script = Path(sys.executable).with_name("neuralcollapse")
    if not script.exists():
        pytest.skip(f"console script not installed beside {sys.executable}")
    done = subprocess.run(
        [str(script), "frame", "etf", "--classes", "10", "--dim", "64"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rank 9" in done.stdout
    bad = subprocess.run(
        [str(script), "frame", "etf", "--classes", "10", "--dim", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "spread_frame" in bad.stderr


def test_python_dash_m_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "neuralcollapse", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("neuralcollapse ")
