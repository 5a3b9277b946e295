"""The papers' own grids (``reproduce --suite``): their recipes x seeds, on their data.

A suite is a set of packaged recipes, chosen by name among
:func:`~neuralcollapse.train.recipes.available_recipes` (so recipes added later, a new
ratio or backbone, join their suite), each trained with seeds 0..N-1. The recipes hold the
papers' settings and say where each came from; this module only groups them:

* ``y22``: [Y22]'s grid: CIFAR-10/100-LT, SVHN-LT and STL-10-LT at every packaged ratio
  with the fixed ETF + DR, the fixed ETF + CE and the learnable classifier + CE (ResNet-32,
  and the DenseNet recipes), and ImageNet-LT;
* ``y22-baselines``: the long-tailed baselines of the CIFAR-LT recipes (LA, BS, LDAM-DRW,
  CB-focal, cRT, tau-norm, LWS);
* ``z21``: [Z21]'s CIFAR-10 ResNet-18 pair (learnable vs fixed ETF with d = K);
* ``l23``: [L23]'s HAFrame recipes and their learnable baselines;
* ``paper``: all of them.

The number of seeds (default 5) is this project's setting, not a paper's.

:func:`missing_data` lists the data sets a suite needs that are not where its configs
point, with the layout expected there, so that a suite stops before anything trains.
:func:`plan_text` prints the grid with an estimate of its GPU-hours from a stated
per-epoch time (an assumption, see :data:`ASSUMED_EPOCH_SECONDS`, or the user's own).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from neuralcollapse.errors import UsageError
from neuralcollapse.sweep.runs import RunSpec
from neuralcollapse.train.config import Config, load_config
from neuralcollapse.train.recipes import available_recipes, resolve_config_path

__all__ = [
    "ASSUMED_EPOCH_SECONDS",
    "SUITES",
    "DataProblem",
    "missing_data",
    "plan_text",
    "suite_recipes",
    "suite_specs",
]

_LT_DATA = "(cifar10|cifar100|svhn|stl10)_lt_r[0-9]+"
SUITES: dict[str, tuple[str, ...]] = {
    "y22": (
        rf"{_LT_DATA}_(etf_dr|etf_ce|learnable_ce)",
        rf"{_LT_DATA}_densenet_(etf_dr|learnable_ce)",
        r"imagenet_lt_.*",
    ),
    "y22-baselines": (r"(cifar10|cifar100)_lt_r[0-9]+_(la|bs|ldam_drw|cb_focal|crt|lws|tau_norm)",),
    "z21": (r"cifar10_resnet18_(learnable|etf_dk)",),
    "l23": (r"(?!hier_mixture).*_haframe", r"fgvc_aircraft_learnable_ce"),
}
SUITES["paper"] = tuple(p for name in ("y22", "y22-baselines", "z21", "l23") for p in SUITES[name])
DEFAULT_SEEDS = 5  # this project's setting
# Data made in memory or shipped by a Python package: nothing to find on disk.
GENERATED_DATA = ("digits", "mnist5k", "gaussian", "hierarchical")

#: Seconds per training epoch on one GPU, by data set, used by ``--plan`` when no
#: ``--epoch-seconds`` is given. These are this project's rough ASSUMPTIONS for a current
#: data-centre GPU at the recipes' batch sizes, not measurements; measure one epoch of
#: your own (summary.json's wall_time_s / epochs) and pass it with --epoch-seconds.
ASSUMED_EPOCH_SECONDS: dict[str, float] = {
    "cifar10": 10.0,
    "cifar100": 10.0,
    "svhn": 10.0,
    "stl10": 10.0,
    "list_file": 600.0,  # ImageNet-LT
    "fgvc_aircraft": 30.0,
    "cub": 30.0,
    "inaturalist": 3600.0,
    "image_folder": 600.0,
}
_FALLBACK_EPOCH_SECONDS = 60.0


def suite_recipes(name: str) -> list[str]:
    """The packaged recipes of suite ``name``, sorted."""
    if name not in SUITES:
        raise UsageError(f"unknown --suite {name!r}; choose from {', '.join(SUITES)}")
    patterns = [re.compile(p) for p in SUITES[name]]
    return [r for r in available_recipes() if any(p.fullmatch(r) for p in patterns)]


def _rebase(path: str | None, old: str | None, new: str) -> str | None:
    """``path`` moved from under ``old`` to under ``new`` (list files beside the data)."""
    if path is None or old is None:
        return path
    try:
        return str(Path(new) / Path(path).relative_to(old))
    except ValueError:
        return path


def data_overrides(config: Config, data_dir: str | None, roots: Mapping[str, str]) -> list[str]:
    """Overrides that point a recipe at the user's data: ``roots[data.name]`` (from
    ``--data-root NAME=PATH``), else ``data_dir`` in place of the recipe's ``data/``
    folder (``--data-dir``); list files under the old root move with it."""
    old = config.data.root
    if config.data.name in roots:
        new = roots[config.data.name]
    elif data_dir is not None and old is not None and Path(old).parts[:1] == ("data",):
        new = str(Path(data_dir, *Path(old).parts[1:]))
    else:
        return []
    out = [f"data.root={new}"]
    for key in ("train_list", "test_list"):
        moved = _rebase(getattr(config.data, key), old, new)
        if moved != getattr(config.data, key):
            out.append(f"data.{key}={moved}")
    return out


def suite_specs(
    name: str,
    *,
    seeds: int = DEFAULT_SEEDS,
    data_dir: str | None = None,
    roots: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> list[RunSpec]:
    """Every run of suite ``name``: each recipe x seeds 0..``seeds``-1, pointed at the
    user's data, with ``overrides`` applied last."""
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    specs = []
    quiet = ["log.tensorboard=false", "log.report=false", "log.progress=off"]
    for recipe in suite_recipes(name):
        path = resolve_config_path(recipe)
        base = load_config(path, list(overrides))
        moved = data_overrides(base, data_dir, roots or {})
        for seed in range(seeds):
            config = load_config(path, [*quiet, *moved, *overrides, f"train.seed={seed}"])
            specs.append(RunSpec(config, f"{recipe} seed {seed}"))
    return specs


