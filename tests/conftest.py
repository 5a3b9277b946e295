"""Test-suite settings shared by every test module."""

import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: the same examples on every run and machine, no example
# database written into the checkout, and no wall-clock deadlines (CI machines are shared).
settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("deterministic")


# ---------------------------------------------------------------------------------------
# Check data from the shared/ folder beside the checkout. The package never reads it; tests
# that use it skip, saying why, where it is absent. NC_SHARED_DIR points elsewhere.
SHARED_DIR = Path(os.environ.get("NC_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="session")
def cifar100_hierarchy_file() -> Path:
    path = SHARED_DIR / "data" / "cifar100_hierarchy_edges.csv"
    if not path.is_file():
        pytest.skip(f"CIFAR-100 hierarchy check file absent: {path} (shared/ beside the checkout)")
    return path


# ---------------------------------------------------------------------------------------
# The suite changes nothing outside .venv, pytest's cache and temporary folders: no test
# may run a system package manager or install Python packages. The one exception is the
# packaging test's pip, which installs the freshly built wheel from local files only
# (--no-index) into a virtual environment of its own (--python <tmp venv>). A forbidden
# command fails the test that asked for it, naming the command.
_PACKAGE_MANAGERS = frozenset(
    {"apt", "apt-get", "aptitude", "dpkg", "yum", "dnf", "apk", "zypper", "pacman", "brew"}
    | {"snap", "conda", "mamba", "micromamba", "npm"}
)


def forbidden_command(args: object) -> str | None:
    """Why ``args`` (a subprocess command) may not run in a test, or None."""
    import shlex

    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        words = shlex.split(text) if " " in text else [text]
    else:
        words = [os.fsdecode(word) for word in args]
    if not words:
        return None
    names = [Path(word).name for word in words]
    if names[0] in ("sudo", "env"):
        return forbidden_command(words[1:])
    if names[0] in _PACKAGE_MANAGERS:
        return f"the system package manager ({names[0]})"
    if names[0] in ("sh", "bash") and "-c" in words:
        return forbidden_command(words[words.index("-c") + 1])
    pip = names[0] in ("pip", "pip3", "uv") or names[1:3] == ["-m", "pip"]
    if pip and "install" in words:
        target = words[words.index("--python") + 1] if "--python" in words else None
        local = "--no-index" in words and target is not None
        inside = Path(os.path.abspath(target or sys.prefix)).is_relative_to(sys.prefix)
        if not local or inside:
            return "pip install outside a test's own virtual environment"
    return None


@pytest.fixture(autouse=True, scope="session")
def _no_package_manager():
    import subprocess

    original_init = subprocess.Popen.__init__
    original_system = os.system

    def guarded_init(self, args, *more, **kwargs):
        why = forbidden_command(args)
        if why:
            raise AssertionError(f"a test ran {why}: {args!r}; tests must install nothing")
        original_init(self, args, *more, **kwargs)

    def guarded_system(command):
        why = forbidden_command(command)
        if why:
            raise AssertionError(f"a test ran {why}: {command!r}; tests must install nothing")
        return original_system(command)

    subprocess.Popen.__init__ = guarded_init
    os.system = guarded_system
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original_init
        os.system = original_system


# ---------------------------------------------------------------------------------------
# Under pytest-xdist (`make test` runs one worker per core) every worker is one process
# of its own: one torch thread each, so that the workers never fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)
