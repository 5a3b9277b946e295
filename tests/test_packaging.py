"""The package as a user installs it: ``python -m build`` makes a wheel and an sdist, the
wheel goes into a fresh virtual environment with README's install line, and the default
job, the command and the library work from an empty folder outside the checkout.

Offline and quick: the build runs without isolation (the build backend, setuptools, comes
from the dev environment), and the fresh environment sees the already installed
dependencies (torch, NumPy, PyYAML, safetensors, rich and what the extras of README's line
need, found from the wheel's own Requires-Dist) through a .pth file pointing at a folder of
links to them, and nothing else of the dev environment (not its editable neuralcollapse).
pip then installs README's requirement verbatim with ``--no-index --find-links dist`` into
that environment only (``--python``): a dependency that the wheel declares but the
environment lacks fails the install instead of being downloaded, and the CPU torch is
kept (the test checks its version inside the new environment). This is the one pip
install the suite runs (tests/conftest.py refuses any other).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
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


def readme_install_line() -> tuple[str, str]:
    """README's wheel install line (in "Install from a clone or a built wheel") and the
    requirement it passes to pip, exactly as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if re.match(r"pip install '?dist/", line)]
    assert len(lines) == 1, f"README should have one wheel install line, found {lines}"
    line = lines[0].split("  #", 1)[0].strip()
    words = shlex.split(line)
    assert words[:2] == ["pip", "install"] and len(words) == 3, line
    return line, words[2]


def _extras(requirement: str) -> set[str]:
    found = re.findall(r"\[(.*)\]", requirement)
    return {e.strip() for e in found[0].split(",")} if found else set()


def _wanted_requirements(metadata: str, extras: set[str]) -> list[str]:
    """The wheel's Requires-Dist lines that apply with ``extras`` (an extra that names
    the package itself, e.g. ``neuralcollapse[report,digits]``, brings those extras)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    requirements = [
        Requirement(line.split(":", 1)[1].strip())
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]

    def applies(requirement: Requirement) -> bool:
        marker = requirement.marker
        return marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras})

    grew = True
    while grew:
        grew = False
        for requirement in requirements:
            own = canonicalize_name(requirement.name) == "neuralcollapse"
            if own and applies(requirement) and not requirement.extras <= extras:
                extras |= requirement.extras
                grew = True
    return [
        f"{r.name}{r.specifier}"
        for r in requirements
        if canonicalize_name(r.name) != "neuralcollapse" and applies(r)
    ]


def _dependency_links(wheel: Path, folder: Path, extras: set[str] = frozenset()) -> list[str]:
    """Link into ``folder`` every installed distribution the wheel needs with ``extras``
    (its Requires-Dist, and theirs, recursively); returns their names."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    pending = _wanted_requirements(metadata, set(extras))
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
        "neuralcollapse/py.typed",
        "neuralcollapse/integrations/lightning.py",
        "neuralcollapse/integrations/torchmetrics.py",
    ):
        assert needed in files, needed
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("src/neuralcollapse/configs/digits_lt.yaml") for m in members)
    assert any(m.endswith("pyproject.toml") for m in members)

    # README's install line names the wheel as dist/<file>: run it where dist/ is ours.
    _, requirement = readme_install_line()
    assert requirement.startswith(f"dist/{wheel.name}"), (requirement, wheel.name)
    extras = (
        set(re.findall(r"\[(.*)\]", requirement)[0].split(",")) if "[" in requirement else set()
    )

    # A fresh environment that sees only the dependencies of that line, already installed.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    linked = _dependency_links(wheel, tmp_path / "deps", extras)
    assert {"torch", "numpy", "pyyaml", "safetensors", "rich"} <= set(linked)
    target_site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
    ).stdout.strip()
    Path(target_site, "dependencies.pth").write_text(f"{tmp_path / 'deps'}\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index"]
    _run([*pip, "--no-cache-dir", "--find-links", str(dist), requirement], tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    helped = _run([str(venv / "bin" / "neuralcollapse"), "train", "--help"], outside)
    assert "usage: neuralcollapse train" in helped.stdout

    # The default job, as README promises after that line, from an empty folder.
    empty = tmp_path / "empty"
    empty.mkdir()
    trained = _run([str(venv / "bin" / "neuralcollapse"), "train", "train.epochs=1"], empty)
    (run_dir,) = (empty / "runs").iterdir()
    summary = (run_dir / "summary.json").read_text()
    assert '"top1"' in summary and (run_dir / "report.html").is_file(), trained.stdout[-2000:]
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


def test_readme_install_line_brings_what_the_default_job_needs():
    """The extras of README's line cover the default job's data, report, TensorBoard and
    progress bar (the packaging test above then runs it)."""
    import tomllib

    _, requirement = readme_install_line()
    extras = _extras(requirement)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    metadata = "\n".join(
        [f"Requires-Dist: {d}" for d in project["dependencies"]]
        + [
            f'Requires-Dist: {d}; extra == "{extra}"'
            for extra, deps in project["optional-dependencies"].items()
            for d in deps
        ]
    )
    names = {
        re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0] for r in _wanted_requirements(metadata, extras)
    }
    assert {"scikit-learn", "matplotlib", "tensorboard", "tqdm", "rich", "torch"} <= names


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (["apt-get", "install", "-y", "chromium"], "system package manager"),
        ("sudo apt update", "system package manager"),
        (["bash", "-c", "apt-get install -y x"], "system package manager"),
        ([sys.executable, "-m", "pip", "install", "rich"], "pip install outside"),
        (["pip", "install", "--no-index", "x"], "pip install outside"),
    ],
)
def test_the_suite_refuses_to_run_package_managers(command, why):
    """tests/conftest.py's guard: `make test` installs nothing on the machine."""
    with pytest.raises(AssertionError, match=f"a test ran .*{why}"):
        subprocess.run(command, capture_output=True, check=False)


