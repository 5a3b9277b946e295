"""The YAML recipes shipped inside the package (``neuralcollapse/configs/``), and how a
recipe composes from bases.

The repository's top-level ``configs/`` is the same folder, so ``--config
configs/digits_lt.yaml`` works from a checkout and ``--config digits_lt`` works anywhere.

Composition. A recipe may name ``base: NAME`` or ``base: [NAME, ...]``. Each base is read
(recursively: a base may have bases), the bases are merged in list order, and the recipe's
own keys go last; mappings merge key by key (``optim: {lr: 0.05}`` keeps the base's other
``optim`` keys; ``model.options`` merges the same way), anything else is replaced. A base
``NAME`` is a file of ``configs/_bases/`` (building blocks that are not runnable on their
own: a data set, a backbone, a method preset, a schedule), else a packaged recipe; a base
ending in ``.yaml`` is a path relative to the file that names it. ``name`` is never
inherited: a recipe is named after its own file. A top-level ``targets: [ID, ...]`` lists
the entries of :mod:`neuralcollapse.targets` that the recipe reproduces; it is read here
and is not part of the config.

Generated recipes. ``configs/_families.yaml`` declares families of recipes as a product of
variables (data set x method x imbalance ratio ...): each member is a recipe made only of
``base`` and a few ``set`` keys, so the CIFAR-LT schedule lives in one base file and the
66+ named recipes users type (``cifar100_lt_r100_ldam_drw``) are generated, listed by
:func:`available_recipes` and resolved by name like any file. Their path is
``RECIPE_DIR / "<name>.yaml"`` (no such file exists; :func:`read_recipe` knows it).

Every value remembers where it came from (:class:`Recipe`.origins), which
``neuralcollapse train --print-config`` shows.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuralcollapse.config import (
    apply_overrides,
    parse_override,
    parse_value,
    read_yaml_mapping,
    to_dict,
    to_yaml,
)
from neuralcollapse.errors import ConfigError

__all__ = [
    "BASES_DIR",
    "DEFAULT_RECIPE",
    "FAMILIES_FILE",
    "RECIPE_DIR",
    "Recipe",
    "available_bases",
    "available_recipes",
    "config_origins",
    "format_origins",
    "generated_recipes",
    "read_recipe",
    "recipe_source",
    "resolve_config_path",
]

RECIPE_DIR = Path(__file__).resolve().parent.parent / "configs"
BASES_DIR = RECIPE_DIR / "_bases"
FAMILIES_FILE = RECIPE_DIR / "_families.yaml"
DEFAULT_RECIPE = "digits_lt"


@dataclass
class Recipe:
    """A recipe with its bases merged in.

    Attributes:
        values: nested dicts of the keys the recipe and its bases set (no defaults).
        origins: dotted key (``"optim.lr"``, ``"model.options.width"``) -> where its value
            came from: a file (relative to ``configs/`` for packaged ones) or
            ``"generated: FAMILY"``.
        targets: the target ids the recipe names (its own, or inherited from its bases).
        files: the files read, the recipe's own first.
    """

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- names


def _runnable_files() -> dict[str, Path]:
    return {p.stem: p for p in RECIPE_DIR.glob("*.yaml") if not p.name.startswith("_")}


def available_bases() -> list[str]:
    """Names of the building blocks in ``configs/_bases/`` (not runnable), sorted."""
    return sorted(p.stem for p in BASES_DIR.glob("*.yaml"))


def available_recipes() -> list[str]:
    """Names of the runnable packaged recipes (files and generated ones), sorted."""
    return sorted({*_runnable_files(), *generated_recipes()})


def resolve_config_path(name_or_path: str | Path | None) -> Path:
    """A config file path from a path, or from the name of a packaged recipe.

    ``None`` gives the embedded default (``digits_lt``). A generated recipe gives
    ``RECIPE_DIR / "<name>.yaml"``, which :func:`read_recipe` (and so ``load_config``)
    reads although no such file exists.
    """
    if name_or_path is None:
        name_or_path = DEFAULT_RECIPE
    path = Path(name_or_path)
    if path.is_file():
        return path
    if _generated_name(path) is not None:
        return path
    # A bare name ("digits_lt" or "digits_lt.yaml") means a packaged recipe; a path with a
    # folder must exist as given, so a typo never silently picks another file.
    if len(path.parts) == 1:
        stem = path.stem if path.suffix == ".yaml" else path.name
        packaged = RECIPE_DIR / f"{stem}.yaml"
        if packaged.is_file() and not stem.startswith("_"):
            return packaged
        if stem in generated_recipes():
            return packaged
    names = available_recipes()
    close = difflib.get_close_matches(path.stem, names, n=3, cutoff=0.8)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise FileNotFoundError(
        f"config {str(name_or_path)!r} is neither a file nor a packaged recipe; {hint}"
        f"{len(names)} packaged recipes: {', '.join(names)}"
    )


def _generated_name(path: Path) -> str | None:
    """The generated recipe a (non-existent) path stands for, else None."""
    if path.suffix != ".yaml" or path.exists():
        return None
    try:
        inside = path.resolve().parent == RECIPE_DIR
    except OSError:
        return None
    return path.stem if inside and path.stem in generated_recipes() else None


# --------------------------------------------------------------------------- families


@functools.cache
def generated_recipes() -> dict[str, dict[str, Any]]:
    """Every generated recipe: name -> its mapping (``base``, ``targets``, the ``set``
    keys) plus ``_family`` and ``_source`` (the family's id and its source text)."""
    if not FAMILIES_FILE.is_file():
        return {}
    spec = read_yaml_mapping(FAMILIES_FILE)
    recipes: dict[str, dict[str, Any]] = {}
    for family, entry in spec.items():
        for name, values in _expand_family(family, entry):
            if name in recipes:
                raise ConfigError(
                    f"{FAMILIES_FILE.name}: recipe {name!r} is generated by both "
                    f"{recipes[name]['_family']!r} and {family!r}"
                )
            recipes[name] = values
    return recipes


def _fill(template: Any, variables: Mapping[str, Any]) -> Any:
    """``template`` with ``{var}`` / ``{var[key]}`` filled in; a filled string that was a
    template is read back as a YAML value (``"{ratio}"`` -> 100)."""
    if isinstance(template, Mapping):
        return {k: _fill(v, variables) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, variables) for v in template]
    if isinstance(template, str) and "{" in template:
        return template.format(**variables)
    return template


