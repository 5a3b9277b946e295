"""Typed configs: dataclasses <-> YAML, with dotted ``KEY=VALUE`` command-line overrides.

The one config machinery of the package, used by training (:mod:`neuralcollapse.train.config`)
and by the unconstrained feature model (:mod:`neuralcollapse.ufm.config`):

* :func:`from_dict` builds a dataclass from (nested) dicts, checking every value against
  its field's type (``Literal``, ``Optional``, ``list``, ``tuple``, ``dict``, ``bool``,
  ``int``, ``float``, ``str``, nested dataclasses) and its allowed range (declared with
  :func:`bounded`), and names an unknown key with its closest match;
* :func:`read_yaml_mapping` / :func:`load_yaml` read YAML with :class:`ConfigLoader`, and
  :func:`parse_value` reads an override's value with the same loader;
* :func:`apply_overrides` sets ``a.b=value`` overrides in nested dicts, and
  :func:`split_overrides` tells such items apart from other command-line words;
* :func:`to_yaml` writes a config back.

YAML 1.1 traps, fixed by :class:`ConfigLoader` (YAML 1.2 core-schema scalars):

* ``1e-3``, ``5e-4``, ``1E+2`` and ``.5`` are floats (YAML 1.1 reads ``1e-3`` as a string);
* ``on``, ``off``, ``yes``, ``no``, ``y``, ``n`` are the strings they look like (only
  ``true`` / ``false`` are booleans), so ``log.progress=off`` means ``'off'``; a ``bool``
  field still accepts the words yes/no/on/off (any case);
* ``010`` is ten (not octal eight), ``1:30`` is a string (not ninety) and ``2024-01-01``
  is a string (not a date).

Every float must be finite unless its field is declared with ``bounded(...,
allow_nonfinite=True)``. Errors are :class:`~neuralcollapse.errors.ConfigError`, one line
each, naming the key (or the file, line and column) and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from neuralcollapse.errors import ConfigError

__all__ = [
    "Bounds",
    "ConfigError",
    "ConfigLoader",
    "apply_overrides",
    "bounded",
    "coerce",
    "field_bounds",
    "from_dict",
    "is_override",
    "load_yaml",
    "parse_override",
    "parse_value",
    "read_yaml_mapping",
    "split_overrides",
    "to_dict",
    "to_yaml",
]

T = TypeVar("T")

# --------------------------------------------------------------------------- YAML


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars and no duplicate keys.

    Implicit types: ``true``/``false`` (three cases) are booleans; decimal integers (plus
    ``0x``/``0o`` forms) are ints; numbers with a point or an exponent (``1e-3``, ``.5``,
    ``2.``) and ``.inf``/``.nan`` are floats; ``~``, ``null`` and nothing are null;
    everything else is a string. A mapping that repeats a key is an error.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refusing a key that appears twice (PyYAML keeps the last silently)."""
        if isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                identity = (key_node.tag, key_node.value)
                if identity in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(identity)
        return super().construct_mapping(node, deep=deep)


_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+[eE][-+]?[0-9]+
    |[-+]?\.[0-9]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_MERGE = re.compile(r"^(?:<<)$")

# Replace (not extend) the inherited YAML 1.1 resolvers: no yes/no/on/off booleans, no
# sexagesimal or octal numbers, no timestamps.
ConfigLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("bool", _BOOL, "tTfF"),
    ("int", _INT, "-+0123456789"),
    ("float", _FLOAT, "-+0123456789."),
    ("null", _NULL, ["~", "n", "N", ""]),
    ("merge", _MERGE, "<"),
):
    ConfigLoader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", _regexp, list(_first))


def _construct_int(loader: ConfigLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").lower()
    try:
        if body.startswith("0x"):
            return sign * int(body[2:], 16)
        if body.startswith("0o"):
            return sign * int(body[2:], 8)
        return sign * int(body, 10)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot read {text!r} as an integer", node.start_mark
        ) from None


def _construct_float(loader: ConfigLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    body = text.lower()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == ".inf":
        return sign * math.inf
    if body == ".nan":
        return math.nan
    try:
        return sign * float(body)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot read {text!r} as a number", node.start_mark
        ) from None


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
ConfigLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


