"""Trained models as Hugging-Face-style directories: weights, config and preprocessing.

::

    nc.export.save_pretrained("runs/digits_lt-20260101-120000", "exported/digits")  # a run
    nc.export.save_pretrained(trainer, "exported/digits")                           # a Trainer
    nc.export.save_pretrained(model, "exported/m", config=config, input_shape=(1, 8, 8),
                              mean=(0.3,), std=(0.37,))                             # a model
    nc.export.save_pretrained(head, "exported/head")                                # a bare head

    model, preprocess = nc.load_pretrained("exported/digits", with_preprocess=True)
    logits = model(preprocess(raw_images))      # raw: as stored, e.g. uint8 or [0, 1] floats
    model = nc.load_pretrained("exported/digits")       # the model alone (eval mode, CPU)

The command line writes the same directory: ``neuralcollapse export RUN --out DIR``.

A directory holds three files:

* ``model.safetensors``: every tensor of the model's ``state_dict()``, the fixed frame
  (``head.frame``) included, in the safetensors format (no pickle, nothing executes on
  load);
* ``config.json``: the format marker and version, the architecture (the backbone's name
  and its resolved options, the head's constructor arguments), the parameters' dtype, the
  frame's metadata (kind, shape, dtype, scale, neck and the SHA-256 of its bytes), the
  class names and the whole training config when known;
* ``preprocessor_config.json`` (models with a backbone, when the normalisation is known):
  what turns a raw input into what the model was trained on, as the trainer's evaluation
  loader did it: pixel scale (uint8 divided by 255, floating point taken as [0, 1]), the
  per-channel ``image_mean`` / ``image_std`` the trainer normalised with, the stored
  sample shape and the central crop to ``crop_size``, the resize of decoded image files
  (``image_size``, ``resize``, colour mode) and the class names. :class:`Preprocessor`
  applies it; :func:`load_preprocessor` reads it alone.

:func:`load_pretrained` first checks the description against the weights file without
allocating anything (the model is built on the meta device; its parameter count is held
to :func:`neuralcollapse.models.limits.parameter_limit`, which ``max_parameters`` raises),
then rebuilds the backbone with :func:`neuralcollapse.models.build`, the head with
:func:`neuralcollapse.heads.head_from_config` (the frame is taken from the weights file,
not recomputed) and the pair as the trainer's
:class:`~neuralcollapse.train.build.Classifier`, loads every tensor strictly (same names,
shapes and dtypes: nothing is cast) and checks the frame's hash, so the frame and the
logits are bit-identical to the saved model's. Nothing is downloaded (a ``timm:``
backbone is built with ``pretrained=False``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import torch
from torch import Tensor, nn

from neuralcollapse._internal.files import atomic_write_bytes
from neuralcollapse._internal.jsonio import read_json, write_json
from neuralcollapse._internal.optional import optional_import
from neuralcollapse.errors import UsageError
from neuralcollapse.heads import FixedFrameHead, LearnableHead, head_from_config

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "PREPROCESSOR_NAME",
    "WEIGHTS_NAME",
    "Preprocessor",
    "load_preprocessor",
    "load_pretrained",
    "read_pretrained_config",
    "save_pretrained",
]

logger = logging.getLogger(__name__)

FORMAT = "neuralcollapse-pretrained"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSOR_NAME = "preprocessor_config.json"
PREPROCESSOR_FORMAT = "neuralcollapse-preprocessor"
PREPROCESSOR_VERSION = 1
PIXEL_SCALE = (
    "uint8 inputs are divided by 255; floating-point inputs are taken as already on [0, 1]"
)

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
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Path:
    """Write ``source`` as ``directory/model.safetensors`` + ``config.json`` (+
    ``preprocessor_config.json`` when the input normalisation is known).

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
        mean, std: for a Classifier, the per-channel normalisation (on the [0, 1] pixel
            scale) its inputs were trained with; with both, ``preprocessor_config.json`` is
            written. A run's or trainer's own normalisation is recorded anyway.

    Returns:
        The directory.

    Raises:
        UsageError: an unsupported source, missing ``config``/``input_shape``, a config
            that does not build this model's backbone, or an unreadable run or checkpoint.
    """
    model, info, preprocessing = _resolve_source(source, config, input_shape, checkpoint)
    if (mean is None) != (std is None):
        raise UsageError("save_pretrained needs both mean= and std= (one value per channel)")
    if mean is not None:
        if preprocessing is not None or "input_shape" not in info:
            raise UsageError(
                "mean= and std= describe a Classifier's inputs; a run or a Trainer records "
                "its own normalisation, and a bare head has no inputs to normalise"
            )
        preprocessing = _preprocessing(info["input_shape"], info["input_shape"], mean, std)
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
    if preprocessing is not None:
        preprocessing["class_names"] = names
        write_json(directory / PREPROCESSOR_NAME, preprocessing)
    write_json(directory / CONFIG_NAME, document)
    logger.info("exported %s to %s", type(model).__name__, directory)
    return directory


Resolved = tuple[nn.Module, dict[str, Any], dict[str, Any] | None]


def _resolve_source(
    source: Any, config: Any, input_shape: Sequence[int] | None, checkpoint: str | None
) -> Resolved:
    """The model to save, the config.json entries that describe it, and its
    preprocessor_config.json entries (None when unknown)."""
    if isinstance(source, (FixedFrameHead, LearnableHead)):
        return source, _describe(source, None, None, None), None
    if isinstance(source, (str, Path)):
        return _from_run(Path(source), checkpoint, input_shape)
    if _is_trainer(source):
        from neuralcollapse.train.assembly import input_shape as sample_shape

        shape = sample_shape(source.data, source.config.data.crop_size)
        names = list(source.data.class_names)
        info = _describe(source.model, source.config, shape, names)
        return source.model, info, _data_preprocessing(source.data, source.config, shape)
    from neuralcollapse.train.build import Classifier

    if isinstance(source, Classifier):
        if config is None or input_shape is None:
            raise UsageError(
                "save_pretrained(Classifier, ...) needs config= (the training config that "
                "built it) and input_shape= (C, H, W of one sample); or pass the Trainer or "
                "the run directory, which know both"
            )
        info = _describe(source, _as_config(config), _as_shape(input_shape), None)
        return source, info, None
    raise UsageError(
        f"save_pretrained cannot export a {type(source).__name__}: pass a run directory, "
        "a checkpoint file, a Trainer, a Classifier (with config= and input_shape=) or a "
        "FixedFrameHead / LearnableHead"
    )


def _is_trainer(source: Any) -> bool:
    from neuralcollapse.train.trainer import Trainer

    return isinstance(source, Trainer)


def _from_run(path: Path, checkpoint: str | None, input_shape: Sequence[int] | None) -> Resolved:
    """The model of a run directory's (or a checkpoint file's) checkpoint, rebuilt the way
    ``neuralcollapse eval`` does."""
    from neuralcollapse.rundir import RunDir
    from neuralcollapse.train.assembly import assemble
    from neuralcollapse.train.assembly import input_shape as sample_shape
    from neuralcollapse.train.checkpoint import load_checkpoint
    from neuralcollapse.train.config import config_from_dict

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
    shape = shape or sample_shape(data, config.data.crop_size)
    info = _describe(model, config, shape, list(data.class_names))
    info["source"] = {"checkpoint": str(file), "epoch": state.get("epoch")}
    return model, info, _data_preprocessing(data, config, shape)


def _data_preprocessing(data: Any, config: Any, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """preprocessor_config.json entries of a run's data: what its evaluation loader did."""
    from neuralcollapse.data.datasets import dataset_traits

    images = getattr(data.test, "images", None)
    sample = images[0] if images is not None else data.test[0][0]
    entries = _preprocessing(tuple(sample.shape), input_shape, data.mean, data.std)
    cfg = config.data
    entries["crop_size"] = cfg.crop_size
    entries["stored_dtype"] = str(sample.dtype).removeprefix("torch.")
    if dataset_traits(cfg.name).image_files:
        trim = 0
        if cfg.name == "fgvc_aircraft" and cfg.crop_banner:
            from neuralcollapse.data.formats.aircraft import AIRCRAFT_BANNER_ROWS

            trim = AIRCRAFT_BANNER_ROWS
        entries["image_files"] = {
            "image_size": cfg.image_size,
            "resize": cfg.resize,
            "mode": "L" if sample.shape[0] == 1 else "RGB",
            "trim_bottom": trim,
        }
    return entries


