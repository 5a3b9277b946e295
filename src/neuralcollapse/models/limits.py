"""A model's size checked before any memory is allocated for it.

A config or an export's ``config.json`` is a few bytes that can describe a model of any
size (``widths: [200000, 200000]`` is 40 billion parameters, 160 GB of float32). Before a
model is built for real, :func:`planned_parameters` builds it on PyTorch's ``meta``
device (shapes only, no storage, no initialisation cost) and :func:`check_parameter_count`
compares the count with a limit.

The limit is :data:`MAX_PARAMETERS` (this project's setting: 10^9 parameters and
buffers, 4 GB in float32, well above the largest backbone in the zoo); the environment
variable ``NEURALCOLLAPSE_MAX_PARAMETERS`` or an explicit ``max_parameters`` argument
raises it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn

from neuralcollapse.errors import UsageError

__all__ = [
    "ENV_MAX_PARAMETERS",
    "MAX_PARAMETERS",
    "check_parameter_count",
    "parameter_limit",
    "planned_parameters",
]

MAX_PARAMETERS = 1_000_000_000
ENV_MAX_PARAMETERS = "NEURALCOLLAPSE_MAX_PARAMETERS"


def parameter_limit(override: int | None = None) -> int:
    """The limit in force: ``override``, else ``$NEURALCOLLAPSE_MAX_PARAMETERS``, else
    :data:`MAX_PARAMETERS`.

    Raises:
        UsageError: an override or environment value that is not a positive integer.
    """
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, int) or override < 1:
            raise UsageError(f"max_parameters must be a positive integer, got {override!r}")
        return override
    text = os.environ.get(ENV_MAX_PARAMETERS, "").strip()
    if not text:
        return MAX_PARAMETERS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(
            f"{ENV_MAX_PARAMETERS}={text!r} is not a positive integer; unset it or give a "
            "number of parameters, e.g. 2000000000"
        )
    return value


def planned_parameters(build: Callable[[], nn.Module]) -> int | None:
    """Parameters plus buffers of the module ``build()`` makes, counted on the meta device.

    Returns None when the module cannot be built on the meta device (a constructor that
    reads tensor values): its size is then unknown, not refused.
    """
    try:
        with torch.device("meta"):
            module = build()
    except Exception:  # noqa: BLE001 - any failure means "cannot tell", never a refusal
        return None
    return sum(t.numel() for t in module.state_dict().values())


def check_parameter_count(count: int | None, what: str, limit: int | None = None) -> None:
    """Refuse ``count`` parameters above the limit (see :func:`parameter_limit`).

    Args:
        count: planned parameters and buffers (None: unknown, accepted).
        what: the model's description, named in the message (e.g. ``model 'mlp'``).
        limit: an explicit limit (default: :func:`parameter_limit`).

    Raises:
        UsageError: one line naming the count, the limit and how to raise it.
    """
    allowed = parameter_limit(limit)
    if count is not None and count > allowed:
        raise UsageError(
            f"{what} has {count:,} parameters (about {4 * count / 1e9:,.1f} GB in float32), "
            f"above the limit of {allowed:,}; check its sizes, or raise the limit with "
            f"{ENV_MAX_PARAMETERS}=N (or max_parameters=N)"
        )
