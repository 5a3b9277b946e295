"""What a run is made of before its first step: data, loaders, model, and how it runs.

:func:`assemble` builds the data, loaders and model of a config on a device (the Trainer,
``neuralcollapse eval`` and the export use it alike); :func:`wrap_for_training` gives the
module the training step calls (DDP, SyncBatchNorm, ``torch.compile``);
:func:`deterministic_algorithms` switches on ``train.deterministic`` for the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from neuralcollapse.train.build import Classifier, build_model
from neuralcollapse.train.config import Config
from neuralcollapse.train.data import Loaders, TrainingData, build_loaders, load_training_data
from neuralcollapse.train.distributed import DistContext

__all__ = ["assemble", "deterministic_algorithms", "input_shape", "wrap_for_training"]


def input_shape(data: TrainingData, crop_size: int | None = None) -> tuple[int, ...]:
    """(C, H, W) the model sees: a sample's, or (C, crop, crop) under data.crop_size."""
    images = getattr(data.train, "images", None)
    shape = tuple(images.shape[1:]) if images is not None else tuple(data.train[0][0].shape)
    if crop_size is not None and len(shape) == 3 and crop_size < min(shape[1:]):
        return (shape[0], crop_size, crop_size)
    return shape


def assemble(
    config: Config, context: DistContext | torch.device
) -> tuple[TrainingData, Loaders, Classifier]:
    """Data, loaders and model of ``config`` on this process's device."""
    if isinstance(context, torch.device):
        context = DistContext(device=context)
    data = load_training_data(config)
    loaders = build_loaders(data, config, context)
    model = build_model(
        config, data.num_classes, input_shape(data, config.data.crop_size), data.hierarchy
    )
    return data, loaders, model.to(context.device)


def wrap_for_training(
    model: Classifier, config: Config, context: DistContext
) -> tuple[Classifier, nn.Module]:
    """(the plain model, what the training step calls): under torchrun the model with
    SyncBatchNorm when ``train.sync_bn`` and a DDP wrapper around it; compiled when
    ``train.compile``. The plain model is what checkpoints and evaluation use."""
    forward: nn.Module = model
    if context.enabled:
        if config.train.sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device = context.device
        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(model, device_ids=ids)
    return model, torch.compile(forward) if config.train.compile else forward


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool, device: torch.device) -> Iterator[None]:
    """``train.deterministic``: deterministic kernels for the duration (and cuBLAS's
    workspace setting that they need on CUDA), restored afterwards."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