def _expand_family(family: str, entry: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    where = f"{FAMILIES_FILE.name}: family {family!r}"
    unknown = set(entry) - {"name", "vars", "base", "set", "source", "targets"}
    if unknown or not {"name", "vars", "base", "source"} <= set(entry):
        raise ConfigError(
            f"{where} needs name, vars, base and source (optional set, targets); "
            f"unknown keys: {sorted(unknown)}"
        )
    names = list(entry["vars"])
    members = []
    for combo in itertools.product(*(entry["vars"][n] for n in names)):
        variables = dict(zip(names, combo, strict=True))
        try:
            name = _fill(entry["name"], variables)
            values: dict[str, Any] = {"base": _fill(entry["base"], variables)}
            settings = _fill(entry.get("set", {}), variables)
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"{where} uses an undefined variable {exc}") from None
        values.update(_typed(settings))
        values["targets"] = list((entry.get("targets") or {}).get(name, []))
        values["_family"] = family
        values["_source"] = _fill(entry["source"], variables)
        members.append((name, values))
    return members


def _typed(values: Any) -> Any:
    """Filled-in template strings read as YAML values (``"100"`` -> 100)."""
    if isinstance(values, Mapping):
        return {k: _typed(v) for k, v in values.items()}
    if isinstance(values, str):
        return parse_value(values)
    return values


