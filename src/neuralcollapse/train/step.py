"""One training epoch: micro-batches, gradient accumulation, AMP, clipping, the schedule.

:class:`TrainStep` holds what a step needs (the model, what the step calls, the loss, the
optimiser, the schedule and the gradient scaler) and trains one epoch with
:meth:`TrainStep.train_epoch`. The per-batch loss and hits stay on the device and are
summed (one host sync) every :data:`SYNC_EVERY` batches only, for the progress bar and
the NaN check; the fewer small operations per step, the closer to a bare loop.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Protocol

import torch
import torch.distributed
from torch import nn

from neuralcollapse._internal.seeding import derive_generator
from neuralcollapse.data import mixup
from neuralcollapse.train.build import Classifier
from neuralcollapse.train.config import Config
from neuralcollapse.train.data import Batches

__all__ = ["SYNC_EVERY", "Progress", "TrainStep"]

#: Batches between two host syncs of the running loss (NaN check, progress bar).
SYNC_EVERY = 20


class Progress(Protocol):
    """What an epoch reports to as it goes (the run's progress bar, or nothing)."""

    def update(self, steps: int = 1) -> Any: ...

    def set_postfix(self, **values: Any) -> Any: ...


class TrainStep:
    """The training step of a run.

    Args:
        config: the run's config (``train.*``, ``optim.grad_clip``).
        model: the plain model (its head's frame, its parameters for clipping).
        forward: what the step calls (``model``, or its DDP / compiled wrapper).
        loss_fn, optimizer, scheduler, scaler: of the run; the scheduler steps per
            optimiser step.
        distributed: sum the epoch's totals across processes.
    """

    def __init__(
        self,
        config: Config,
        model: Classifier,
        forward: nn.Module,
        loss_fn: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        *,
        distributed: bool = False,
    ) -> None:
        self.config, self.model, self.forward, self.loss_fn = config, model, forward, loss_fn
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.distributed = distributed
        self._no_sync = getattr(forward, "no_sync", None)  # DDP's, looked up once

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        amp = self.config.train.amp
        if amp == "off":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device.type, dtype=dtype)

    def _micro_step(self, x, targets, sync: bool, scale: float, frame: torch.Tensor | None):
        """Forward and backward of one micro-batch; gradients are synchronised across
        processes only on the last micro-batch of an optimiser step."""
        no_sync = self._no_sync
        context = contextlib.nullcontext() if sync or no_sync is None else no_sync()
        with context:
            with self._autocast(x.device):
                logits, h = self.forward(x, return_features=True)
                loss = self.loss_fn(logits, h, targets, frame)
            self.scaler.scale(loss if scale == 1 else loss * scale).backward()
        return loss.detach(), logits.detach()

    def _optimizer_step(self) -> None:
        if self.config.optim.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def train_epoch(
        self, loader: Batches, epoch: int, progress: Progress, *, first_step: int = 0
    ) -> dict[str, float]:
        """Train 0-based ``epoch`` over ``loader``.

        Returns:
            ``loss`` (the mean of the per-batch mean losses weighted by batch size),
            ``batch_accuracy`` (the fraction of training samples predicted right during
            the epoch), both over all processes when distributed, and ``steps`` (the
            optimiser steps taken).

        Raises:
            FloatingPointError: the loss became NaN or infinite (naming the epoch and the
                step, counted from ``first_step``).
        """
        cfg, accumulate = self.config, self.config.train.accumulate
        self.model.train()
        loader.set_epoch(epoch)
        self.loss_fn.set_epoch(epoch)  # deferred re-weighting switches here
        mix_rng = derive_generator(cfg.train.seed, "mixup", epoch)
        device = next(self.model.parameters()).device
        frame = getattr(self.model.head, "frame", None)  # a fixed head's buffer: fixed
        # Per micro-batch mean losses and hits stay on the device, summed (a host sync)
        # every SYNC_EVERY batches only.
        losses: list[torch.Tensor] = []
        correct: list[torch.Tensor] = []
        sizes: list[int] = []
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, seen
        batches, steps = len(loader), 0
        self.optimizer.zero_grad(set_to_none=True)
        for index, (x, y) in enumerate(loader):
            targets: Any = y
            if cfg.train.mixup_alpha > 0:
                x, y_a, y_b, lam = mixup(x, y, cfg.train.mixup_alpha, mix_rng)
                targets = (y_a, y_b, lam)
            boundary = (index + 1) % accumulate == 0 or index + 1 == batches
            loss, logits = self._micro_step(x, targets, boundary, 1 / accumulate, frame)
            losses.append(loss)
            correct.append((logits.argmax(1) == y).sum())
            sizes.append(y.shape[0])
            if boundary:
                self._optimizer_step()
                steps += 1
            progress.update(1)
            if index % SYNC_EVERY == 0 or index + 1 == batches:
                totals = totals + _sums(losses, correct, sizes, device)
                loss_sum, hits, count = totals.tolist()
                self._check_finite(loss_sum, epoch, first_step + steps)
                progress.set_postfix(
                    loss=f"{loss_sum / count:.4f}", acc=f"{hits / count:.3f}", lr=f"{self.lr:.2e}"
                )
        if self.distributed:
            torch.distributed.all_reduce(totals)
        loss_sum, hits, count = totals.tolist()
        count = max(count, 1)
        return {"loss": loss_sum / count, "batch_accuracy": hits / count, "steps": steps}

    @staticmethod
    def _check_finite(loss_sum: float, epoch: int, step: int) -> None:
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"the training loss became {loss_sum} in epoch {epoch + 1} (step "
                f"{step}): lower optim.lr or set optim.grad_clip"
            )


def _sums(
    losses: list[torch.Tensor], correct: list[torch.Tensor], sizes: list[int], device: torch.device
) -> torch.Tensor:
    """(3,) float64: the summed loss (per-batch means x batch sizes), correct predictions
    and samples of the micro-batches in the lists, which it empties (so each micro-batch
    is summed once)."""
    weights = torch.tensor(sizes, dtype=torch.float64, device=device)
    loss_sum = (torch.stack(losses).double() * weights).sum()
    sums = torch.stack([loss_sum, torch.stack(correct).sum().double(), weights.sum()])
    for pending in (losses, correct, sizes):
        pending.clear()
    return sums
