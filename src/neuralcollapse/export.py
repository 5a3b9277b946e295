"""Trained models as Hugging-Face-style directories: safetensors weights + config.json.

::

    nc.export.save_pretrained("runs/digits_lt-20260101-120000", "exported/digits")  # a run
    nc.export.save_pretrained(trainer, "exported/digits")                           # a Trainer
    nc.export.save_pretrained(model, "exported/m", config=config, input_shape=(1, 8, 8))
    nc.export.save_pretrained(head, "exported/head")                                # a bare head

    model = nc.load_pretrained("exported/digits")       # eval mode, on the CPU
    logits, h = model(x, return_features=True)

A directory holds two files:

* ``model.safetensors``: every tensor of the model's ``state_dict()``, the fixed frame
  (``head.frame``) included, in the safetensors format (no pickle, nothing executes on
  load);
* ``config.json``: the format marker and version, the architecture (the backbone's name
  and its resolved options, the head's constructor arguments), the frame's metadata
  (kind, shape, dtype, scale, neck and the SHA-256 of its bytes), the class names and the
  whole training config when known.

:func:`load_pretrained` rebuilds the backbone with :func:`neuralcollapse.models.build`,
the head with :func:`neuralcollapse.heads.head_from_config` (the frame is taken from the
weights file, not recomputed) and the pair as the trainer's
:class:`~neuralcollapse.train.build.Classifier`, loads every tensor strictly and checks the
frame's hash, so the frame and the logits are bit-identical to the saved model's. Nothing
is downloaded (a ``timm:`` backbone is built with ``pretrained=False``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neuralcollapse._internal.files import atomic_write_bytes
from neuralcollapse._internal.jsonio import read_json, write_json
from neuralcollapse.errors import UsageError
from neuralcollapse.heads import FixedFrameHead, LearnableHead, head_from_config

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "load_pretrained",
    "read_pretrained_config",
    "save_pretrained",
]

FORMAT = "neuralcollapse-pretrained"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

PathLike = str | Path


# --------------------------------------------------------------------------- saving
def save_pretrained(
    source: Any,
    directory: PathLike,
    *,
    config: Any = None,
    input_shape: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    checkpoint: str | None = None,
) -> Path:
    """Write ``source`` as ``directory/model.safetensors`` + ``directory/config.json``.

    Args:
        source: what to export:

            * a run directory or a checkpoint file (``str`` or ``Path``): the model of the
              checkpoint (see ``checkpoint``) with its training config. The
              model is rebuilt by the trainer's own builder, which reads the data set
              once for its input shape, class names and class tree: the data must be
              readable where this runs;
            * a :class:`~neuralcollapse.train.Trainer` (its model, config and data);
            * a :class:`~neuralcollapse.train.build.Classifier` (``backbone`` + ``head``,
              as ``build_model`` makes): needs ``config`` (its training config, whose
              ``model.name`` and ``model.options`` built the backbone) and
              ``input_shape``;
            * a bare :class:`~neuralcollapse.heads.FixedFrameHead` or
              :class:`~neuralcollapse.heads.LearnableHead`.
        directory: created if missing; the two files in it are replaced atomically
            (weights first, config.json last), other files are left alone.
        config: the training :class:`~neuralcollapse.train.config.Config` (or its dict)
            of a Classifier; ignored for the other sources, which know theirs.
        input_shape: ``(C, H, W)`` (or ``(features,)``) of one input sample, for a
            Classifier: it fills the backbone's input options as training did.
        class_names: optional K class names to record (a run's or trainer's are recorded
            anyway).
        checkpoint: for a run directory, ``"best"`` or ``"last"``; default: ``best.pt``
            when the run has one (it selects one only when it evaluates), else ``last.pt``.

    Returns:
        The directory.

    Raises:
        UsageError: an unsupported source, missing ``config``/``input_shape``, a config
            that does not build this model's backbone, or an unreadable run or checkpoint.
    """
    model, info = _resolve_source(source, config, input_shape, checkpoint)
    if class_names is not None:
        info["class_names"] = [str(name) for name in class_names]
    names = info.get("class_names")
    num_classes = _head_of(model).num_classes
    if names is not None and len(names) != num_classes:
        raise UsageError(
            f"class_names has {len(names)} names but the model has {num_classes} classes; "
            "pass one name per class"
        )
    tensors = {
        name: tensor.detach().to("cpu").contiguous().clone()
        for name, tensor in model.state_dict().items()
    }
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "neuralcollapse_version": _package_version(),
        "torch_version": torch.__version__,
        **info,
    }
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{str(directory)!r} is a file; save_pretrained needs a directory")
    directory.mkdir(parents=True, exist_ok=True)
    safetensors_torch = _safetensors()
    atomic_write_bytes(
        directory / WEIGHTS_NAME,
        # One metadata entry: safetensors writes a map in no fixed order, and a single
        # entry keeps the file's bytes a function of the weights alone.
        safetensors_torch.save(tensors, metadata={"format": "pt"}),
    )
    write_json(directory / CONFIG_NAME, document)
    return directory


def _resolve_source(
    source: Any, config: Any, input_shape: Sequence[int] | None, checkpoint: str | None
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to save and the config.json entries that describe it."""
    if isinstance(source, (FixedFrameHead, LearnableHead)):
        return source, _describe(source, None, None, None)
    if isinstance(source, (str, Path)):
        return _from_run(Path(source), checkpoint, input_shape)
    if _is_trainer(source):
        from neuralcollapse.train.trainer import _input_shape

        shape = _input_shape(source.data, source.config.data.crop_size)
        names = list(source.data.class_names)
        return source.model, _describe(source.model, source.config, shape, names)
    from neuralcollapse.train.build import Classifier

    if isinstance(source, Classifier):
        if config is None or input_shape is None:
            raise UsageError(
                "save_pretrained(Classifier, ...) needs config= (the training config that "
                "built it) and input_shape= (C, H, W of one sample); or pass the Trainer or "
                "the run directory, which know both"
            )
        return source, _describe(source, _as_config(config), _as_shape(input_shape), None)
    raise UsageError(
        f"save_pretrained cannot export a {type(source).__name__}: pass a run directory, "
        "a checkpoint file, a Trainer, a Classifier (with config= and input_shape=) or a "
        "FixedFrameHead / LearnableHead"
    )