class _ConfigDumper(yaml.SafeDumper):
    """Safe dumper that quotes every string which YAML 1.1 *or* :class:`ConfigLoader`
    would read as something else (``'off'``, ``'1e-3'``), so its output reads back the same
    with either."""


for _first, _resolvers in ConfigLoader.yaml_implicit_resolvers.items():
    for _tag, _regexp in _resolvers:
        _ConfigDumper.add_implicit_resolver(_tag, _regexp, [_first])


def _line_column(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _yaml_error(source: str, text: str, exc: yaml.YAMLError) -> ConfigError:
    """One line: ``SOURCE: not valid YAML at line L, column C: PROBLEM``."""
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_column(text, exc.position)
        if isinstance(exc.character, int):
            problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        else:  # pragma: no cover - text input never gives undecodable bytes
            problem = str(exc.reason)
        return ConfigError(f"{source}: not valid YAML at line {line}, column {column}: {problem}")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "cannot parse"
        if exc.problem and exc.context:
            where = f" at line {exc.context_mark.line + 1}" if exc.context_mark else ""
            problem = f"{problem} ({exc.context}{where})"
        problem = " ".join(problem.split())
        if mark is not None:
            return ConfigError(
                f"{source}: not valid YAML at line {mark.line + 1}, column {mark.column + 1}: "
                f"{problem}"
            )
        return ConfigError(f"{source}: not valid YAML: {problem}")
    return ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}")


def load_yaml(text: str, *, source: str = "<string>") -> Any:
    """The value of one YAML document read with :class:`ConfigLoader`.

    Raises:
        ConfigError: ``SOURCE: not valid YAML at line L, column C: PROBLEM``.
    """
    try:
        return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(source, text, exc) from None


def parse_value(text: str) -> Any:
    """An override's value: YAML read with :class:`ConfigLoader`; empty text is None.

    ``parse_value("1e-3") == 0.001``, ``parse_value("off") == "off"``,
    ``parse_value("[80, 90]") == [80, 90]``.
    """
    return None if not text.strip() else load_yaml(text, source=f"value {text!r}")


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (an empty file gives ``{}``).

    Raises:
        FileNotFoundError: naming ``path``, when it does not exist.
        ConfigError: a folder, text that is not UTF-8 (naming the byte offset), invalid
            YAML (naming line and column), or a document that is not a mapping.
        OSError: the file cannot be read (permissions, ...), with its path.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder, not a YAML file")
    if not path.exists():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text ({exc.reason} at byte offset {exc.start})"
        ) from None
    loaded = load_yaml(text, source=str(path))
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(loaded).__name__}")
    return loaded or {}


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dicts of every field of a dataclass instance, defaults included."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"expected a dataclass instance, got {type(config).__name__}")
    return dataclasses.asdict(config)


def to_yaml(config: Any) -> str:
    """YAML text of a dataclass instance (or a mapping), in field order.

    Strings that a YAML reader could take for another type are quoted, so the text reads
    back to the same values, with :class:`ConfigLoader` or with any YAML 1.1 reader.
    """
    values = config if isinstance(config, Mapping) else to_dict(config)
    return yaml.dump(
        dict(values),
        Dumper=_ConfigDumper,
        sort_keys=False,
        default_flow_style=None,
        allow_unicode=True,
    )


# --------------------------------------------------------------------------- overrides

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def is_override(item: str) -> bool:
    """Whether a command-line word is a ``KEY=VALUE`` override: a dotted key of
    identifiers (``optim.lr``, ``steps``), ``=``, then anything."""
    key, equals, _ = item.partition("=")
    return bool(equals) and _KEY.fullmatch(key.strip()) is not None


