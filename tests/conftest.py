"""Test-suite settings shared by every test module."""

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