def _is_trainer(source: Any) -> bool:
    from neuralcollapse.train.trainer import Trainer

    return isinstance(source, Trainer)


def _from_run(
    path: Path, checkpoint: str | None, input_shape: Sequence[int] | None
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a run directory's (or a checkpoint file's) checkpoint, rebuilt the way
    ``neuralcollapse eval`` does."""
    from neuralcollapse.rundir import RunDir
    from neuralcollapse.train.checkpoint import load_checkpoint
    from neuralcollapse.train.config import config_from_dict
    from neuralcollapse.train.trainer import _input_shape, assemble

    if checkpoint not in (None, "best", "last"):
        raise UsageError(f"checkpoint must be 'best', 'last' or None, got {checkpoint!r}")
    if path.is_dir():
        file = RunDir(path).pick_checkpoint(checkpoint or "auto")
    elif path.is_file():
        file = path
    else:
        raise UsageError(f"{str(path)!r} is neither a run directory nor a checkpoint file")
    state = load_checkpoint(file)
    config = config_from_dict(state["config"])
    data, _, model = assemble(config, torch.device("cpu"))
    model.load_state_dict(state["model"])
    shape = _as_shape(input_shape) if input_shape is not None else None
    shape = shape or _input_shape(data, config.data.crop_size)
    info = _describe(model, config, shape, list(data.class_names))
    info["source"] = {"checkpoint": str(file), "epoch": state.get("epoch")}
    return model, info


def _as_config(config: Any) -> Any:
    from neuralcollapse.train.config import Config, config_from_dict

    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(dict(config))
    raise UsageError(
        f"config must be the training Config (or its dict), got {type(config).__name__}"
    )


def _as_shape(shape: Sequence[int]) -> tuple[int, ...]:
    if (
        not isinstance(shape, Sequence)
        or not shape
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape)
    ):
        raise UsageError(
            f"input_shape must be the shape of one sample, e.g. (3, 32, 32), got {shape!r}"
        )
    return tuple(shape)


def _describe(
    model: nn.Module,
    config: Any,
    input_shape: tuple[int, ...] | None,
    class_names: list[str] | None,
) -> dict[str, Any]:
    """config.json's description of ``model``: architecture, frame, training config."""
    head = _head_of(model)
    info: dict[str, Any] = {"model_type": "head" if model is head else "classifier"}
    architecture: dict[str, Any] = {"head": head.get_config()}
    if model is not head:
        from neuralcollapse.train.build import _input_options
        from neuralcollapse.train.config import config_to_dict

        name = config.model.name
        options = {**_input_options(name, input_shape), **config.model.options}
        architecture["backbone"] = {"name": name, "options": options}
        _check_backbone(model.backbone, name, options)
        info["input_shape"] = list(input_shape)
        info["training_config"] = config_to_dict(config)
    info["architecture"] = architecture
    info["num_classes"] = head.num_classes
    if isinstance(head, FixedFrameHead):
        info["frame"] = {
            "kind": None if config is None else config.head.kind,
            "shape": list(head.frame.shape),
            "dtype": str(head.frame.dtype).removeprefix("torch."),
            "scale": head.scale,
            "neck": head.neck_name,
            "sha256": _frame_hash(head.frame),
        }
    if class_names is not None:
        info["class_names"] = class_names
    return info


