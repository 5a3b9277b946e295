"""Decoupled classifier learning (Kang et al. 2020): a second stage after the main training.

Kang et al. (*Decoupling Representation and Classifier for Long-Tailed Recognition*, ICLR
2020) keep the representation learnt with ordinary instance sampling and re-balance only
the classifier. With the backbone (and the head's neck) frozen, for a linear classifier
``z_k = <w_k, h> + b_k``:

* **cRT** (classifier re-training): re-initialise W and b, then train them with
  cross-entropy on class-balanced batches.
* **LWS** (learnable weight scaling): keep W and b, learn one scale per class with
  class-balanced batches, ``z_k = f_k (<w_k, h> + b_k)``, f initialised at 1; the scales
  are folded into W and b afterwards (``w_k <- f_k w_k``, ``b_k <- f_k b_k``).
* **tau-normalisation** (post hoc, no training): ``w_k <- w_k / ||w_k||^tau``; the bias is
  dropped (set to 0), as Kang et al. score the normalised weights alone. tau = 1 gives
  unit rows, tau = 0 leaves W unchanged.

cRT and LWS use SGD with momentum, the learning rate following a cosine from ``lr`` to 0
over the stage's epochs (per epoch: ``lr_e = lr (1 + cos(pi e / E)) / 2``), and plain
cross-entropy; Zhong et al. 2021 (MiSLAS) run this stage on CIFAR-LT for 10 epochs at lr
0.1, batch 128, weight decay 2e-4. In a run it is selected by ``train.stage2``
(``crt``, ``lws``, ``tau_norm``) with ``train.stage2_epochs``, ``train.stage2_lr``,
``train.stage2_sampling`` (``balanced`` by default, the data.sampling samplers) and
``train.stage2_tau``. The run directory records both stages: the stage-2 epochs continue
the numbering of ``metrics.jsonl`` (records carry ``"stage"``), and ``summary.json`` says
in ``stages`` which stage its final and best numbers come from. Stage 2 is not resumable
part-way: an interrupted stage 2 is run again, identically, on resume.

The frozen backbone's mode during cRT and LWS is ``train.stage2_backbone_mode``:

* ``eval`` (this project's default): BatchNorm normalises with its running statistics,
  which stay as stage 1 left them, and dropout is off; the features of a sample are the
  same in every stage-2 epoch and equal those the evaluation sees.
* ``train``: Kang et al.'s loop. Their ``train()`` puts every network, the frozen feature
  model included, in train mode at the start of each epoch (facebookresearch/
  classifier-balancing, run_networks.py:247-249), while ``fix: true`` only turns off the
  gradients of its parameters (run_networks.py:115-120; e.g.
  config/ImageNet_LT/cls_crt.yaml ``feat_model: fix: true``). So BatchNorm normalises
  with the statistics of each class-balanced batch and its running statistics move toward
  those of the re-balanced data, which the evaluation then uses (dropout, where a model
  has it, is on too).

In a plain loop (any model with ``backbone`` and a :class:`~neuralcollapse.heads.LearnableHead`
``head``)::

    retrain = ClassifierRetraining(model, "crt", lr=0.1, epochs=10, seed=0)
    for epoch in range(10):
        retrain.train_epoch(balanced_batches)  # (x, y) batches, e.g. data.sampling=balanced
    retrain.finish()
    tau_normalize_(model.head.classifier, tau=1.0)  # or this instead, post hoc
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
import torch.distributed
import torch.nn.functional as F
from torch import Tensor, nn

from neuralcollapse._internal.checks import check_float, check_int
from neuralcollapse._internal.seeding import derive_seed
from neuralcollapse.errors import ConfigError
from neuralcollapse.train.config import Config
from neuralcollapse.train.data import Batches, TrainingData
from neuralcollapse.train.distributed import DistContext, average_gradients, broadcast_buffers
from neuralcollapse.train.evaluation import EvalPlan, eval_plan

if TYPE_CHECKING:
    from neuralcollapse.train.log import RunLog
    from neuralcollapse.train.state import RunState

__all__ = [
    "METHODS",
    "ClassifierRetraining",
    "RunHost",
    "LearnableWeightScaling",
    "check_resume",
    "run_stage2",
    "stage_summary",
    "tau_normalize_",
]

METHODS = ("crt", "lws", "tau_norm")


def tau_normalize_(classifier: nn.Linear, tau: float) -> None:
    """Kang et al.'s tau-normalisation, in place: ``w_k <- w_k / ||w_k||^tau``, bias set to 0.

    Args:
        classifier: the (K, d) linear layer (its rows are the class vectors w_k).
        tau: >= 0; 1 makes every row a unit vector, 0 keeps the norms.
    """
    tau = check_float("tau", tau, minimum=0.0)
    with torch.no_grad():
        norms = classifier.weight.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            zero = torch.nonzero(norms.flatten() == 0).flatten().tolist()
            raise ValueError(f"classifier rows {zero[:10]} are zero: they have no direction")
        classifier.weight.div_(norms.pow(tau))
        if classifier.bias is not None:
            classifier.bias.zero_()


class LearnableWeightScaling(nn.Module):
    """Kang et al.'s LWS: ``(B, K) logits -> f * logits``, one learnable scale f_k per class
    (initialised at 1)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=1)
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, logits: Tensor) -> Tensor:
        return logits * self.scales.to(logits.dtype)

    def fold_(self, classifier: nn.Linear, weight: Tensor, bias: Tensor | None) -> None:
        """Write ``f_k w_k`` and ``f_k b_k`` (from the frozen ``weight`` and ``bias``) into
        ``classifier``, so that it alone gives the scaled logits."""
        with torch.no_grad():
            scales = self.scales.detach().to(weight.dtype)
            classifier.weight.copy_(scales[:, None] * weight)
            if bias is not None and classifier.bias is not None:
                classifier.bias.copy_(scales * bias)


