"""Test-suite settings shared by every test module."""

import os
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