def _head_of(model: nn.Module) -> FixedFrameHead | LearnableHead:
    if isinstance(model, (FixedFrameHead, LearnableHead)):
        return model
    head = getattr(model, "head", None)
    if not isinstance(head, (FixedFrameHead, LearnableHead)):
        raise UsageError(
            f"the model's head is a {type(head).__name__}; save_pretrained exports "
            "FixedFrameHead and LearnableHead heads"
        )
    return head


def _check_backbone(backbone: nn.Module, name: str, options: dict[str, Any]) -> None:
    """Refuse a description that would not rebuild this backbone (built on the meta
    device: no memory, no initialisation cost)."""
    from neuralcollapse import models

    with torch.device("meta"):
        rebuilt = _build_backbone(models, name, options)
    mine = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if mine != theirs:
        differing = sorted(set(mine.items()) ^ set(theirs.items()))[:4]
        raise UsageError(
            f"model.name={name!r} with options {options} does not build this model's "
            f"backbone (differing tensors: {differing}); pass the config and input_shape "
            "the model was built with"
        )


def _build_backbone(models: Any, name: str, options: dict[str, Any]) -> nn.Module:
    if name.startswith("timm:"):
        options = {**options, "pretrained": False}  # the weights come from the file
    return models.build(name, **options)


def _frame_hash(frame: Tensor) -> str:
    data = frame.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def _package_version() -> str:
    from neuralcollapse import __version__

    return __version__


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError as err:  # a dependency; only a broken environment lacks it
        raise ImportError(
            "neuralcollapse.export needs the safetensors package (a dependency of "
            "neuralcollapse): pip install safetensors"
        ) from err
    return safetensors.torch


