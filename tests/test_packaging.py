"""The package as a user installs it: ``python -m build`` makes a wheel and an sdist, the
wheel goes into a fresh virtual environment, and the command and the library work from a
folder outside the checkout.

Offline and quick: the build runs without isolation (the build backend, setuptools, comes
from the dev environment), and the fresh environment sees the already installed
dependencies (torch, NumPy, PyYAML, safetensors and what they need, found from the
wheel's own Requires-Dist) through a .pth file pointing at a folder of links to them,
and nothing else of the dev environment (not its editable neuralcollapse). pip then
installs the wheel with ``--no-index``: a dependency that the wheel declares but the
environment lacks fails the install instead of being downloaded, and the CPU torch is
kept (the test checks its version inside the new environment).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Not copied into the build folder: environments, caches, outputs.
SKIP = (".venv", ".git", "runs", "build", "dist", "shared", "out", ".hypothesis", ".ruff_cache")


def _require_build_tools() -> None:
    """``build`` and ``packaging`` come with the dev extra; in CI their absence fails."""
    for module in ("build", "packaging"):
        try:
            __import__(module)
        except ImportError:
            if os.environ.get("CI"):
                raise
            pytest.skip(f"{module} is not installed: pip install 'neuralcollapse[dev]'")


def _run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, args))} failed ({done.returncode}):\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def _source_copy(target: Path) -> Path:
    """The checkout without environments and outputs (the build writes egg-info here)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n in SKIP or n.endswith(".egg-info")}
        return skipped | {n for n in names if n in ("__pycache__", ".pytest_cache")}

    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    return target


def _dependency_links(wheel: Path, folder: Path) -> list[str]:
    """Link into ``folder`` every installed distribution the wheel needs (its
    Requires-Dist without extras, and theirs, recursively); returns their names."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    pending = [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    site = Path(sysconfig.get_paths()["purelib"])
    seen: set[str] = set()
    folder.mkdir()
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name)
        if key in seen:
            continue
        seen.add(key)
        dist = importlib.metadata.distribution(requirement.name)
        tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and source.parent == site and not (folder / top).exists():
                (folder / top).symlink_to(source)
        pending.extend(dist.requires or [])
    return sorted(seen)


@pytest.mark.timeout(600)
def test_wheel_and_sdist_install_into_a_fresh_environment(tmp_path):
    _require_build_tools()
    import torch

    source = _source_copy(tmp_path / "source")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), "."], source)
    (wheel,) = dist.glob("neuralcollapse-*.whl")
    (sdist,) = dist.glob("neuralcollapse-*.tar.gz")

    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
    for needed in (
        "neuralcollapse/configs/digits_lt.yaml",
        "neuralcollapse/hierarchies/cifar100.csv",
        "neuralcollapse/export.py",
        "neuralcollapse/integrations/lightning.py",
        "neuralcollapse/integrations/torchmetrics.py",
    ):
        assert needed in files, needed
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("src/neuralcollapse/configs/digits_lt.yaml") for m in members)
    assert any(m.endswith("pyproject.toml") for m in members)

    # A fresh environment that sees only the wheel's dependencies, already installed.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    linked = _dependency_links(wheel, tmp_path / "deps")
    assert {"torch", "numpy", "pyyaml", "safetensors"} <= set(linked)
    target_site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
    ).stdout.strip()
    Path(target_site, "dependencies.pth").write_text(f"{tmp_path / 'deps'}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index"]
    _run([*pip, "--no-cache-dir", "--find-links", str(dist), "neuralcollapse"], tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    helped = _run([str(venv / "bin" / "neuralcollapse"), "train", "--help"], outside)
    assert "usage: neuralcollapse train" in helped.stdout
    check = _run(
        [
            str(python),
            "-c",
            "import neuralcollapse as nc, torch\n"
            "from neuralcollapse.train.recipes import resolve_config_path\n"
            "head = nc.heads.FixedFrameHead(6, nc.frames.simplex_etf(4, 3, seed=0))\n"
            "print(nc.__file__)\n"
            "print(torch.__version__)\n"
            "print(resolve_config_path('digits_lt'))\n"
            "print(tuple(head(torch.randn(2, 6)).shape))\n",
        ],
        outside,
    )
    location, torch_version, recipe, shape = check.stdout.strip().splitlines()
    assert Path(location).is_relative_to(target_site)  # the wheel's copy, not the checkout
    assert torch_version == torch.__version__  # the CPU torch was kept
    assert Path(recipe).is_relative_to(target_site) and shape == "(2, 4)"
