"""Full-batch simulation of the unconstrained feature model (docs/theory.md §5).

The features H are free variables, one row per sample, optimised together with the
classifier W (or against a fixed frame) under weight decay. The inner loop is lean: the
gradients of the logit losses (``ce``, ``mse``) are written in closed form (three
(N, K, d) matrix products per step, no autograd graph), the frame losses (``dr``,
``cosine_frame``) take the gradient of the :mod:`neuralcollapse.losses` module with
respect to H only, and nothing is read back to Python between log steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neuralcollapse.data import class_counts
from neuralcollapse.errors import ConfigError
from neuralcollapse.frames import build_frame, target_similarity
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.losses import CosineFrameLoss, DotRegressionLoss
from neuralcollapse.metrics import CollapseReport, collapse_report
from neuralcollapse.ufm.config import UFMConfig, check_ufm_config

__all__ = ["UFMProblem", "UFMResult", "build_problem", "simulate"]

# Report fields that never change during a run: kept in ``final`` only, not per log step.
_STATIC_REPORT_KEYS = (
    "num_classes",
    "dim",
    "num_samples",
    "class_counts",
    "absent_classes",
    "global_mean",
    "minority_classes",
)


@dataclass
class UFMProblem:
    """Everything a run starts from (before any step).

    Attributes:
        labels: (N,) int64 class of each feature row, classes in index order.
        counts: (K,) int64 samples per class.
        H0: (N, d) starting features.
        W0: (K, d) starting (learnable) or fixed classifier rows.
        similarity: (K, K) target cosines of the fixed frame (HAFrame S, or the frame's
            own cosines), None for a learnable W.
    """

    labels: Tensor
    counts: Tensor
    H0: Tensor
    W0: Tensor
    similarity: Tensor | None


@dataclass
class UFMResult:
    """The outcome of :func:`simulate`.

    Attributes:
        config: the checked config that ran.
        history: one dict per log step: ``step``, ``loss`` (the whole objective),
            ``data_loss`` (its first term), ``accuracy`` (of argmax logits; for the frame
            losses, of ``H @ W.T``), ``W_norm``, ``H_norm`` (Frobenius), ``b_norm``,
            ``time_s`` (since the start) and the collapse-report metrics (``nc1``, ...).
        final: the collapse report of the final H and W (and b); None if the run diverged.
        W: (K, d) final classifier; H: (N, d) final features; b: (K,) bias or None.
        labels: (N,) classes of the rows of H.
        similarity: target cosines of a fixed frame (see :class:`UFMProblem`).
        wall_time_s: seconds for the whole run; log_time_s: seconds of it spent logging.
        diverged: the objective became NaN or infinite; the run stopped at that log step,
            whose history entry has no collapse metrics.
    """

    config: UFMConfig
    history: list[dict[str, Any]]
    final: CollapseReport | None
    W: Tensor
    H: Tensor
    b: Tensor | None
    labels: Tensor
    similarity: Tensor | None = None
    wall_time_s: float = 0.0
    log_time_s: float = 0.0
    diverged: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def series(self, key: str) -> list[Any]:
        """The values of one history key over the log steps."""
        return [entry.get(key) for entry in self.history]


# --------------------------------------------------------------------------- problem


def _counts(config: UFMConfig) -> Tensor:
    if config.counts is not None:
        return torch.tensor(config.counts, dtype=torch.int64)
    try:
        return class_counts(
            config.n_per_class, config.num_classes, config.imbalance_ratio, config.profile
        )
    except ValueError as exc:  # e.g. a ratio that leaves a class empty
        raise ConfigError(f"class counts: {exc}") from None


def _hierarchy(config: UFMConfig, hierarchy: Hierarchy | Tensor | None) -> Hierarchy | Tensor:
    if hierarchy is None:
        if config.hierarchy is None:
            raise ConfigError(
                "head_kind='haframe' needs a class hierarchy: set hierarchy to its file (edges "
                "CSV, nested JSON or path CSV), or pass hierarchy= to simulate"
            )
        path = Path(config.hierarchy)
        if not path.is_file():
            raise FileNotFoundError(f"hierarchy file {str(path)!r} does not exist")
        try:
            hierarchy = Hierarchy.load(path)
        except ValueError as exc:
            raise ConfigError(f"hierarchy: {exc}") from exc
    k = hierarchy.shape[0] if isinstance(hierarchy, Tensor) else hierarchy.num_classes
    if k != config.num_classes:
        raise ConfigError(
            f"the hierarchy has {k} leaf classes but num_classes={config.num_classes}"
        )
    return hierarchy


def _frame(config: UFMConfig, hierarchy: Hierarchy | Tensor | None) -> tuple[Tensor, Tensor]:
    """(K, d) fixed frame scaled to ``head_scale`` and its (K, K) target cosines (the
    HAFrame similarity S, or the frame's own cosines)."""
    tree = _hierarchy(config, hierarchy) if config.head_kind == "haframe" else None
    frame = build_frame(
        config.head_kind,
        config.num_classes,
        config.dim,
        seed=config.seed,
        hierarchy=tree,
        gamma=config.head_gamma if tree is not None else None,
        steps=config.spread_steps,
        dtype=torch.float64,
    )
    similarity = target_similarity(
        frame, hierarchy=tree, gamma=config.head_gamma if tree is not None else None
    )
    return config.head_scale * frame, similarity


def build_problem(config: UFMConfig, *, hierarchy: Hierarchy | Tensor | None = None) -> UFMProblem:
    """Labels, counts, the start (H0, W0) and the frame's target cosines, all on CPU.

    H0 (and a learnable W0) are Gaussian with std ``init_std``, drawn from a private
    generator seeded with ``config.seed`` (the global RNG is never used); H0 does not
    depend on the loss or head, so runs differing only there start alike.
    """
    config = check_ufm_config(config)
    counts = _counts(config)
    labels = torch.repeat_interleave(torch.arange(config.num_classes), counts)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    rng = torch.Generator(device="cpu").manual_seed(config.seed)
    shape = (int(counts.sum()), config.dim)
    H0 = config.init_std * torch.randn(shape, generator=rng, dtype=torch.float64)
    if config.fixed_head:
        W0, similarity = _frame(config, hierarchy)
    else:
        W0 = config.init_std * torch.randn(
            config.num_classes, config.dim, generator=rng, dtype=torch.float64
        )
        similarity = None
    return UFMProblem(labels, counts, H0.to(dtype), W0.to(dtype), similarity)


# --------------------------------------------------------------------------- gradients


class _Objective:
    """Gradients (every step) and values (log steps, L-BFGS) of the UFM objective."""

    def __init__(
        self, config: UFMConfig, labels: Tensor, similarity: Tensor | None, dtype: torch.dtype
    ) -> None:
        self.config = config
        self.labels = labels
        self.n = labels.shape[0]
        self.learn_w = not config.fixed_head
        self.one_hot: Tensor | None = None
        self.frame_loss: torch.nn.Module | None = None
        if config.loss == "dr":
            self.frame_loss = DotRegressionLoss(feature_budget=config.feature_budget)
        elif config.loss == "cosine_frame":
            assert similarity is not None  # fixed head, checked in the config
            self.frame_loss = CosineFrameLoss(similarity, alpha=config.alpha)
        else:
            self.one_hot = F.one_hot(labels, config.num_classes).to(dtype)
        # CPU softmax over a short last axis is slow (1.8 ms for 10,000 x 10 against 0.08 ms
        # along the leading axis of the (10, 10,000) transpose), so few classes use (K, N)
        # logits; from about 64 classes the (N, K) layout is as fast or faster.
        self.transposed = config.num_classes < 64

    def logits(self, H: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        return H @ W.T if b is None else torch.addmm(b, H, W.T)

    def data_loss(self, H: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        if self.frame_loss is not None:
            return self.frame_loss(H, self.labels, W)
        z = self.logits(H, W, b)
        if self.config.loss == "ce":
            return F.cross_entropy(z, self.labels)
        return 0.5 * (z - self.one_hot).square().sum(dim=1).mean()

    def penalty(self, H: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        c = self.config
        total = 0.5 * c.lambda_H * H.square().sum()
        if self.learn_w:
            total = total + 0.5 * c.lambda_W * W.square().sum()
        if b is not None:
            total = total + 0.5 * c.lambda_b * b.square().sum()
        return total

    def grads(self, H: Tensor, W: Tensor, b: Tensor | None) -> list[Tensor]:
        """[dH, dW (learnable only), db (with bias only)] of the whole objective."""
        c = self.config
        if self.frame_loss is not None:
            with torch.enable_grad():
                leaf = H.detach().requires_grad_(True)
                (grad_h,) = torch.autograd.grad(self.frame_loss(leaf, self.labels, W), leaf)
            return [grad_h.add_(H, alpha=c.lambda_H)]
        # d(loss)/d(logits), already divided by N: CE -> softmax - onehot, MSE -> z - onehot.
        if self.transposed:
            zt = W @ H.T if b is None else torch.addmm(b.unsqueeze(1), W, H.T)  # (K, N)
            dz = (torch.softmax(zt, dim=0) if c.loss == "ce" else zt).T  # (N, K) view
        else:
            z = self.logits(H, W, b)
            dz = torch.softmax(z, dim=1) if c.loss == "ce" else z
        dz = dz.sub_(self.one_hot).div_(self.n)
        grads = [torch.addmm(H, dz, W, beta=c.lambda_H)]
        if self.learn_w:
            grads.append(torch.addmm(W, dz.T, H, beta=c.lambda_W))
        if b is not None:
            grads.append(dz.sum(dim=0).add_(b, alpha=c.lambda_b))
        return grads


# --------------------------------------------------------------------------- optimisers


def _optimizer(config: UFMConfig, params: list[Tensor]) -> torch.optim.Optimizer:
    if config.optimizer == "gd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.0)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    # One L-BFGS iteration per step with a fixed step length lr. (torch's strong-Wolfe line
    # search stalled on this objective in our runs: the loss froze at 2.0986 against 0.9443
    # reached with a fixed step, so it is not used.)
    return torch.optim.LBFGS(params, lr=config.lr, max_iter=1, history_size=20)


def _make_step(
    config: UFMConfig,
    objective: _Objective,
    variables: tuple[Tensor, Tensor, Tensor | None],
    params: list[Tensor],
) -> Callable[[], None]:
    H, W, b = variables
    optimizer = _optimizer(config, params)

    def assign_grads() -> None:
        for p, g in zip(params, objective.grads(H, W, b), strict=True):
            p.grad = g

    if config.optimizer != "lbfgs":

        def step() -> None:
            assign_grads()
            optimizer.step()

        return step

    def closure() -> Tensor:
        assign_grads()
        return objective.data_loss(H, W, b) + objective.penalty(H, W, b)

    def lbfgs_step() -> None:
        optimizer.step(closure)

    return lbfgs_step


# --------------------------------------------------------------------------- logging


def _log_entry(
    step: int,
    objective: _Objective,
    variables: tuple[Tensor, Tensor, Tensor | None],
    elapsed: float,
) -> tuple[dict[str, Any], CollapseReport | None]:
    H, W, b = variables
    data_loss = objective.data_loss(H, W, b)
    loss = float(data_loss + objective.penalty(H, W, b))
    logits = objective.logits(H, W, b)
    accuracy = float((logits.argmax(dim=1) == objective.labels).double().mean())
    report: CollapseReport | None = None
    metrics: dict[str, Any] = {}
    if math.isfinite(loss):  # a diverged run has NaN/inf features: no report of those
        report = collapse_report(H, objective.labels, classifier=W, bias=b)
        metrics = {k: v for k, v in report.to_dict().items() if k not in _STATIC_REPORT_KEYS}
    entry = {
        "step": step,
        "loss": loss,
        "data_loss": float(data_loss),
        "accuracy": accuracy,
        "W_norm": float(W.norm()),
        "H_norm": float(H.norm()),
        "b_norm": None if b is None else float(b.norm()),
        "time_s": elapsed,
        **metrics,
    }
    return entry, report


# --------------------------------------------------------------------------- simulate

# Below this many multiply-adds per logit product (N * K * d) a step takes microseconds,
# and OpenMP's barrier between two threads costs more than it saves (20x slower on a busy
# 2-core machine), so small CPU problems run on one thread.
_SMALL_PROBLEM = 4_000_000


def _check_start(config: UFMConfig, problem: UFMProblem) -> None:
    k, d = config.num_classes, config.dim
    if problem.W0.shape != (k, d) or problem.H0.ndim != 2 or problem.H0.shape[1] != d:
        raise ValueError(
            f"start has H0 {tuple(problem.H0.shape)} and W0 {tuple(problem.W0.shape)}, but the "
            f"config needs (N, {d}) and ({k}, {d}): build it with build_problem(config)"
        )
    if problem.labels.shape != (problem.H0.shape[0],):
        raise ValueError("start.labels must have one entry per row of start.H0")


@contextlib.contextmanager
def _cpu_threads(config: UFMConfig, work: int) -> Iterator[None]:
    """Set torch's intra-op CPU threads for the run, restoring the previous value after."""
    previous = torch.get_num_threads()
    wanted = config.num_threads
    if wanted is None:
        wanted = 1 if work < _SMALL_PROBLEM else previous
    if torch.device(config.device).type != "cpu" or wanted == previous:
        yield
        return
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def simulate(
    config: UFMConfig,
    *,
    hierarchy: Hierarchy | Tensor | None = None,
    start: UFMProblem | None = None,
) -> UFMResult:
    """Optimise the unconstrained feature model of ``config`` full-batch.

    Args:
        config: the run (checked here; a :class:`ConfigError` names the bad key).
        hierarchy: for ``head_kind='haframe'``, a Hierarchy or (K, K) LCA heights used
            instead of reading ``config.hierarchy``.
        start: a problem from :func:`build_problem` to start from (e.g. the same H0 for two
            losses); default: built from ``config``.

    Returns:
        :class:`UFMResult`; ``history`` has an entry at step 0, every ``log_every`` steps
        and after the last step.

    On the CPU the run uses ``config.num_threads`` intra-op threads; by default one thread
    for small problems (N K d below 4e6, where thread synchronisation dominates) and
    torch's current setting otherwise. The previous setting is restored on return.
    """
    config = check_ufm_config(config)
    problem = start if start is not None else build_problem(config, hierarchy=hierarchy)
    _check_start(config, problem)
    work = problem.labels.shape[0] * config.num_classes * config.dim
    with _cpu_threads(config, work):
        return _run(config, problem)


def _run(config: UFMConfig, problem: UFMProblem) -> UFMResult:
    device = torch.device(config.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    labels = problem.labels.to(device)
    similarity = None if problem.similarity is None else problem.similarity.to(device, dtype)
    H = problem.H0.to(device, dtype).clone()
    W = problem.W0.to(device, dtype).clone()
    b = torch.zeros(config.num_classes, device=device, dtype=dtype) if config.use_bias else None
    params = [H] + ([W] if not config.fixed_head else []) + ([b] if b is not None else [])
    objective = _Objective(config, labels, similarity, dtype)
    variables = (H, W, b)
    step_fn = _make_step(config, objective, variables, params)

    history: list[dict[str, Any]] = []
    log_time, diverged = 0.0, False
    t0 = time.perf_counter()
    with torch.no_grad():
        for step in range(config.steps + 1):
            if step % config.log_every == 0 or step == config.steps:
                t_log = time.perf_counter()
                entry, report = _log_entry(step, objective, variables, t_log - t0)
                history.append(entry)
                log_time += time.perf_counter() - t_log
                if not math.isfinite(entry["loss"]):
                    diverged = True
                    break
            if step < config.steps:
                step_fn()
    wall = time.perf_counter() - t0
    return UFMResult(
        config=config,
        history=history,
        final=report,
        W=W.detach(),
        H=H.detach(),
        b=None if b is None else b.detach(),
        labels=labels,
        similarity=similarity,
        wall_time_s=wall,
        log_time_s=log_time,
        diverged=diverged,
    )
