"""Decoupled classifier learning (Kang et al. 2020): a second stage after the main training.

Kang et al. (*Decoupling Representation and Classifier for Long-Tailed Recognition*, ICLR
2020) keep the representation learnt with ordinary instance sampling and re-balance only
the classifier. With the backbone (and the head's neck) frozen and in eval mode (BatchNorm
statistics fixed), for a linear classifier ``z_k = <w_k, h> + b_k``:

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
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed
import torch.nn.functional as F
from torch import Tensor, nn

from neuralcollapse._internal.checks import check_float, check_int
from neuralcollapse._internal.seeding import derive_seed
from neuralcollapse.errors import ConfigError
from neuralcollapse.train.config import Config
from neuralcollapse.train.data import Batches
from neuralcollapse.train.evaluation import EvalPlan, eval_plan

if TYPE_CHECKING:
    from neuralcollapse.train.log import RunLog
    from neuralcollapse.train.trainer import Trainer

__all__ = [
    "METHODS",
    "ClassifierRetraining",
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
        average_gradients: under several processes, averages the gradients of the given
            parameters across them (the trainer passes an all-reduce).
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
        average_gradients: Callable[[list[Tensor]], None] | None = None,
    ) -> None:
        if method not in ("crt", "lws"):
            raise ValueError(f"method must be 'crt' or 'lws', got {method!r}")
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
        self.model.eval()  # frozen BatchNorm statistics (and no dropout)
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


def _average_gradients(world_size: int) -> Callable[[list[Tensor]], None]:
    def average(grads: list[Tensor]) -> None:
        for grad in grads:
            torch.distributed.all_reduce(grad)
            grad.div_(world_size)

    return average


def _stage2_batches(trainer: Trainer) -> Batches:
    """Training batches (augmented as in stage 1) drawn with ``train.stage2_sampling``."""
    config = trainer.config
    data = dataclasses.replace(config.data, sampling=config.train.stage2_sampling)
    return Batches(
        trainer.data.train,
        trainer.data,
        batch_size=config.train.batch_size,
        training=True,
        config=dataclasses.replace(config, data=data),
        context=trainer.context,
    )


def run_stage2(trainer: Trainer, log: RunLog) -> dict[str, Any] | None:
    """Stage 2 of ``trainer``'s run, after its last stage-1 epoch (called by ``fit``).

    Each stage-2 epoch is recorded like a training epoch (``"stage"`` added; evaluated on
    the schedule of :func:`~neuralcollapse.train.evaluation.eval_plan`, counted from the
    stage's first epoch, everything after its last) and enters the best-epoch tracking;
    tau-normalisation records one fully evaluated epoch. At the end ``checkpoints/last.pt`` holds
    the final model with the stage marked done.

    Returns:
        The last evaluation (None when stage 2 is off or already done).
    """
    config = trainer.config
    method = config.train.stage2
    if method == "none" or trainer.stage2_done:
        return None
    epoch, evaluation = trainer.epoch, None
    if method == "tau_norm":
        started = time.perf_counter()
        tau_normalize_(_classifier_of(trainer.model), config.train.stage2_tau)
        epoch += 1
        plan = eval_plan(config, 1, last=True)
        evaluation = _record(
            trainer, log, epoch, {"tau": config.train.stage2_tau}, started, plan=plan
        )
    else:
        context = trainer.context
        retrain = ClassifierRetraining(
            trainer.model,
            method,
            lr=config.train.stage2_lr,
            epochs=config.train.stage2_epochs,
            momentum=config.optim.momentum,
            weight_decay=config.optim.weight_decay,
            seed=config.train.seed,
            average_gradients=_average_gradients(context.world_size) if context.enabled else None,
        )
        batches = _stage2_batches(trainer)
        for index in range(config.train.stage2_epochs):
            started = time.perf_counter()
            batches.set_epoch(epoch)  # the numbering continues: a fresh order per epoch
            stats = retrain.train_epoch(batches)
            epoch += 1
            trainer.global_step += int(stats["steps"])
            last = index + 1 == config.train.stage2_epochs
            fields = {
                "lr": stats["lr"],
                "train_loss": stats["loss"],
                "train_batch_accuracy": stats["batch_accuracy"],
            }
            plan = eval_plan(config, index + 1, last=last)
            result = _record(trainer, log, epoch, fields, started, plan=plan)
            evaluation = result if result is not None else evaluation
        retrain.finish()
    trainer.epoch, trainer.stage2_done = epoch, True
    trainer._save("last")
    return evaluation


def _record(
    trainer: Trainer,
    log: RunLog,
    epoch: int,
    fields: dict[str, Any],
    started: float,
    *,
    plan: EvalPlan | None,
) -> dict[str, Any] | None:
    """Evaluate (as ``plan`` says; not at all when None), track the best epoch and write
    the record of a stage-2 epoch."""
    record: dict[str, Any] = {
        "epoch": epoch,
        "stage": trainer.config.train.stage2,
        "step": trainer.global_step,
        **fields,
    }
    evaluation = None
    if plan is not None:
        # The epoch the geometry and a best checkpoint are of; until stage 2 ends,
        # trainer.epoch stays at the checkpointed (last stage-1) epoch for resume messages.
        checkpointed, trainer.epoch = trainer.epoch, epoch
        try:
            evaluation = trainer.evaluate(collapse=plan.collapse, full=plan.full)
            record.update(evaluation)
            trainer._track_best(evaluation)
        finally:
            trainer.epoch = checkpointed
    trainer.elapsed += time.perf_counter() - started
    record["elapsed_s"] = trainer.elapsed
    trainer.record(log, record)
    return evaluation