def _preprocessing(
    sample_shape: Sequence[int],
    input_shape: Sequence[int],
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> dict[str, Any]:
    channels = int(sample_shape[0])
    for label, values in (("mean", mean), ("std", std)):
        if values is not None and len(values) != channels:
            raise UsageError(
                f"{label} has {len(values)} values but the inputs have {channels} channel(s); "
                "give one value per channel"
            )
    return {
        "format": PREPROCESSOR_FORMAT,
        "format_version": PREPROCESSOR_VERSION,
        "sample_shape": [int(n) for n in sample_shape],
        "input_shape": [int(n) for n in input_shape],
        "pixel_scale": PIXEL_SCALE,
        "image_mean": None if mean is None else [float(v) for v in mean],
        "image_std": None if std is None else [float(v) for v in std],
        "crop_size": None,
        "image_files": None,
    }


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
    info["dtype"] = _parameter_dtype(model)
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


def _parameter_dtype(model: nn.Module) -> str:
    """The floating dtype of the model's parameters (one for all: load casts nothing)."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) > 1:
        raise UsageError(
            f"the model mixes parameter dtypes {sorted(str(d) for d in dtypes)}; convert it "
            "to one (e.g. model.float()) before exporting"
        )
    dtype = dtypes.pop() if dtypes else torch.float32
    return str(dtype).removeprefix("torch.")


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
    from neuralcollapse._version import __version__

    return __version__


def _safetensors() -> Any:
    # a dependency: only a broken environment lacks it
    return optional_import(
        "safetensors.torch",
        package="safetensors",
        purpose="neuralcollapse.export (safetensors is a dependency of neuralcollapse)",
        install="pip install safetensors",
    )


# --------------------------------------------------------------------------- loading
def read_pretrained_config(directory: PathLike) -> dict[str, Any]:
    """The checked ``config.json`` of a directory written by :func:`save_pretrained`.

    Raises:
        FileNotFoundError: no such directory, or no config.json in it.
        UsageError: config.json is not JSON, not of this format, or of a version this
            neuralcollapse does not read.
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
    document = _read_document(path)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError(
            f'{str(path)!r} is not a neuralcollapse export (no "format": "{FORMAT}"); '
            "it was written by another program"
        )
    _check_version(path, document.get("format_version"), FORMAT_VERSION)
    missing = [key for key in ("model_type", "architecture") if key not in document]
    if missing or document["model_type"] not in ("head", "classifier"):
        raise UsageError(
            f"{str(path)!r} lacks {missing or ['a valid model_type']}; the export is damaged: "
            "save it again"
        )
    return document


def _read_document(path: Path) -> Any:
    try:
        return read_json(path)
    except ValueError as err:
        raise UsageError(f"{err}; the export is damaged: save it again") from None
    except RecursionError:
        raise UsageError(
            f"{str(path)!r} is nested too deeply to be an export's JSON; the export is "
            "damaged: save it again"
        ) from None


def _check_version(path: Path, version: Any, newest: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UsageError(
            f"{str(path)!r} has format_version {version!r}; a valid export has a positive "
            "integer: the file is damaged, save the model again"
        )
    if version > newest:
        raise UsageError(
            f"{str(path)!r} has format version {version}; this neuralcollapse reads up to "
            f"{newest}: upgrade neuralcollapse"
        )


@overload
def load_pretrained(
    directory: PathLike,
    *,
    map_location: str | torch.device = ...,
    with_preprocess: Literal[False] = ...,
    max_parameters: int | None = ...,
) -> nn.Module: ...


@overload
def load_pretrained(
    directory: PathLike,
    *,
    map_location: str | torch.device = ...,
    with_preprocess: Literal[True],
    max_parameters: int | None = ...,
) -> tuple[nn.Module, Preprocessor]: ...


def load_pretrained(
    directory: PathLike,
    *,
    map_location: str | torch.device = "cpu",
    with_preprocess: bool = False,
    max_parameters: int | None = None,
) -> nn.Module | tuple[nn.Module, Preprocessor]:
    """The model saved by :func:`save_pretrained`, rebuilt, loaded and in eval mode.

    The model takes *preprocessed* inputs, exactly as training fed it; with
    ``with_preprocess=True`` the :class:`Preprocessor` that turns raw inputs (stored
    images, uint8 or [0, 1] floats, or image files) into them comes with it::

        model, preprocess = load_pretrained("exported/digits", with_preprocess=True)
        predicted = model(preprocess(images)).argmax(dim=1)

    Args:
        directory: the export directory.
        map_location: device for the weights and the model (default CPU); it must exist
            on this machine.
        with_preprocess: also return the Preprocessor of ``preprocessor_config.json``.
        max_parameters: the largest model (parameters + buffers) to build; default
            :func:`neuralcollapse.models.limits.parameter_limit` (10^9, or
            ``$NEURALCOLLAPSE_MAX_PARAMETERS``).

    Returns:
        A :class:`~neuralcollapse.train.build.Classifier` (``backbone`` + ``head``;
        ``model(x, return_features=True)`` gives ``(logits, h)``) or the bare head; with
        ``with_preprocess``, the pair ``(model, preprocess)``.

    Raises:
        FileNotFoundError: no directory, config.json or model.safetensors.
        UsageError: a damaged or foreign file, a model above the size limit, tensors that
            do not fit the architecture (names, shapes or dtypes), a frame whose bytes
            differ from the hash in config.json, an unavailable ``map_location``, or (with
            ``with_preprocess``) no preprocessor_config.json.
    """
    directory = Path(directory)
    document = read_pretrained_config(directory)
    device = _check_device(map_location)
    preprocess = load_preprocessor(directory) if with_preprocess else None
    weights = directory / WEIGHTS_NAME
    header = _read_header(weights)
    head_config = _head_config(document, directory)
    prefix = "head." if document["model_type"] == "classifier" else ""
    frame = None
    if head_config.get("type") == "FixedFrameHead":
        frame = _read_frame(weights, header, f"{prefix}frame")
    dtype = _recorded_dtype(document, directory)
    # Everything is checked on a skeleton first: no memory is allocated for a model whose
    # description is damaged or oversized.
    with torch.device("meta"):
        skeleton = _build(document, head_config, frame, directory).to(dtype)
    from neuralcollapse.models.limits import check_parameter_count

    expected = {k: (tuple(v.shape), v.dtype) for k, v in skeleton.state_dict().items()}
    check_parameter_count(
        sum(int(np.prod(shape)) for shape, _ in expected.values()),
        f"the model of {str(directory / CONFIG_NAME)!r}",
        max_parameters,
    )
    _check_tensors(expected, header, weights)
    if frame is not None:
        _check_frame_hash(frame, document, directory)
    tensors = _read_weights(weights)
    with torch.device("cpu"):
        model = _build(document, head_config, frame, directory).to(dtype)
    model.load_state_dict(tensors, strict=True)
    model = model.to(device).eval()
    return (model, preprocess) if with_preprocess else model


def _head_config(document: Mapping[str, Any], directory: Path) -> Mapping[str, Any]:
    architecture = document["architecture"]
    head_config = architecture.get("head") if isinstance(architecture, Mapping) else None
    if not isinstance(head_config, Mapping):
        raise UsageError(
            f"{str(directory / CONFIG_NAME)!r} has no architecture.head; the export is "
            "damaged: save it again"
        )
    return head_config


def _build(
    document: Mapping[str, Any],
    head_config: Mapping[str, Any],
    frame: Tensor | None,
    directory: Path,
) -> nn.Module:
    """The model config.json describes, on the current default device."""
    try:
        head = head_from_config(head_config, frame)
        if document["model_type"] == "head":
            return head
        from neuralcollapse import models
        from neuralcollapse.train.build import Classifier

        spec = document["architecture"]["backbone"]
        backbone = _build_backbone(models, spec["name"], dict(spec["options"]))
        return Classifier(backbone, head)
    except UsageError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UsageError(
            f"{str(directory / CONFIG_NAME)!r} does not describe a model this neuralcollapse "
            f"can build ({type(err).__name__}: {_first_line(err)}); the export is damaged or "
            "from another version"
        ) from None


def _recorded_dtype(document: Mapping[str, Any], directory: Path) -> torch.dtype:
    name = document.get("dtype", "float32")
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise UsageError(
            f"{str(directory / CONFIG_NAME)!r} records dtype {name!r}, not a floating-point "
            "torch dtype; the export is damaged: save it again"
        )
    return dtype


def _check_device(map_location: str | torch.device) -> torch.device:
    """``map_location`` as a device that exists here (a one-line error otherwise)."""
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as err:
        raise UsageError(
            f"map_location={map_location!r} is not a device ({_first_line(err)}); use e.g. "
            "'cpu' or 'cuda'"
        ) from None
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError, AttributeError) as err:
        raise UsageError(
            f"map_location={map_location!r} is not available on this machine "
            f"({_first_line(err)}); load with map_location='cpu'"
        ) from None
    return device


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def _read_header(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of every tensor in a safetensors file, read from its header
    alone (no tensor data is loaded)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist; the export lacks its weights: save it again"
        )
    _safetensors()
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = {}
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                piece = handle.get_slice(key)
                header[key] = (tuple(piece.get_shape()), _safetensors_dtype(piece.get_dtype()))
            return header
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise _corrupt(path, err) from None


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _safetensors_dtype(name: str) -> torch.dtype | str:
    return _SAFETENSORS_DTYPES.get(name, name)


def _corrupt(path: Path, err: BaseException) -> UsageError:
    return UsageError(
        f"{str(path)!r} cannot be read as safetensors weights ({type(err).__name__}: "
        f"{_first_line(err)[:160]}); it is truncated or corrupt: save the model again"
    )


def _read_frame(path: Path, header: Mapping[str, tuple[tuple[int, ...], Any]], name: str) -> Tensor:
    if name not in header:
        raise UsageError(f"{WEIGHTS_NAME} holds no '{name}' tensor; the export is damaged")
    shape, _ = header[name]
    if len(shape) != 2:
        raise UsageError(
            f"'{name}' in {str(path)!r} has shape {list(shape)}, not (K, d); the export is damaged"
        )
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return handle.get_tensor(name)
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise _corrupt(path, err) from None


def _read_weights(path: Path) -> dict[str, Tensor]:
    safetensors_torch = _safetensors()
    try:
        return safetensors_torch.load_file(path, device="cpu")
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
        raise _corrupt(path, err) from None


def _check_tensors(
    expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
    found: Mapping[str, tuple[tuple[int, ...], Any]],
    path: Path,
) -> None:
    """Same names, shapes and dtypes in the file as in the model (nothing is cast)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    common = set(expected) & set(found)
    wrong = sorted(k for k in common if expected[k][0] != found[k][0])
    cast = sorted(k for k in common if k not in wrong and expected[k][1] != found[k][1])
    if not (missing or unexpected or wrong or cast):
        return
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
    if cast:
        shown = ", ".join(
            f"{k} is {str(found[k][1]).removeprefix('torch.')} not "
            f"{str(expected[k][1]).removeprefix('torch.')}"
            for k in cast[:3]
        )
        parts.append(f"{len(cast)} of another dtype ({shown}; loading would cast them)")
    raise UsageError(
        f"the weights in {str(path)!r} do not fit the architecture of its config.json: "
        f"tensors {'; '.join(parts)}; the export is damaged or its files come from "
        "different models: save it again"
    )


def _check_frame_hash(frame: Tensor, document: Mapping[str, Any], directory: Path) -> None:
    meta = document.get("frame")
    if not isinstance(meta, Mapping) or not isinstance(meta.get("sha256"), str):
        raise UsageError(
            f"{str(directory / CONFIG_NAME)!r} records no frame hash (frame.sha256) for its "
            "fixed-frame head, so its frame cannot be verified; the export is damaged: "
            "save it again"
        )
    if meta["sha256"] != _frame_hash(frame):
        raise UsageError(
            f"the frame in {str(directory / WEIGHTS_NAME)!r} differs from the one its "
            f"config.json records (SHA-256 {meta['sha256'][:12]}...); the weights "
            "were changed or come from another model"
        )


# --------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocessor:
    """Raw inputs -> the tensor the model was trained on, as the trainer's evaluation loader
    made it (the contents of ``preprocessor_config.json``).

    Calling it on a batch:

    1. image files (a path or a list of paths) are decoded with Pillow in ``image_mode``,
       their bottom ``trim_bottom`` rows dropped and resized to ``image_size`` as the data
       set's loader did (``resize``: stretched, or scaled and centre-cropped);
    2. tensors or arrays, (C, H, W) or (B, C, H, W), of the stored sample shape: uint8 is
       divided by 255, floating point is taken as already on [0, 1];
    3. ``(x - image_mean) / image_std`` per channel, in float32;
    4. the central ``crop_size`` square when the samples are larger.

    Returns a (B, C, h, w) float32 tensor on the inputs' device (CPU for files).
    """

    sample_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    image_mean: tuple[float, ...] | None
    image_std: tuple[float, ...] | None
    crop_size: int | None = None
    image_size: int | None = None
    resize: str = "stretch"
    image_mode: str = "RGB"
    trim_bottom: int = 0
    class_names: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Preprocessor:
        """From the dict of ``preprocessor_config.json``. Raises ValueError on bad entries."""
        files = document.get("image_files") or {}
        mean, std = document.get("image_mean"), document.get("image_std")
        names = document.get("class_names")
        return cls(
            sample_shape=tuple(int(n) for n in document["sample_shape"]),
            input_shape=tuple(int(n) for n in document["input_shape"]),
            image_mean=None if mean is None else tuple(float(v) for v in mean),
            image_std=None if std is None else tuple(float(v) for v in std),
            crop_size=document.get("crop_size"),
            image_size=files.get("image_size"),
            resize=files.get("resize", "stretch"),
            image_mode=files.get("mode", "RGB" if document["sample_shape"][0] == 3 else "L"),
            trim_bottom=int(files.get("trim_bottom", 0)),
            class_names=None if names is None else tuple(str(n) for n in names),
        )

    def __call__(self, inputs: Any) -> Tensor:
        """Raw inputs (see the class docstring) -> (B, C, h, w) float32 model inputs."""
        from neuralcollapse.data import center_crop, normalize

        images = self._as_batch(inputs)
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise UsageError(
                f"inputs of dtype {str(images.dtype).removeprefix('torch.')}: give uint8 "
                "pixels or floating-point values on [0, 1]"
            )
        shape = tuple(images.shape[1:])
        if shape not in (self.sample_shape, self.input_shape):
            raise UsageError(
                f"inputs of shape {list(shape)} per sample; this model takes samples of "
                f"shape {list(self.sample_shape)} (decode image files by passing their paths, "
                "which resizes them)"
            )
        out = normalize(images, self.image_mean, self.image_std)
        if self.crop_size is not None and self.crop_size < min(out.shape[-2:]):
            out = center_crop(out, self.crop_size)
        return out

    def _as_batch(self, inputs: Any) -> Tensor:
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        if (
            isinstance(inputs, (list, tuple))
            and inputs
            and isinstance(inputs[0], (str, os.PathLike))
        ):
            return torch.stack([self._decode(path) for path in inputs])
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(np.ascontiguousarray(inputs))
        if not isinstance(inputs, Tensor):
            raise UsageError(
                f"preprocess takes a tensor or array (C, H, W) / (B, C, H, W), or image file "
                f"paths; got {type(inputs).__name__}"
            )
        if inputs.dim() == len(self.sample_shape):
            inputs = inputs.unsqueeze(0)
        if inputs.dim() != len(self.sample_shape) + 1:
            raise UsageError(
                f"inputs of shape {list(inputs.shape)}: give one sample "
                f"{list(self.sample_shape)} or a batch (B, *{list(self.sample_shape)})"
            )
        return inputs

    def _decode(self, path: str | os.PathLike[str]) -> Tensor:
        from neuralcollapse.data import decode_image

        size = self.image_size if self.image_size is not None else tuple(self.sample_shape[1:])
        with _usage_errors():
            return decode_image(
                path, self.image_mode, size, resize=self.resize, trim_bottom=self.trim_bottom
            )


def _usage_errors() -> Any:
    from neuralcollapse.errors import usage_errors

    return usage_errors("preprocess")


def load_preprocessor(directory: PathLike) -> Preprocessor:
    """The :class:`Preprocessor` of an export's ``preprocessor_config.json``.

    Raises:
        FileNotFoundError: no directory.
        UsageError: no preprocessor_config.json (a bare head, or a model exported without
            its normalisation: export the run or the Trainer, or pass mean= and std=), or a
            damaged one.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"pretrained directory {str(directory)!r} does not exist (or is not a directory)"
        )
    path = directory / PREPROCESSOR_NAME
    if not path.is_file():
        raise UsageError(
            f"{str(directory)!r} has no {PREPROCESSOR_NAME}, so how its inputs were "
            "normalised is unknown; export the run directory or the Trainer (or pass mean= "
            "and std= to save_pretrained)"
        )
    document = _read_document(path)
    if not isinstance(document, dict) or document.get("format") != PREPROCESSOR_FORMAT:
        raise UsageError(
            f'{str(path)!r} is not a neuralcollapse preprocessor config (no "format": '
            f'"{PREPROCESSOR_FORMAT}"); it was written by another program'
        )
    _check_version(path, document.get("format_version"), PREPROCESSOR_VERSION)
    try:
        return Preprocessor.from_dict(document)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise UsageError(
            f"{str(path)!r} has a bad entry ({type(err).__name__}: {_first_line(err)}); the "
            "export is damaged: save it again"
        ) from None
