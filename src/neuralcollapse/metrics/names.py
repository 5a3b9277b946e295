"""The metric keys a run records (records.jsonl, summary.json, the report, the trackers)
as constants: ``from neuralcollapse.metrics.names import NC1, TOP1``.

They are defined once, torch-free, in :mod:`neuralcollapse._internal.names` (the report and
the command line read them without importing torch); this is their public name.
"""

from neuralcollapse._internal.names import (
    ACCURACY_KEYS,
    BALANCED,
    CLASSIFIER_ACCURACY,
    COLLAPSE_KEYS,
    FEW,
    MANY,
    MEDIUM,
    NC1,
    NC1_CDNV,
    NC1_TRACE_RATIO,
    NC2_COSINE_STD_CLASSIFIER,
    NC2_COSINE_STD_MEANS,
    NC2_EQUIANGULAR_CLASSIFIER,
    NC2_EQUIANGULAR_MEANS,
    NC2_EQUINORM_CLASSIFIER,
    NC2_EQUINORM_MEANS,
    NC2_ETF_DISTANCE_CLASSIFIER,
    NC2_ETF_DISTANCE_MEANS,
    NC3_SELF_DUALITY,
    NC3_ZHU,
    NC4_NCC_MISMATCH,
    NCC_ACCURACY,
    SHOT_GROUPS,
    TOP1,
)

__all__ = [
    "ACCURACY_KEYS",
    "BALANCED",
    "CLASSIFIER_ACCURACY",
    "COLLAPSE_KEYS",
    "FEW",
    "MANY",
    "MEDIUM",
    "NC1",
    "NC1_CDNV",
    "NC1_TRACE_RATIO",
    "NC2_COSINE_STD_CLASSIFIER",
    "NC2_COSINE_STD_MEANS",
    "NC2_EQUIANGULAR_CLASSIFIER",
    "NC2_EQUIANGULAR_MEANS",
    "NC2_EQUINORM_CLASSIFIER",
    "NC2_EQUINORM_MEANS",
    "NC2_ETF_DISTANCE_CLASSIFIER",
    "NC2_ETF_DISTANCE_MEANS",
    "NC3_SELF_DUALITY",
    "NC3_ZHU",
    "NC4_NCC_MISMATCH",
    "NCC_ACCURACY",
    "SHOT_GROUPS",
    "TOP1",
]
