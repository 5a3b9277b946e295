"""Names the command line shows before anything heavy is imported: the frame kinds, the
LCA distance conventions, the shipped class trees and the metric keys. Their modules (``frames``,
``hierarchy``) import torch; these tuples and dicts are defined here, once, so that
``--help`` pages can list them without it."""

from __future__ import annotations

__all__ = [
    "ACCURACY_KEYS",
    "BALANCED",
    "BUILTIN_HIERARCHIES",
    "BUILTIN_PREFIX",
    "CLASSIFIER_ACCURACY",
    "COLLAPSE_KEYS",
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "FEW",
    "FRAME_KINDS",
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

#: The package's own frames (registered in neuralcollapse.frames; tests/test_registry.py
#: checks that this equals what is registered there), for the ``frame`` command's choices.
FRAME_KINDS = ("etf", "spread", "haframe")
#: How a tree turns into LCA distances (docs/theory.md §7): "level" (deepest leaf depth
#: minus the depth of the lowest common ancestor) or "height" (the ancestor's longest
#: way down to a leaf); equal on balanced trees.
CONVENTIONS = ("level", "height")
DEFAULT_CONVENTION = "level"
#: Class trees shipped inside the package: name -> file under neuralcollapse/hierarchies.
BUILTIN_HIERARCHIES = {"cifar100": "cifar100.csv"}
BUILTIN_PREFIX = "builtin:"

# --------------------------------------------------------------------------- metric keys
# The keys of the metrics a run records (records.jsonl, summary.json, the report, the
# trackers). Defined here, torch-free, because the report and the command line read them
# without importing torch; the public module is neuralcollapse.metrics.names.

#: NC1: tr(Sigma_W Sigma_B^+) / K, and its variants.
NC1 = "nc1"
NC1_CDNV = "nc1_cdnv"
NC1_TRACE_RATIO = "nc1_trace_ratio"
#: NC2 of the class means and of the classifier rows.
NC2_EQUINORM_MEANS = "nc2_equinorm_means"
NC2_EQUIANGULAR_MEANS = "nc2_equiangular_means"
NC2_COSINE_STD_MEANS = "nc2_cosine_std_means"
NC2_ETF_DISTANCE_MEANS = "nc2_etf_distance_means"
NC2_EQUINORM_CLASSIFIER = "nc2_equinorm_classifier"
NC2_EQUIANGULAR_CLASSIFIER = "nc2_equiangular_classifier"
NC2_COSINE_STD_CLASSIFIER = "nc2_cosine_std_classifier"
NC2_ETF_DISTANCE_CLASSIFIER = "nc2_etf_distance_classifier"
#: NC3: classifier-means self-duality, and [Z21]'s form.
NC3_SELF_DUALITY = "nc3_self_duality"
NC3_ZHU = "nc3_zhu"
#: NC4: mismatch with the nearest-class-mean classifier, and the two accuracies.
NC4_NCC_MISMATCH = "nc4_ncc_mismatch"
NCC_ACCURACY = "ncc_accuracy"
CLASSIFIER_ACCURACY = "classifier_accuracy"
#: Accuracy: top-1, balanced (mean per-class) and the shot groups.
TOP1 = "top1"
BALANCED = "balanced"
MANY = "many"
MEDIUM = "medium"
FEW = "few"
SHOT_GROUPS = (MANY, MEDIUM, FEW)
#: The accuracy columns of every table, in order.
ACCURACY_KEYS = (TOP1, BALANCED, *SHOT_GROUPS)
#: One headline number per collapse property, in order.
COLLAPSE_KEYS = (NC1, NC2_ETF_DISTANCE_MEANS, NC3_SELF_DUALITY, NC4_NCC_MISMATCH)
