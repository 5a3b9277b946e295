"""The content of ``summary.json``: final and best numbers, how the best was chosen, the
validation split, the evaluation schedule, the split sizes, versions and the config.

See the README's run-directory section for the keys.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from neuralcollapse._version import __version__
from neuralcollapse.train.config import Config, best_split, config_to_dict
from neuralcollapse.train.data import TrainingData
from neuralcollapse.train.log import describe_validation
from neuralcollapse.train.selection import best_rule
from neuralcollapse.train.stage2 import stage_summary
from neuralcollapse.train.state import RunState
from neuralcollapse.train.trackers import SUMMARY_KEYS

__all__ = ["build_summary", "split_numbers"]


def split_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """The summary numbers of one evaluated split: accuracy overall and by shot group,
    the collapse report (``{"undefined": reason, ...}`` with null metrics when it could
    not be computed) and the hierarchical metrics when measured."""
    picked = {key: result.get(key) for key in SUMMARY_KEYS}
    picked["collapse"] = result.get("collapse", {})
    if "hierarchical" in result:
        picked["hierarchical"] = result["hierarchical"]
    return picked


def build_summary(
    config: Config,
    *,
    run_dir: str,
    state: RunState,
    final: dict[str, Any],
    data: TrainingData,
    device: torch.device,
    world_size: int,
    num_threads: int,
) -> dict[str, Any]:
    """The content of ``summary.json`` of a run in ``state`` whose last evaluation (on
    the whole training split, every metric) is ``final``."""
    split = best_split(config)
    best = None
    if split is not None and state.best is not None:
        best = {"split": split, "metric": config.train.select_best_metric}
        best["epoch"] = state.best_epoch
        best.update(split_numbers(state.best["test"]))
        best.update(
            {
                name: split_numbers(state.best[name])
                for name in ("val", "train")
                if name in state.best
            }
        )
        best["measured"] = state.best.get("measured")
    final_numbers = {**split_numbers(final["test"]), "train": split_numbers(final["train"])}
    if "val" in final:
        final_numbers["val"] = split_numbers(final["val"])
    val_size = 0 if data.val is None else len(data.val.labels)
    return {
        "name": config.name,
        "run_dir": run_dir,
        "epochs": state.epoch,
        "final": final_numbers,
        "best": best,
        "best_epoch": state.best_epoch if best is not None else None,
        "best_rule": best_rule(config),
        "validation": describe_validation(config, val_size),
        "wall_time_s": state.elapsed,
        "seed": config.train.seed,
        "device": str(device),
        "world_size": world_size,
        "splits": {
            "train": len(data.train.labels),
            "val": val_size,
            "test": len(data.test.labels),
        },
        "evaluation": {
            "every": config.eval.every,
            "collapse_every": config.eval.collapse_every,
            "train_subsample": config.eval.train_subsample,
            "final": final.get("measured"),
        },
        "num_threads": num_threads,
        "stages": stage_summary(config, state.best_epoch, state.stage2_done),
        "class_names": list(data.class_names),  # labels the report's points
        "versions": {
            "neuralcollapse": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "config": config_to_dict(config),
    }
