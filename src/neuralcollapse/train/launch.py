"""From what a user typed to the config a run trains: the one way in for the ``train``
command (and anything else that starts or resumes runs by name).

A new run's config is a recipe (a packaged name or a YAML file; default ``digits_lt``)
plus ``section.key=value`` overrides; a resumed run's is its own saved config plus
overrides, which the Trainer then checks against the checkpoint's under the resume policy
(:data:`~neuralcollapse.train.config.RESUMABLE_CHANGES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from neuralcollapse.errors import UsageError
from neuralcollapse.rundir import RunDir
from neuralcollapse.train.config import Config, load_config
from neuralcollapse.train.recipes import DEFAULT_RECIPE

__all__ = ["run_config"]


def run_config(
    recipe: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    resume: str | Path | None = None,
) -> Config:
    """The checked config of a run.

    Args:
        recipe: a packaged recipe's name or a YAML file (default ``digits_lt``); not
            with ``resume``.
        overrides: ``section.key=value`` items applied on top.
        resume: a run directory to continue: its saved config is the starting point.

    Raises:
        UsageError: ``recipe`` given with ``resume``, or the run directory has no saved
            config.
        FileNotFoundError: ``recipe`` is neither a file nor a packaged recipe.
        ConfigError: an unknown key, a bad value or combination.
    """
    if resume is None:
        return load_config(DEFAULT_RECIPE if recipe is None else recipe, list(overrides))
    if recipe is not None:
        raise UsageError("--resume reads the run's own config; drop --config")
    saved = RunDir(resume).config_path
    if not saved.is_file():
        raise UsageError(f"cannot resume {str(resume)!r}: it has no {saved.name}")
    return load_config(saved, list(overrides))
