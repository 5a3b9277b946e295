"""benchmarks/RESULTS.md's generated tables equal what benchmarks/render_results.py makes
of the tracked result files (a hand-edited or stale number fails here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "render_results.py"


def _renderer():
    spec = importlib.util.spec_from_file_location("render_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_md_generated_tables_are_current():
    module = _renderer()
    text = module.RESULTS_MD.read_text()
    assert module.render(text) == text, "run: python benchmarks/render_results.py"


def test_every_result_file_has_a_renderer_and_a_section():
    module = _renderer()
    text = module.RESULTS_MD.read_text()
    files = sorted(module.RESULTS_DIR.glob("*.json"))
    if not files:
        pytest.skip("no tracked result file yet")
    for path in files:
        assert path.stem in module.RENDERERS, f"{path.name} has no renderer"
        assert f"<!-- BEGIN generated: {path.stem} -->" in text, f"{path.stem}: no section"
        info = json.loads(path.read_text())["info"]
        for key in ("command", "commit", "machine", "date_utc"):
            assert info.get(key), f"{path.name}: info lacks {key}"


def test_a_changed_number_is_caught():
    module = _renderer()
    sample = {
        "info": {
            "command": "python benchmarks/bench_collapse_report.py",
            "date_utc": "2026-12-06 00:00",
            "commit": "abc1234",
            "machine": "2 CPUs",
            "torch": "2.13.0",
            "rounds": 3,
        },
        "results": {
            "1": {
                "claim": [
                    {
                        "N": 10,
                        "d": 2,
                        "K": 2,
                        "methods": {
                            name: {"best_s": 1.0, "median_s": 1.0, "median_ratio_vs_floor": 1.0}
                            for name in ("floor", "floor+W", "ours")
                        },
                    }
                ]
            }
        },
    }
    table = "\n".join(module.render_collapse_report(sample))
    assert "| 1 | 10 | 2 | 2 | 1.000 | 1.000 | 1.00x | 1.00x | — | — |" in table
    assert "abc1234" in table
