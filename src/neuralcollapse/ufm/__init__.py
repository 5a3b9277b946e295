"""Unconstrained feature model (UFM) simulator and reproductions of its theory (docs/theory.md §5).

::

    cfg = nc.ufm.UFMConfig(num_classes=10, dim=16, head_kind="learnable", loss="ce")
    result = nc.ufm.simulate(cfg)
    result.final.nc1, result.history[-1]["nc2_etf_distance_classifier"]

Reproductions (each returns a :class:`Reproduction` with ``expected``, ``measured`` and an
``agrees`` judgement computed from the measurements): :func:`etf_optimum`,
:func:`minority_collapse`, :func:`dr_vs_ce`, :func:`haframe`.
"""

from neuralcollapse.ufm.config import (
    HEAD_KINDS,
    LOSSES,
    OPTIMIZERS,
    UFMConfig,
    check_ufm_config,
    load_ufm_config,
    ufm_config_from_dict,
)
from neuralcollapse.ufm.reproductions import (
    REPRODUCTIONS,
    Reproduction,
    dr_vs_ce,
    etf_optimum,
    haframe,
    minority_collapse,
)
from neuralcollapse.ufm.simulate import UFMProblem, UFMResult, build_problem, simulate

__all__ = [
    "HEAD_KINDS",
    "LOSSES",
    "OPTIMIZERS",
    "REPRODUCTIONS",
    "Reproduction",
    "UFMConfig",
    "UFMProblem",
    "UFMResult",
    "build_problem",
    "check_ufm_config",
    "dr_vs_ce",
    "etf_optimum",
    "haframe",
    "load_ufm_config",
    "minority_collapse",
    "simulate",
    "ufm_config_from_dict",
]
