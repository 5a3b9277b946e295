"""Unconstrained feature model (UFM) simulator and reproductions of its theory (docs/theory.md §5).

::

    cfg = nc.ufm.UFMConfig(num_classes=10, dim=16, head_kind="learnable", loss="ce")
    result = nc.ufm.simulate(cfg)
    result.final.nc1, result.history[-1]["nc2_etf_distance_classifier"]

Reproductions (each returns a :class:`Reproduction` with ``expected``, ``measured`` and an
``agrees`` judgement computed from the measurements): :func:`etf_optimum`,
:func:`minority_collapse`, :func:`dr_vs_ce`, :func:`haframe`.

[Y22]'s norm-constrained model (free or shared-parameter features, one run per learning
rate)::

    problem = nc.ufm.build_feature_problem([40] * 10, dim=16)
    sweep = nc.ufm.lr_sweep(problem, loss="dr", lrs=[0.1, 1, 10], steps=400, model="shared")
    sweep.best_lr, sweep.steps_to_target[sweep.best]
"""

from neuralcollapse.ufm.config import (
    FEATURE_CONSTRAINTS,
    FEATURE_MODELS,
    HEAD_KINDS,
    LOSSES,
    OPTIMIZERS,
    UFMConfig,
    check_ufm_config,
    load_ufm_config,
    ufm_config_from_dict,
)
from neuralcollapse.ufm.reproductions import (
    DR_VS_CE_LRS,
    DR_VS_CE_QUICK,
    REPRODUCTIONS,
    Reproduction,
    dr_vs_ce,
    etf_optimum,
    haframe,
    minority_collapse,
)
from neuralcollapse.ufm.simulate import (
    FeatureProblem,
    LRSweep,
    UFMProblem,
    UFMResult,
    build_feature_problem,
    build_problem,
    constrain_features,
    lr_sweep,
    nc1_per_sample,
    simulate,
)

__all__ = [
    "DR_VS_CE_LRS",
    "DR_VS_CE_QUICK",
    "FEATURE_CONSTRAINTS",
    "FEATURE_MODELS",
    "FeatureProblem",
    "HEAD_KINDS",
    "LOSSES",
    "LRSweep",
    "OPTIMIZERS",
    "REPRODUCTIONS",
    "Reproduction",
    "UFMConfig",
    "UFMProblem",
    "UFMResult",
    "build_feature_problem",
    "build_problem",
    "check_ufm_config",
    "constrain_features",
    "dr_vs_ce",
    "etf_optimum",
    "haframe",
    "load_ufm_config",
    "lr_sweep",
    "minority_collapse",
    "nc1_per_sample",
    "simulate",
    "ufm_config_from_dict",
]