@dataclass(frozen=True)
class DataProblem:
    """A data set a suite needs and does not find: its name, where it looked, what it
    expects there."""

    dataset: str
    root: str
    expected: str

    def line(self) -> str:
        return f"{self.dataset}: missing at data.root={self.root}; expected {self.expected}"


def _expected(config: Config) -> tuple[list[list[Path]], str]:
    """(alternatives, each a list of paths that must all exist; the layout in words) for
    the config's data set."""
    name, root = config.data.name, Path(config.data.root or ".").expanduser()
    if name in ("cifar10", "cifar100"):
        from neuralcollapse.data.sources import CIFAR_ARCHIVES

        fmt = CIFAR_ARCHIVES[name]
        layout = f"{fmt.folder}/ or {fmt.archive} in it"
        return [[root / fmt.folder], [root / fmt.archive]], layout
    if name == "svhn":
        from neuralcollapse.data.formats.svhn import SVHN_FILES

        files = [SVHN_FILES[s][0] for s in ("train", "test")]
        return [[root / f for f in files]], f"{' and '.join(files)} in it"
    if name == "stl10":
        from neuralcollapse.data.formats.stl10 import STL10_FOLDER

        archive = f"{STL10_FOLDER}.tar.gz"
        return [[root / STL10_FOLDER], [root / archive]], f"{STL10_FOLDER}/ or {archive} in it"
    if name == "list_file":
        lists = [p for p in (config.data.train_list, config.data.test_list) if p]
        layout = "the images under it and the list files " + ", ".join(lists)
        return [[root, *(Path(p).expanduser() for p in lists)]], layout
    return [[root]], f"the official {name} release there (see the recipe's comments)"


def missing_data(specs: Sequence[RunSpec]) -> list[DataProblem]:
    """The data sets (one per data set and root) that ``specs`` need and do not find.
    Data made in memory or shipped by a package (digits, gaussian, ...) need nothing."""
    problems, seen = [], set()
    for spec in specs:
        data = spec.config.data
        if data.name in GENERATED_DATA or (data.name, data.root) in seen:
            continue
        seen.add((data.name, data.root))
        alternatives, layout = _expected(spec.config)
        if not any(all(p.exists() for p in alt) for alt in alternatives):
            problems.append(DataProblem(data.name, str(data.root), layout))
    return problems


def epoch_seconds(config: Config, measured: float | None = None) -> tuple[float, str]:
    """Seconds per epoch for the estimate, and its basis in words."""
    if measured is not None:
        return measured, "--epoch-seconds (given)"
    seconds = ASSUMED_EPOCH_SECONDS.get(config.data.name, _FALLBACK_EPOCH_SECONDS)
    return seconds, "assumed (this project's rough figure, not measured)"


def plan_text(
    suite: str, specs: Sequence[RunSpec], *, seeds: int, measured_epoch_s: float | None = None
) -> str:
    """The grid of a suite: one line per recipe (runs, epochs, data, estimated GPU-hours)
    and the total, with the basis of the estimate."""
    by_recipe: dict[str, list[RunSpec]] = {}
    for spec in specs:
        by_recipe.setdefault(spec.label.rsplit(" seed ", 1)[0], []).append(spec)
    lines = [
        f"suite {suite}: {len(by_recipe)} recipes x {seeds} seeds = {len(specs)} runs "
        "(seeds: this project's setting)",
        f"{'recipe':48}{'runs':>5}{'epochs':>8}  {'data':14}{'s/epoch':>9}{'GPU-h':>9}",
    ]
    total, bases = 0.0, set()
    for recipe, group in by_recipe.items():
        config = group[0].config
        epochs = config.train.epochs + (
            config.train.stage2_epochs if config.train.stage2 in ("crt", "lws") else 0
        )
        seconds, basis = epoch_seconds(config, measured_epoch_s)
        bases.add(basis)
        hours = len(group) * epochs * seconds / 3600
        total += hours
        lines.append(
            f"{recipe:48}{len(group):>5}{epochs:>8}  {config.data.name:14}{seconds:>9.0f}"
            f"{hours:>9.1f}"
        )
    lines.append(
        f"total: {len(specs)} runs, about {total:.0f} GPU-hours -- an ESTIMATE: runs x epochs "
        f"x seconds per epoch, the seconds {' / '.join(sorted(bases))}; one GPU per run"
    )
    return "\n".join(lines)