def split_overrides(items: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(overrides, others)``: the ``KEY=VALUE`` words of ``items`` and the rest, each in
    their original order. The command line sends the overrides to a command's
    ``overrides`` (or ``configs``) argument and reports the others as unrecognised."""
    overrides, others = [], []
    for item in items:
        (overrides if is_override(item) else others).append(item)
    return overrides, others


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` as ``(["a", "b"], value)``, the value read by :func:`parse_value`."""
    key, equals, raw = text.partition("=")
    key = key.strip()
    if not equals or _KEY.fullmatch(key) is None:
        raise ConfigError(
            f"override {text!r} must look like section.key=value (a dotted key of names, "
            "'=', then a YAML value)"
        )
    if not raw.strip():
        return key.split("."), None
    return key.split("."), load_yaml(raw, source=f"override {text!r}")


def _deep_copy(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in values.items()}


def apply_overrides(values: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of nested dicts ``values`` with each ``a.b=value`` override set (the values
    are checked when the config is built from the result)."""
    result = _deep_copy(values)
    for text in overrides:
        parts, value = parse_override(text)
        target = result
        for depth, part in enumerate(parts[:-1]):
            node = target.get(part)
            if node is None:
                node = target[part] = {}
            if not isinstance(node, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {text!r}: {where} is a value, not a section")
            target = node
        target[parts[-1]] = value
    return result


# --------------------------------------------------------------------------- ranges


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


_BOUNDS = "neuralcollapse.bounds"


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric field, or of every entry of a list field.

    At most one lower limit (``ge``: >=, ``gt``: >) and one upper limit (``le``, ``lt``).
    Floats must also be finite unless ``allow_nonfinite`` (NaN then passes no limit).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    allow_nonfinite: bool = False

    def __post_init__(self) -> None:
        if self.ge is not None and self.gt is not None:
            raise TypeError("Bounds takes ge or gt, not both")
        if self.le is not None and self.lt is not None:
            raise TypeError("Bounds takes le or lt, not both")

    @property
    def has_limits(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.ge, self.gt, self.le, self.lt))

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies within the limits (no finiteness check)."""
        return not (
            (self.ge is not None and not value >= self.ge)
            or (self.gt is not None and not value > self.gt)
            or (self.le is not None and not value <= self.le)
            or (self.lt is not None and not value < self.lt)
        )

    def describe(self) -> str:
        """The range in words: ``'> 0'``, ``'>= 1'``, ``'in [0, 1)'``, ``'any number'``."""
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            left = "[" if self.ge is not None else "("
            right = "]" if self.le is not None else ")"
            return f"in {left}{_number_text(low)}, {_number_text(high)}{right}"
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {_number_text(low)}"
        if high is not None:
            return f"{'<=' if self.le is not None else '<'} {_number_text(high)}"
        return "any number"


def bounded(
    default: Any = MISSING,
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    allow_nonfinite: bool = False,
) -> Any:
    """A dataclass field whose numbers (or list entries) must lie in a range.

    ``lr: float = bounded(0.1, gt=0)``; ``betas: list[float] = bounded(default_factory=...,
    ge=0, lt=1)``. :func:`from_dict` enforces it, naming the key and the range.
    """
    bounds = Bounds(ge=ge, gt=gt, le=le, lt=lt, allow_nonfinite=allow_nonfinite)
    return dataclasses.field(
        default=default, default_factory=default_factory, metadata={_BOUNDS: bounds}
    )


def field_bounds(field: dataclasses.Field) -> Bounds | None:
    """The :class:`Bounds` a field was declared with by :func:`bounded`, or None."""
    return field.metadata.get(_BOUNDS)


# --------------------------------------------------------------------------- types

_TRUE_WORDS = frozenset({"true", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "no", "off"})


class _Mismatch(Exception):
    """A value of the wrong type (turned into a ConfigError by :func:`coerce`)."""


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _describe_type(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in get_args(annotation))
    if _is_union(annotation):
        return " or ".join(_describe_type(a) for a in get_args(annotation))
    if origin in (list, tuple):
        return f"a list of {_describe_type(get_args(annotation)[0])}"
    if origin is dict or annotation is dict:
        return "a mapping"
    if annotation is type(None):
        return "null"
    if annotation is bool:
        return "bool (true/false, yes/no, on/off)"
    return getattr(annotation, "__name__", str(annotation))


def _check_number(value: float, key: str, bounds: Bounds | None, nullable: bool) -> None:
    tail = " or null" if nullable else ""
    allow_nonfinite = bounds is not None and bounds.allow_nonfinite
    if isinstance(value, float) and not math.isfinite(value) and not allow_nonfinite:
        limits = f" {bounds.describe()}" if bounds is not None and bounds.has_limits else ""
        raise ConfigError(f"{key} must be a finite number{limits}{tail}, got {value}")
    if bounds is not None and not bounds.contains(value):
        raise ConfigError(f"{key} must be {bounds.describe()}{tail}, got {value!r}")


def _coerce(value: Any, annotation: Any, key: str, bounds: Bounds | None, nullable: bool) -> Any:
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin is Literal:
        if any(type(value) is type(a) and value == a for a in get_args(annotation)):
            return value
    elif _is_union(annotation):
        for option in get_args(annotation):
            try:
                return _coerce(value, option, key, bounds, nullable)
            except _Mismatch:
                continue
    elif origin is list or origin is tuple:
        if isinstance(value, (list, tuple)):
            args = get_args(annotation)
            if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
                if len(value) != len(args):
                    raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
                items = args
            else:
                items = (args[0] if args else Any,) * len(value)
            checked = [
                coerce(v, item, f"{key}[{i}]", bounds=bounds)
                for i, (v, item) in enumerate(zip(value, items, strict=True))
            ]
            return checked if origin is list else tuple(checked)
    elif origin is dict or annotation is dict:
        if isinstance(value, Mapping):
            key_type, value_type = get_args(annotation) or (Any, Any)
            return {
                coerce(k, key_type, f"{key} key"): coerce(v, value_type, f"{key}.{k}")
                for k, v in value.items()
            }
    elif annotation is type(None):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE_WORDS | _FALSE_WORDS:
            return value.lower() in _TRUE_WORDS
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            _check_number(value, key, bounds, nullable)
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_number(float(value), key, bounds, nullable)
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif dataclasses.is_dataclass(annotation):
        if value is None or isinstance(value, Mapping):
            return from_dict(annotation, value, prefix=f"{key}.")
    elif isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise _Mismatch


def coerce(value: Any, annotation: Any, key: str, *, bounds: Bounds | None = None) -> Any:
    """``value`` checked against the type ``annotation`` (and ``bounds``), converted where
    the type says so (an int for a float, a list for a tuple, ``'yes'`` for a bool).

    Raises:
        ConfigError: ``KEY: expected TYPE, got VALUE``, or ``KEY must be RANGE, got VALUE``.
    """
    nullable = _is_union(annotation) and type(None) in get_args(annotation)
    try:
        return _coerce(value, annotation, key, bounds, nullable)
    except _Mismatch:
        raise ConfigError(f"{key}: expected {_describe_type(annotation)}, got {value!r}") from None


@functools.cache
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _unknown_key(path: str, key: Any, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {path!r}{hint}; known keys here: {', '.join(known)}")


def from_dict(
    cls: type[T],
    values: Mapping[str, Any] | None,
    *,
    prefix: str = "",
    renamed: Mapping[str, str] | None = None,
    retired: Collection[str] = (),
) -> T:
    """An instance of the dataclass ``cls`` from (nested) dicts; missing keys keep their
    defaults, and a ``None`` section is an empty one.

    Args:
        cls: the dataclass; nested dataclass fields are sections.
        values: the keys to set.
        prefix: how the keys are named in messages (``"optim."``).
        renamed: old dotted key -> new one: an old key raises ConfigError
            "`old` was renamed to `new`".
        retired: dotted keys that are no longer read and are dropped silently (configs
            saved by older versions keep loading).

    Raises:
        ConfigError: an unknown key (with its closest match), a value of the wrong type, a
            number out of its :func:`bounded` range, or a non-finite float.
    """
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"{where}: expected a mapping of keys, got {values!r}")
    fields = _fields(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in fields:
            if path in retired:
                continue
            if renamed and path in renamed:
                raise ConfigError(f"`{path}` was renamed to `{renamed[path]}`")
            raise _unknown_key(path, key, list(fields))
        field, annotation = fields[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = from_dict(
                annotation, value, prefix=f"{path}.", renamed=renamed, retired=retired
            )
        else:
            kwargs[key] = coerce(value, annotation, path, bounds=field_bounds(field))
    return cls(**kwargs)
