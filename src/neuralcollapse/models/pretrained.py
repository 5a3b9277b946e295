"""Pretrained backbone weights from a local file (nothing is ever downloaded).

:func:`load_weights` reads a PyTorch state dict (``torch.save(model.state_dict(), path)``)
and loads it into a backbone. It also accepts the usual wrappers around one:

* a checkpoint dict holding the state dict under ``"state_dict"`` or ``"model"`` (this
  package's own checkpoints keep the whole classifier under ``"model"``: its
  ``backbone.`` entries are used);
* names carrying a prefix the backbone lacks (``module.`` from DataParallel,
  ``module.encoder_q.`` from MoCo, ``backbone.``), or lacking one it has (``model.`` of a
  ``timm:`` backbone): the prefix change that matches the most names is applied;
* torchvision's ResNet names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``downsample``)
  for this package's ``resnet18`` / ``resnet50`` (``stem``, ``stages``, ``shortcut``), so
  torchvision's ImageNet weights load into ``resnet50(stem="imagenet")``. Their ImageNet
  classifier (``fc.*``) has no place in a backbone and is reported as unexpected.

Strict loading (the default) refuses a file unless every backbone tensor is found and
every file tensor is used; ``strict=False`` loads the tensors whose names and shapes match
and ignores the rest, but still refuses a file of which nothing matches.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from neuralcollapse.data.files import DataFormatError

from .resnet import ResNet

__all__ = ["WeightsReport", "load_weights"]

_SHOWN = 8  # keys listed per kind in an error message


class WeightsReport(NamedTuple):
    """What :func:`load_weights` did: the backbone names it filled, the backbone names the
    file lacked, and the file names it did not use (each sorted)."""

    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def _read(path: Path) -> Mapping[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"model weights file {path} does not exist")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(
            f"{path} is not a PyTorch weights file that torch.load can read safely "
            f"(weights_only): {first}"
        ) from err
    state = _state_dict(content)
    if state is None:
        raise DataFormatError(
            f"{path} holds no state dict (a mapping of names to tensors, as "
            "torch.save(model.state_dict(), path) writes)"
        )
    return state


def _state_dict(content: Any) -> Mapping[str, Tensor] | None:
    if _is_state(content):
        return content
    if isinstance(content, Mapping):
        for key in ("state_dict", "model"):
            if _is_state(content.get(key)):
                inner = content[key]
                backbone = {
                    k[len("backbone.") :]: v for k, v in inner.items() if k.startswith("backbone.")
                }
                return backbone if backbone and any(k.startswith("head.") for k in inner) else inner
    return None


def _is_state(content: Any) -> bool:
    return (
        isinstance(content, Mapping)
        and bool(content)
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in content.items())
    )


_TORCHVISION = (
    (re.compile(r"^conv1\.(.+)$"), lambda m: f"stem.0.{m[1]}"),
    (re.compile(r"^bn1\.(.+)$"), lambda m: f"stem.1.{m[1]}"),
    (
        re.compile(r"^layer(\d)\.(\d+)\.downsample\.(.+)$"),
        lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}",
    ),
    (re.compile(r"^layer(\d)\.(.+)$"), lambda m: f"stages.{int(m[1]) - 1}.{m[2]}"),
)


def _torchvision_name(key: str) -> str:
    for pattern, rename in _TORCHVISION:
        match = pattern.match(key)
        if match:
            return rename(match)
    return key


def _prefixes(keys: list[str]) -> set[str]:
    found = {""}
    for key in keys:
        parts = key.split(".")
        for depth in (1, 2):
            if len(parts) > depth:
                found.add(".".join(parts[:depth]) + ".")
    return found


def _align(module: nn.Module, file_keys: list[str]) -> dict[str, str]:
    """backbone name -> file name, under the renaming that matches the most names."""
    targets = set(module.state_dict())
    common = os.path.commonprefix(sorted(targets)).rpartition(".")[0]
    additions = [""] + ([common + "."] if common else [])
    renames = [lambda k: k] + ([_torchvision_name] if isinstance(module, ResNet) else [])
    best: dict[str, str] = {}
    for strip in sorted(_prefixes(file_keys), key=len):
        for rename in renames:
            for add in additions:
                mapping: dict[str, str] = {}
                for key in file_keys:
                    if key.startswith(strip):
                        name = add + rename(key[len(strip) :])
                        if name in targets:
                            mapping.setdefault(name, key)
                if len(mapping) > len(best):
                    best = mapping
    return best


def _listing(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return f"{len(names)} {kind} ({shown}{more})"


def load_weights(
    module: nn.Module, path: str | os.PathLike[str], *, strict: bool = True
) -> WeightsReport:
    """Load a local state-dict file into ``module`` (a backbone), in place.

    Args:
        module: the backbone to fill.
        path: a file written by ``torch.save`` holding a state dict (or one of the wrappers
            the module docstring lists); read with ``weights_only=True``, so it cannot run
            code.
        strict: require every backbone tensor to be in the file and every file tensor to
            be used; False loads the matching tensors and ignores the rest.

    Returns:
        :class:`WeightsReport` of what was loaded, missing and unused.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: not a readable state dict; tensors whose shapes differ from the
            backbone's; strict loading with missing or unexpected names (the message lists
            them); or no name of the file matching the backbone at all.
    """
    path = Path(path).expanduser()
    state = _read(path)
    file_keys = list(state)
    mapping = _align(module, file_keys)
    own = module.state_dict()
    wrong_shape = [
        f"{name} {tuple(state[key].shape)} vs {tuple(own[name].shape)}"
        for name, key in mapping.items()
        if state[key].shape != own[name].shape
    ]
    if wrong_shape:
        raise DataFormatError(
            f"{path} does not fit this backbone: "
            f"{_listing('tensor(s) of another shape', wrong_shape)} (file vs backbone); build "
            "the backbone the weights were trained with"
        )
    used = set(mapping.values())
    missing = sorted(set(own) - set(mapping))
    unexpected = sorted(k for k in file_keys if k not in used)
    if not mapping:
        raise DataFormatError(
            f"{path}: none of its {len(file_keys)} tensor names matches this backbone "
            f"(file has e.g. {', '.join(file_keys[:3])}; backbone has e.g. "
            f"{', '.join(list(own)[:3])}); it holds weights of another architecture"
        )
    if strict and (missing or unexpected):
        parts = [
            _listing(kind, names)
            for kind, names in (("missing", missing), ("unexpected", unexpected))
            if names
        ]
        raise DataFormatError(
            f"{path} does not match the backbone exactly: {'; '.join(parts)}; fix the file, "
            "or load only the matching tensors with strict=False (model.weights_strict=false)"
        )
    module.load_state_dict({name: state[key] for name, key in mapping.items()}, strict=False)
    return WeightsReport(tuple(sorted(mapping)), tuple(missing), tuple(unexpected))
