"""The papers' reported values, as a table: ``load_targets()`` reads the package's
``targets.yaml``.

Each entry names the paper, the table or figure and row, the setting, the metric, its unit,
the value and its source (the paper's table, or a file:line of the official repository).
A value this project could not reach is ``None`` and its ``source`` says so. Recipes refer
to entries by id (``targets: [ID, ...]``), and so do the quoted numbers of README.md and
docs/theory.md (``<!--t:ID-->`` after the number)::

    from neuralcollapse.targets import load_targets, get_target
    target = get_target("mislas_stage1_mixup_cifar100_lt_r100")
    target.value, target.unit, target.source   # 39.5, 'percent', '...README.md:102'
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path

from neuralcollapse.config import from_dict, read_yaml_mapping
from neuralcollapse.errors import ConfigError

__all__ = ["TARGETS_FILE", "Target", "get_target", "load_targets"]

TARGETS_FILE = Path(__file__).resolve().parent / "targets.yaml"


@dataclass(frozen=True)
class Target:
    """One reported number.

    Attributes:
        id: the entry's key in targets.yaml.
        paper: who reported it (authors, year, venue).
        table: where: the paper's table or figure, or the official repository's README table.
        row: the row (and column) within it.
        setting: what was run: model, data, loss, schedule.
        metric: ``top1``, ``top1_error``, ``average_mistake_severity``, ``memory_saving``...
        unit: ``percent`` or the metric's own unit.
        value: the number, or None when the source could not be reached.
        source: where the number was read (file:line of the official repository, or the
            paper's table), or why it is missing.
        relation: ``equal`` (the default) or ``greater_than`` / ``less_than`` for a bound
            stated in words ("over 20%").
        note: anything a reader must know to compare with it.
    """

    id: str
    paper: str
    table: str
    row: str
    setting: str
    metric: str
    unit: str
    value: float | None
    source: str
    relation: str = "equal"
    note: str = ""


@functools.cache
def _load(path: str) -> dict[str, Target]:
    targets = {}
    for key, values in read_yaml_mapping(path).items():
        if isinstance(values, dict) and "id" in values:
            raise ConfigError(f"{key}.id: an entry's id is its key; remove the id field")
        fields_of_entry = {**values, "id": str(key)} if isinstance(values, dict) else values
        entry = from_dict(Target, fields_of_entry, prefix=f"{key}.")
        if entry.relation not in ("equal", "greater_than", "less_than"):
            raise ConfigError(
                f"{key}.relation must be equal, greater_than or less_than, got {entry.relation!r}"
            )
        targets[str(key)] = entry
    return targets


def load_targets(path: str | Path | None = None) -> dict[str, Target]:
    """Every entry of the targets table: id -> :class:`Target` (a fresh dict; the entries
    are frozen). ``path`` defaults to the package's ``targets.yaml``.

    Raises:
        ConfigError: an entry with a missing or unknown field, or a value of the wrong type.
    """
    return dict(_load(str(Path(path or TARGETS_FILE).resolve())))


def get_target(target_id: str) -> Target:
    """The entry ``target_id`` of the package's table.

    Raises:
        ConfigError: no such id (naming the closest ones).
    """
    targets = load_targets()
    if target_id not in targets:
        close = difflib.get_close_matches(target_id, list(targets), n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ConfigError(f"no target {target_id!r} in {TARGETS_FILE.name}{hint}")
    return targets[target_id]