def test_the_packaging_tests_own_pip_install_is_allowed(tmp_path):
    from conftest import forbidden_command

    own = [sys.executable, "-m", "pip", "--python", str(tmp_path / "venv" / "bin" / "python")]
    assert forbidden_command([*own, "install", "--no-index", "--find-links", "d", "x"]) is None
    dev = [sys.executable, "-m", "pip", "--python", str(Path(sys.prefix) / "bin" / "python")]
    assert forbidden_command([*dev, "install", "--no-index", "x"]) is not None
    assert forbidden_command([*own, "install", "x"]) is not None  # from an index


def test_static_analysers_see_every_submodule_and_import_stays_lazy():
    """`nc.frames`, `nc.heads` ... are imported under TYPE_CHECKING (what mypy and pyright
    read) and listed in a literal __all__; at run time they still load on first use."""
    import ast

    import neuralcollapse

    tree = ast.parse(Path(neuralcollapse.__file__).read_text(encoding="utf-8"))
    checked: set[str] = set()
    literal_all: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                checked |= {alias.asname or alias.name for alias in statement.names}
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            literal_all = ast.literal_eval(node.value)
    lazy = set(neuralcollapse._SUBMODULES) | set(neuralcollapse._CLASSES)
    assert checked == lazy and set(literal_all) == lazy | {"__version__"}
    assert (Path(neuralcollapse.__file__).parent / "py.typed").is_file()
    done = subprocess.run(
        [sys.executable, "-c", "import sys, neuralcollapse; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "False"


def test_the_library_logs_through_the_neuralcollapse_logger(capsys):
    import logging

    from neuralcollapse.cli import _log_to_stderr

    logger = logging.getLogger("neuralcollapse")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    original, level = list(logger.handlers), logger.level
    # a command run earlier in this process may have added the CLI's handler already
    before = [h for h in original if not getattr(h, "_neuralcollapse_cli", False)]
    logger.handlers[:] = before
    try:
        _log_to_stderr()
        _log_to_stderr()  # once per process
        added = [h for h in logger.handlers if h not in before]
        assert len(added) == 1
        logging.getLogger("neuralcollapse.export").warning("a warning for the user")
        logging.getLogger("neuralcollapse.export").info("not shown by default")
        assert capsys.readouterr().err == (
            "neuralcollapse.export: WARNING: a warning for the user\n"
        )
    finally:
        logger.handlers[:] = original
        logger.setLevel(level)