# --------------------------------------------------------------------------- loading
def read_pretrained_config(directory: PathLike) -> dict[str, Any]:
    """The checked ``config.json`` of a directory written by :func:`save_pretrained`.

    Raises:
        FileNotFoundError: no such directory, or no config.json in it.
        UsageError: config.json is not JSON, not of this format, or of a newer version.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"pretrained directory {str(directory)!r} does not exist (or is not a directory)"
        )
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(directory)!r} has no {CONFIG_NAME}; it was not written by "
            "nc.export.save_pretrained"
        )
    try:
        document = read_json(path)
    except ValueError as err:
        raise UsageError(f"{err}; the export is damaged: save it again") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError(
            f'{str(path)!r} is not a neuralcollapse export (no "format": "{FORMAT}"); '
            "it was written by another program"
        )
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UsageError(
            f"{str(path)!r} has format version {version!r}; this neuralcollapse reads up to "
            f"{FORMAT_VERSION}: upgrade neuralcollapse"
        )
    missing = [key for key in ("model_type", "architecture") if key not in document]
    if missing or document["model_type"] not in ("head", "classifier"):
        raise UsageError(
            f"{str(path)!r} lacks {missing or ['a valid model_type']}; the export is damaged: "
            "save it again"
        )
    return document


def load_pretrained(directory: PathLike, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model saved by :func:`save_pretrained`, rebuilt, loaded and in eval mode.

    Args:
        directory: the export directory.
        map_location: device for the weights and the model (default CPU).

    Returns:
        A :class:`~neuralcollapse.train.build.Classifier` (``backbone`` + ``head``;
        ``model(x, return_features=True)`` gives ``(logits, h)``) or the bare head.

    Raises:
        FileNotFoundError: no directory, config.json or model.safetensors.
        UsageError: a damaged or foreign file, tensors that do not fit the architecture,
            or a frame whose bytes differ from the hash in config.json.
    """
    directory = Path(directory)
    document = read_pretrained_config(directory)
    tensors = _read_weights(directory / WEIGHTS_NAME, map_location)
    architecture = document["architecture"]
    prefix = "head." if document["model_type"] == "classifier" else ""
    try:
        head_config = architecture["head"]
        frame = (
            tensors.get(f"{prefix}frame") if head_config.get("type") == "FixedFrameHead" else None
        )
        if head_config.get("type") == "FixedFrameHead" and frame is None:
            raise UsageError(
                f"{WEIGHTS_NAME} holds no '{prefix}frame' tensor; the export is damaged"
            )
        with torch.device(map_location):
            head = head_from_config(head_config, frame)
            model: nn.Module = head
            if document["model_type"] == "classifier":
                from neuralcollapse import models
                from neuralcollapse.train.build import Classifier

                backbone_spec = architecture["backbone"]
                backbone = _build_backbone(
                    models, backbone_spec["name"], dict(backbone_spec["options"])
                )
                model = Classifier(backbone, head)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(
            f"{str(directory / CONFIG_NAME)!r} does not describe a model this neuralcollapse "
            f"can build ({type(err).__name__}: {err}); the export is damaged or from "
            "another version"
        ) from None
    _load_strict(model, tensors, directory)
    _check_frame_hash(_head_of(model), document, directory)
    return model.eval()


def _read_weights(path: Path, map_location: str | torch.device) -> dict[str, Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; the export lacks its weights: save it again"
        )
    safetensors_torch = _safetensors()
    try:
        return safetensors_torch.load_file(path, device=str(torch.device(map_location)))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"{str(path)!r} cannot be read as safetensors weights ({type(err).__name__}: "
            f"{first[:160]}); it is truncated or corrupt: save the model again"
        ) from None


def _load_strict(model: nn.Module, tensors: dict[str, Tensor], directory: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("of another shape", wrong),
        ):
            if keys:
                parts.append(
                    f"{len(keys)} {label} ({', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''})"
                )
        raise UsageError(
            f"the weights in {str(directory / WEIGHTS_NAME)!r} do not fit the architecture of "
            f"its config.json: tensors {'; '.join(parts)}; the export is damaged or its "
            "files come from different models"
        )
    model.load_state_dict(tensors, strict=True)


def _check_frame_hash(
    head: FixedFrameHead | LearnableHead, document: Mapping[str, Any], directory: Path
) -> None:
    meta = document.get("frame")
    if not isinstance(head, FixedFrameHead) or not isinstance(meta, Mapping):
        return
    if meta.get("sha256") != _frame_hash(head.frame):
        raise UsageError(
            f"the frame in {str(directory / WEIGHTS_NAME)!r} differs from the one its "
            f"config.json records (SHA-256 {str(meta.get('sha256'))[:12]}...); the weights "
            "were changed or come from another model"
        )