# --------------------------------------------------------------------------- composition


def _label(path: Path) -> str:
    try:
        return path.resolve().relative_to(RECIPE_DIR).as_posix()
    except ValueError:
        return str(path)


def _find_base(name: Any, including: Path | None) -> Path:
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{_where(including)}: base must be a name or a list of names, got {name!r}"
        )
    if name.endswith(".yaml"):
        candidate = Path(name)
        if not candidate.is_absolute() and including is not None:
            candidate = including.parent / candidate
        if candidate.is_file() or _generated_name(candidate) is not None:
            return candidate
    elif "/" not in name:
        for candidate in (BASES_DIR / f"{name}.yaml", RECIPE_DIR / f"{name}.yaml"):
            if candidate.is_file() or _generated_name(candidate) is not None:
                return candidate
    raise ConfigError(
        f"{_where(including)}: base {name!r} names no base or recipe; bases: "
        f"{', '.join(available_bases())} (or a packaged recipe, or a .yaml path)"
    )


def _where(path: Path | None) -> str:
    return "config" if path is None else _label(path)


def _raw(path: Path) -> tuple[dict[str, Any], str]:
    """A recipe file's own mapping and the label its keys are credited to."""
    name = _generated_name(path)
    if name is not None:
        values = dict(generated_recipes()[name])
        family = values.pop("_family")
        values.pop("_source")
        return values, f"generated: {family} ({FAMILIES_FILE.name})"
    return read_yaml_mapping(path), _label(path)


def _merge(
    target: dict[str, Any],
    origins: dict[str, str],
    values: Mapping[str, Any],
    labels: str | Mapping[str, str],
    prefix: str = "",
) -> None:
    """Merge ``values`` into ``target`` (mappings key by key), crediting each leaf to
    ``labels`` (one label, or the incoming values' own origins)."""
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], origins, value, labels, f"{dotted}.")
            continue
        target[key] = _copy(value)
        for old in [k for k in origins if k == dotted or k.startswith(f"{dotted}.")]:
            del origins[old]
        _credit(origins, value, labels, dotted)


def _credit(
    origins: dict[str, str], value: Any, labels: str | Mapping[str, str], dotted: str
) -> None:
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            _credit(origins, inner, labels, f"{dotted}.{key}")
    else:
        origins[dotted] = labels if isinstance(labels, str) else labels.get(dotted, "?")


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def read_recipe(path: str | Path) -> Recipe:
    """A recipe file (or generated recipe) with its bases merged in; ``name`` defaults to
    nothing here (``load_config`` names the config after the file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ConfigError: invalid YAML, an unknown base, a cycle of bases, a bad ``targets``.
    """
    return _compose(Path(path), ())


def _compose(path: Path, chain: tuple[Path, ...]) -> Recipe:
    key = path.resolve()
    if key in chain:
        cycle = " -> ".join(_label(p) for p in (*chain, key))
        raise ConfigError(f"recipe bases form a cycle: {cycle}; remove one of these bases")
    own, label = _raw(path)
    bases = own.pop("base", None)
    targets = own.pop("targets", None) or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ConfigError(f"{_where(path)}: targets must be a list of target ids, got {targets!r}")
    if bases is not None and not isinstance(bases, list):
        bases = [bases]
    result = Recipe(files=[label])
    for base in bases or []:
        inherited = _compose(_find_base(base, path), (*chain, key))
        inherited.values.pop("name", None)
        inherited.origins.pop("name", None)
        _merge(result.values, result.origins, inherited.values, inherited.origins)
        result.targets += [t for t in inherited.targets if t not in result.targets]
        result.files += [f for f in inherited.files if f not in result.files]
    _merge(result.values, result.origins, own, label)
    result.targets += [t for t in targets if t not in result.targets]
    return result


# --------------------------------------------------------------------------- sources

_SOURCE = re.compile(r"^#\s*source\s*:\s*(.+)$", re.IGNORECASE)


