"""Which evaluated epoch is the best: the rule, and the comparison the run applies.

The best epoch has the highest ``train.select_best_metric`` on the
``train.select_best_on`` split (:func:`~neuralcollapse.train.config.best_split`: the
validation split by default when the run holds one out), the first of equal ones.
Choosing on the test split is allowed only when asked for and is named so in
``summary.json``.
"""

from __future__ import annotations

import math
from typing import Any

from neuralcollapse.train.config import Config, best_split

__all__ = ["best_rule", "improves"]


def improves(config: Config, best: dict[str, Any] | None, evaluation: dict[str, Any]) -> bool:
    """Whether ``evaluation`` (``{split: metrics}``) beats ``best`` (the best so far, or
    None) under the config's rule; never without a split to choose on or when the
    metric was not measured."""
    split = best_split(config)
    if split is None or split not in evaluation:
        return False
    metric = config.train.select_best_metric
    value = evaluation[split].get(metric)
    if value is None:
        return False
    return best is None or value > (best[split].get(metric) or -math.inf)


def best_rule(config: Config) -> str:
    """How the best epoch is chosen, in words (``summary.json``'s ``best_rule``)."""
    split, metric = best_split(config), config.train.select_best_metric
    if split == "val":
        return f"highest validation {metric} over the evaluated epochs (the first of equal ones)"
    if split == "test":
        return (
            f"highest TEST {metric} over the evaluated epochs (train.select_best_on=test: "
            "chosen on the test set, an optimistic estimate)"
        )
    return (
        "no validation split to choose on: set data.val_fraction or data.val_list, or "
        "train.select_best_on=test to choose on the test set"
        if config.train.select_best_on == "auto"
        else "none asked for (train.select_best_on=none)"
    )