def _classifier_of(model: nn.Module) -> nn.Linear:
    head = getattr(model, "head", None)
    classifier = getattr(head, "classifier", None)
    if not isinstance(classifier, nn.Linear) or getattr(head, "cosine", False):
        raise ValueError(
            "decoupled classifier learning needs a model with .backbone and a learnable "
            "linear head (LearnableHead without cosine): a fixed frame has nothing to re-train"
        )
    return classifier


class ClassifierRetraining:
    """cRT or LWS on a frozen representation (see the module doc).

    On construction every parameter of ``model`` is frozen (``requires_grad`` off); cRT
    then re-initialises the classifier (seeded, the same on every device) and trains it,
    LWS trains per-class scales of the frozen classifier. :meth:`finish` restores the
    ``requires_grad`` flags.

    Args:
        model: ``backbone`` + learnable linear ``head`` (its ``head.features`` give h).
        method: ``"crt"`` or ``"lws"``.
        lr: the initial learning rate of the cosine schedule (> 0).
        epochs: the stage's length, for the schedule (>= 1).
        momentum, weight_decay: of the SGD optimiser.
        seed: seeds the cRT re-initialisation.
        backbone_mode: ``"eval"`` (BatchNorm running statistics fixed, dropout off) or
            ``"train"`` (Kang et al.'s loop: batch statistics, running statistics
            moving); see the module doc.
        average_gradients: under several processes, averages the gradients of the given
            parameters across them (the trainer passes an all-reduce).
        sync_buffers: under several processes, makes the model's buffers (BatchNorm
            running statistics) those of the first process, after each epoch in train
            mode (the trainer passes a broadcast).
    """

    def __init__(
        self,
        model: nn.Module,
        method: str,
        *,
        lr: float,
        epochs: int,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        seed: int = 0,
        backbone_mode: Literal["eval", "train"] = "eval",
        average_gradients: Callable[[list[Tensor]], None] | None = None,
        sync_buffers: Callable[[nn.Module], None] | None = None,
    ) -> None:
        if method not in ("crt", "lws"):
            raise ValueError(f"method must be 'crt' or 'lws', got {method!r}")
        if backbone_mode not in ("eval", "train"):
            raise ValueError(f"backbone_mode must be 'eval' or 'train', got {backbone_mode!r}")
        self.backbone_mode, self.sync_buffers = backbone_mode, sync_buffers
        self.model, self.method = model, method
        self.classifier = _classifier_of(model)
        self.lr = check_float("lr", lr, minimum=0.0, strict_minimum=True)
        self.epochs = check_int("epochs", epochs, minimum=1)
        self.average_gradients = average_gradients
        self._flags = [(p, p.requires_grad) for p in model.parameters()]
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        device = self.classifier.weight.device
        self.scaling: LearnableWeightScaling | None = None
        if method == "crt":
            self._reinitialise(seed)
            params = list(self.classifier.parameters())
            for parameter in params:
                parameter.requires_grad_(True)
        else:
            self.weight = self.classifier.weight.detach().clone()
            bias = self.classifier.bias
            self.bias = None if bias is None else bias.detach().clone()
            self.scaling = LearnableWeightScaling(self.classifier.out_features).to(device)
            params = list(self.scaling.parameters())
        self.params = params
        self.optimizer = torch.optim.SGD(
            params, lr=self.lr, momentum=momentum, weight_decay=weight_decay
        )
        self.epoch = 0

    def _reinitialise(self, seed: int) -> None:
        """PyTorch's default Linear initialisation, drawn on the CPU from the seed."""
        layer = self.classifier
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "stage2-classifier"))
            fresh = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            layer.weight.copy_(fresh.weight)
            if layer.bias is not None:
                layer.bias.copy_(fresh.bias)

    def lr_at(self, epoch: int) -> float:
        """Cosine from ``lr`` (epoch 0) toward 0: ``lr (1 + cos(pi epoch / epochs)) / 2``."""
        return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / self.epochs))

    def logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(logits, h) of a batch: h from the frozen model, logits from what is trained."""
        with torch.no_grad():
            h = self.model.head.features(self.model.backbone(x))
        if self.scaling is None:
            return self.classifier(h), h
        return self.scaling(F.linear(h, self.weight, self.bias)), h

    def train_epoch(self, batches: Iterable[tuple[Tensor, Tensor]]) -> dict[str, float]:
        """One epoch of plain cross-entropy over ``batches``; returns ``loss``,
        ``batch_accuracy``, ``lr`` and ``steps`` (the loss and accuracy are averaged over
        this process's samples)."""
        lr = self.lr_at(self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # eval: frozen BatchNorm statistics, no dropout; train: Kang et al.'s loop
        self.model.train(self.backbone_mode == "train")
        totals = torch.zeros(3, dtype=torch.float64, device=self.classifier.weight.device)
        steps = 0
        for x, y in batches:
            logits, _ = self.logits(x)
            loss = F.cross_entropy(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.average_gradients is not None:
                self.average_gradients([p.grad for p in self.params if p.grad is not None])
            self.optimizer.step()
            correct = (logits.detach().argmax(1) == y).sum().double()
            seen = totals.new_tensor(float(y.shape[0]))
            totals += torch.stack([loss.detach().double() * y.shape[0], correct, seen])
            steps += 1
        if self.scaling is not None:
            self.scaling.fold_(self.classifier, self.weight, self.bias)
        if self.backbone_mode == "train" and self.sync_buffers is not None:
            self.sync_buffers(self.model)
        self.epoch += 1
        loss_sum, hits, count = totals.tolist()
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"the stage-2 ({self.method}) loss became {loss_sum} in its epoch {self.epoch}: "
                "lower train.stage2_lr"
            )
        count = max(count, 1.0)
        return {"loss": loss_sum / count, "batch_accuracy": hits / count, "lr": lr, "steps": steps}

    def finish(self) -> None:
        """Restore the model's ``requires_grad`` flags (the re-trained classifier stays)."""
        for parameter, flag in self._flags:
            parameter.requires_grad_(flag)


# --------------------------------------------------------------------------- in a run


def check_resume(saved: Config, requested: Config, stage2_done: bool) -> None:
    """A run whose stage 2 has finished cannot train its first stage further.

    Raises:
        ConfigError: naming train.epochs with its checkpoint and requested values.
    """
    if stage2_done and requested.train.epochs != saved.train.epochs:
        raise ConfigError(
            f"train.epochs cannot change when resuming a run whose stage 2 "
            f"(train.stage2={saved.train.stage2!r}) has finished (checkpoint "
            f"{saved.train.epochs}, requested {requested.train.epochs}); start a new run"
        )


def stage_summary(config: Config, best_epoch: int | None, done: bool) -> dict[str, Any]:
    """``summary.json``'s ``stages``: the first stage's length, the stage-2 method and its
    length in records, and the stage the final and the best numbers come from
    (``"stage1"`` or the method; ``done``: stage 2 has run)."""
    method = config.train.stage2
    first = config.train.epochs
    length = {"none": 0, "tau_norm": 1}.get(method, config.train.stage2_epochs)
    best_from = None
    if best_epoch is not None:
        best_from = method if method != "none" and best_epoch > first else "stage1"
    return {
        "stage1_epochs": first,
        "stage2": method,
        "stage2_epochs": length,
        "final_from": method if done else "stage1",
        "best_from": best_from,
    }


class RunHost(Protocol):
    """What stage 2 needs of the run it continues (the Trainer's public hooks)."""

    config: Config
    model: nn.Module
    data: TrainingData
    context: DistContext
    state: RunState

    def conclude_epoch(
        self,
        log: RunLog,
        record: dict[str, Any],
        plan: EvalPlan | None,
        started: float,
        *,
        epoch: int,
    ) -> dict[str, Any] | None: ...

    def save(self, name: str = "last") -> None: ...


def _stage2_batches(run: RunHost) -> Batches:
    """Training batches (augmented as in stage 1) drawn with ``train.stage2_sampling``."""
    config = run.config
    data = dataclasses.replace(config.data, sampling=config.train.stage2_sampling)
    return Batches(
        run.data.train,
        run.data,
        batch_size=config.train.batch_size,
        training=True,
        config=dataclasses.replace(config, data=data),
        context=run.context,
    )


def run_stage2(run: RunHost, log: RunLog) -> dict[str, Any] | None:
    """Stage 2 of a run, after its last stage-1 epoch (called by ``Trainer.fit``).

    Each stage-2 epoch is recorded like a training epoch (``"stage"`` added; evaluated on
    the schedule of :func:`~neuralcollapse.train.evaluation.eval_plan`, counted from the
    stage's first epoch, everything after its last) and enters the best-epoch tracking
    (both through ``run.conclude_epoch``); tau-normalisation records one fully evaluated
    epoch. Until the stage ends, ``run.state.epoch`` stays at the last stage-1 epoch (the
    one the last checkpoint holds); at the end the last checkpoint holds the final model
    with the stage marked done.

    Returns:
        The last evaluation (None when stage 2 is off or already done).
    """
    config, state = run.config, run.state
    method = config.train.stage2
    if method == "none" or state.stage2_done:
        return None
    stage = {"stage": method}
    if method == "tau_norm":
        started = time.perf_counter()
        tau_normalize_(_classifier_of(run.model), config.train.stage2_tau)
        epoch = state.epoch + 1
        record = {"epoch": epoch, **stage, "step": state.global_step}
        record["tau"] = config.train.stage2_tau
        plan = eval_plan(config, 1, last=True)
        evaluation = run.conclude_epoch(log, record, plan, started, epoch=epoch)
    else:
        epoch, evaluation = _retrain(run, log, method)
    state.epoch, state.stage2_done = epoch, True
    run.save("last")
    return evaluation


def _retrain(run: RunHost, log: RunLog, method: str) -> tuple[int, dict[str, Any] | None]:
    """cRT or LWS epochs in a run: (the last epoch's number, the last evaluation)."""
    config, state, context = run.config, run.state, run.context
    distributed = context.enabled
    retrain = ClassifierRetraining(
        run.model,
        method,
        lr=config.train.stage2_lr,
        epochs=config.train.stage2_epochs,
        momentum=config.optim.momentum,
        weight_decay=config.optim.weight_decay,
        seed=config.train.seed,
        backbone_mode=config.train.stage2_backbone_mode,
        average_gradients=average_gradients(context.world_size) if distributed else None,
        sync_buffers=broadcast_buffers if distributed else None,
    )
    batches = _stage2_batches(run)
    epoch, evaluation = state.epoch, None
    for index in range(config.train.stage2_epochs):
        started = time.perf_counter()
        batches.set_epoch(epoch)  # the numbering continues: a fresh order per epoch
        stats = retrain.train_epoch(batches)
        epoch += 1
        state.global_step += int(stats["steps"])
        record = {
            "epoch": epoch,
            "stage": method,
            "step": state.global_step,
            "lr": stats["lr"],
            "train_loss": stats["loss"],
            "train_batch_accuracy": stats["batch_accuracy"],
        }
        plan = eval_plan(config, index + 1, last=index + 1 == config.train.stage2_epochs)
        evaluation = run.conclude_epoch(log, record, plan, started, epoch=epoch) or evaluation
    retrain.finish()
    return epoch, evaluation