def recipe_source(name: str) -> str:
    """Where a packaged recipe's (or base's) settings come from: its family's ``source``,
    or the ``# Source: ...`` line of its header comment plus the lines that continue it
    (``#`` and at least two spaces). Empty when there is none."""
    generated = generated_recipes().get(name)
    if generated is not None:
        return str(generated["_source"])
    path = _runnable_files().get(name) or (BASES_DIR / f"{name}.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"no packaged recipe or base named {name!r}")
    found: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        match = _SOURCE.match(line)
        if match and not found:
            found = [match.group(1).strip()]
        elif found and line.startswith("#  "):
            found.append(line[1:].strip())
        elif found:
            break
    return " ".join(found)


# --------------------------------------------------------------------------- origins


def config_origins(
    config_arg: str | Path | None, overrides: list[str], resume: Path | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Where each value of the config that ``--config config_arg`` and ``overrides`` (or
    ``--resume RUN_DIR``) resolve to came from: ``(origins, raw)``, origins mapping dotted
    keys to a label (a file, ``generated: FAMILY``, ``override``), raw the values as set
    before the loader checked and completed them. Unlisted keys are defaults."""
    if resume is not None:
        file = Path(resume) / "config.yaml"
        raw: dict[str, Any] = read_yaml_mapping(file)
        origins = dict.fromkeys(_leaf_keys(raw), str(file))
    else:
        recipe = read_recipe(resolve_config_path(config_arg))
        raw, origins = recipe.values, dict(recipe.origins)
        if "name" not in raw:
            origins["name"] = "the recipe's name"
    for text in overrides:
        dotted = ".".join(parse_override(text)[0])
        for key in [k for k in origins if k == dotted or k.startswith(f"{dotted}.")]:
            del origins[key]
        origins[dotted] = "override"
    return origins, apply_overrides(raw, overrides)


def _leaf_keys(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            keys += _leaf_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


_MISSING = object()


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _yaml_item(key: str, value: Any) -> str:
    """``key: value`` on one line (flow style for lists and mappings)."""
    text = to_yaml({key: value}).rstrip("\n")
    # a mapping of scalars only is dumped in flow style: "{key: value}"
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    return text if "\n" not in text else f"{key}: {json.dumps(value)}"


def format_origins(config: Any, origins: Mapping[str, str], raw: Mapping[str, Any]) -> str:
    """A config (dataclass) as YAML, every key, each value followed by ``# <- ORIGIN``:
    ``default``, a recipe or base file (relative to the packaged ``configs/``),
    ``generated: FAMILY``, ``override``, or a run's config.yaml. A value the loader
    completed (``head.neck: auto``) says what it was set to. Reads back as YAML."""
    rows: list[tuple[str, str]] = []

    def origin_of(dotted: str, value: Any) -> str:
        inner = sorted({v for k, v in origins.items() if k.startswith(f"{dotted}.")})
        label = origins.get(dotted) or ", ".join(inner) or "default"
        set_value = _lookup(raw, dotted)
        if set_value is not _MISSING and not isinstance(value, dict) and set_value != value:
            label += f" (set to {set_value!r}, resolved)"
        return label

    for section, values in to_dict(config).items():
        if not isinstance(values, dict):
            rows.append((_yaml_item(section, values), origin_of(section, values)))
            continue
        rows.append((f"{section}:", ""))
        for key, value in values.items():
            rows.append((f"  {_yaml_item(key, value)}", origin_of(f"{section}.{key}", value)))
    width = min(max(len(text) for text, origin in rows if origin), 52)
    lines = [
        "# The resolved config (every key; reads back as YAML). '# <- X' says where each value",
        "# came from: default, a file of configs/ (or the file given), a generated recipe",
        "# (configs/_families.yaml), or override.",
    ]
    lines += [f"{text:<{width}}  # <- {origin}" if origin else text for text, origin in rows]
    return "\n".join(lines)
