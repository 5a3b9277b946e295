"""The GPU suite's argument handling and its refusal without CUDA (it runs on GPUs only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def test_unknown_part_is_refused(tmp_path):
    done = _run("--out", str(tmp_path), "--parts", "train,nope")
    assert done.returncode == 2 and "--parts takes a subset" in done.stderr


def test_out_is_required():
    done = _run()
    assert done.returncode == 2 and "--out" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: no refusal")
def test_refuses_without_cuda_in_one_line(tmp_path):
    done = _run("--out", str(tmp_path / "gpu"), "--quick")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not (tmp_path / "gpu").exists()


def test_parse_args_quick_and_subset(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_suite
    finally:
        sys.path.remove(str(SCRIPT.parent))
    args = gpu_suite.parse_args(["--out", str(tmp_path), "--parts", "metrics, ufm", "--quick"])
    assert args.parts == ["metrics", "ufm"] and args.repeats == 2 and args.steps == 20
