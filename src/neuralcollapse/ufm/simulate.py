"""Full-batch simulation of the unconstrained feature model (docs/theory.md §5).

The features H are free variables, one row per sample, optimised together with the
classifier W (or against a fixed frame) under weight decay. The inner loop is lean: the
gradients of the logit losses (``ce``, ``mse``) are written in closed form (three
(N, K, d) matrix products per step, no autograd graph), the frame losses (``dr``,
``cosine_frame``) take the gradient of the :mod:`neuralcollapse.losses` module with
respect to H only, and nothing is read back to Python between log steps.

:func:`lr_sweep` runs the norm-constrained model of [Y22] instead (docs/theory.md §5): a
fixed frame, features held in the ball (or on the sphere) of radius sqrt(E_H) by
projection, and either free features or features computed by one small network shared by
all samples; one gradient-descent run per learning rate, all batched into one loop.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neuralcollapse._internal.checks import check_float, check_int
from neuralcollapse._internal.threads import torch_threads
from neuralcollapse.data import class_counts
from neuralcollapse.errors import ConfigError
from neuralcollapse.frames import build_frame, simplex_etf, target_similarity
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.losses import CosineFrameLoss, DotRegressionLoss
from neuralcollapse.metrics import CollapseReport, collapse_report
from neuralcollapse.ufm.config import (
    FEATURE_CONSTRAINTS,
    FEATURE_MODELS,
    UFMConfig,
    check_ufm_config,
)

__all__ = [
    "FeatureProblem",
    "LRSweep",
    "UFMProblem",
    "UFMResult",
    "build_feature_problem",
    "build_problem",
    "constrain_features",
    "lr_sweep",
    "nc1_per_sample",
    "simulate",
]

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
    wanted = config.num_threads
    if wanted is None:
        wanted = 1 if work < _SMALL_PROBLEM else torch.get_num_threads()
    if torch.device(config.device).type != "cpu":
        yield
        return
    with torch_threads(wanted):
        yield


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


# --------------------------------------------------------------------------- lr sweeps
#
# [Y22]'s layer-peeled model (docs/theory.md §5): W fixed to a simplex ETF, each feature
# constrained by ||h||^2 <= E_H. Two ways to make the features: free variables (one per
# sample, as in the UFM) or the output of one network shared by all samples. Every learning
# rate of a sweep is one slice of a batched run: a leading axis of length L on every tensor.

_LOSS_NAMES = ("dr", "ce")


@dataclass
class FeatureProblem:
    """The start of an :func:`lr_sweep`: labels, a fixed frame, free features and a shared
    network, all float64 on the CPU.

    Attributes:
        labels: (N,) int64 class of each sample, classes in index order.
        counts: (K,) int64 samples per class.
        frame: (K, d) the fixed classifier, a unit-row simplex ETF (so E_W = 1).
        H0: (N, d) starting free features (Gaussian, std ``init_std``).
        inputs: (N, p) the fixed inputs X of the shared-parameter model, one per sample.
        net0: starting parameters ``[A (p, m), a (m,), B (m, d), c (d,)]`` of the shared
            network ``f(x) = relu(x A + a) B + c``, one set for all samples.
        rows: (N,) index of each sample in the problem :meth:`subset` took it from;
            ``arange(N)`` for a problem from :func:`build_feature_problem`.
    """

    labels: Tensor
    counts: Tensor
    frame: Tensor
    H0: Tensor
    inputs: Tensor
    net0: list[Tensor]
    rows: Tensor

    def subset(self, counts: Sequence[int] | Tensor) -> FeatureProblem:
        """The first ``counts[k]`` samples of every class k, with the same frame and start
        network: e.g. an imbalanced problem every sample of which, with its start feature
        and input, is also in this one.

        Raises:
            ValueError: ``counts`` is not one count in [1, n_k] per class.
        """
        wanted = torch.as_tensor(counts, dtype=torch.int64)
        if (
            wanted.shape != self.counts.shape
            or bool((wanted < 1).any())
            or bool((wanted > self.counts).any())
        ):
            raise ValueError(
                f"counts must give one count in [1, n_k] per class, n_k = "
                f"{self.counts.tolist()}; got {wanted.tolist()}"
            )
        starts = torch.cumsum(self.counts, 0) - self.counts
        index = torch.cat(
            [int(starts[k]) + torch.arange(int(n)) for k, n in enumerate(wanted.tolist())]
        )
        return FeatureProblem(
            labels=self.labels[index],
            counts=wanted,
            frame=self.frame,
            H0=self.H0[index],
            inputs=self.inputs[index],
            net0=self.net0,
            rows=self.rows[index],
        )


def build_feature_problem(
    counts: Sequence[int] | Tensor,
    *,
    dim: int,
    input_dim: int | None = None,
    hidden: int = 128,
    init_std: float = 0.1,
    seed: int = 0,
) -> FeatureProblem:
    """A :class:`FeatureProblem` with ``counts[k]`` samples of class k.

    The frame is ``nc.frames.simplex_etf(K, dim, seed=seed)``. H0 is Gaussian with std
    ``init_std``, the inputs X are standard Gaussian of dimension ``input_dim`` (default
    ``2 * dim``), and the network's weights and biases are uniform in +-1/sqrt(fan_in)
    (``torch.nn.Linear``'s default), all drawn in that order from one private generator
    seeded with ``seed`` (the global RNG is never used).

    Raises:
        ValueError: fewer than 2 classes, an empty class, ``dim < K - 1`` (no simplex ETF),
            or a size or std out of range.
    """
    sizes = torch.as_tensor(counts, dtype=torch.int64)
    if sizes.ndim != 1 or sizes.numel() < 2 or bool((sizes < 1).any()):
        raise ValueError(f"counts must list >= 1 sample for each of >= 2 classes, got {counts}")
    k = sizes.numel()
    dim = check_int("dim", dim, minimum=max(k - 1, 1))
    p = check_int("input_dim", 2 * dim if input_dim is None else input_dim, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    init_std = check_float("init_std", init_std, minimum=0.0, strict_minimum=True)
    seed = check_int("seed", seed, minimum=0)
    n = int(sizes.sum())
    rng = torch.Generator(device="cpu").manual_seed(seed)
    f64 = torch.float64
    H0 = init_std * torch.randn(n, dim, generator=rng, dtype=f64)
    inputs = torch.randn(n, p, generator=rng, dtype=f64)
    net0 = []
    layers = ((p, (p, hidden)), (p, (hidden,)), (hidden, (hidden, dim)), (hidden, (dim,)))
    for fan_in, shape in layers:
        bound = 1.0 / math.sqrt(fan_in)
        net0.append((2.0 * torch.rand(shape, generator=rng, dtype=f64) - 1.0) * bound)
    return FeatureProblem(
        labels=torch.repeat_interleave(torch.arange(k), sizes),
        counts=sizes,
        frame=simplex_etf(k, dim, seed=seed, dtype=f64),
        H0=H0,
        inputs=inputs,
        net0=net0,
        rows=torch.arange(n),
    )


def constrain_features(H: Tensor, radius: float, constraint: str) -> Tensor:
    """The rows (last axis) of ``H`` projected onto [Y22]'s feature constraint.

    ``"ball"``: ||h|| <= radius (docs/theory.md §5 states the constraint this way); rows
    outside are rescaled onto the sphere, rows inside are left alone: the Euclidean
    projection onto the ball. ``"sphere"``: ||h|| = radius, every row rescaled (a zero row
    stays zero). ``"none"``: ``H`` itself. Out of place and differentiable, so it also
    serves as the normalisation layer of the shared-parameter model.
    """
    if constraint == "none":
        return H
    scale = radius / H.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    if constraint == "ball":
        scale = scale.clamp(max=1.0)
    return H * scale


def nc1_per_sample(H: Tensor, labels: Tensor, counts: Tensor) -> Tensor:
    """Each sample's share of NC1, batched over leading axes: (..., N, d) -> (..., N).

    NC1 = tr(Sigma_W Sigma_B^+) / K (docs/theory.md §4; sample-weighted global mean, every
    class present) is the mean over the samples of

        s_i = sum_j ( u_j^T M~ (h_i - mu_{y_i}) )^2 / lambda_j^2,

    with (lambda_j, u_j) the top K-1 eigenpairs of the Gram matrix M~ M~^T of the centred
    class means, round-off eigenvalues dropped by the rule of ``nc.metrics``. The mean of
    s_i over the samples of class k is that class's own NC1, tr(Sigma_k Sigma_B^+) / K with
    Sigma_k its within-class covariance, so NC1 = sum_k (n_k / N) NC1_k. The value matches
    ``nc.metrics.collapse_report(H, labels).nc1`` and costs one batched K x K
    eigendecomposition, cheap enough for every step of a sweep. Works in float64; a slice
    with a non-finite feature (or features so large that their Gram matrix overflows) gives
    NaN, one whose class means all coincide gives inf.
    """
    f64 = torch.float64
    lead = H.shape[:-2]
    h = H.to(f64).reshape(-1, *H.shape[-2:])  # (L, N, d)
    runs, n, d = h.shape
    k = counts.numel()
    finite = torch.isfinite(h).flatten(1).all(dim=1)
    h = torch.where(finite[:, None, None], h, torch.zeros((), dtype=f64))
    # NC1 is unchanged by a shift; measuring from one sample keeps round-off from making
    # coinciding class means look distinct.
    h = h - h[:, :1]
    weights = counts.to(f64)
    means = torch.zeros(runs, k, d, dtype=f64).index_add_(1, labels, h) / weights[:, None]
    centred = means - torch.einsum("k,lkd->ld", weights, means).unsqueeze(1) / n
    gram = centred @ centred.transpose(1, 2)
    finite &= torch.isfinite(gram).flatten(1).all(dim=1)  # huge features overflow here
    eye = torch.eye(k, dtype=f64)
    lam, vec = torch.linalg.eigh(torch.where(finite[:, None, None], gram, eye))  # ascending
    lam, vec = lam.flip(-1)[:, : k - 1], vec.flip(-1)[:, :, : k - 1]
    top = lam[:, :1]
    keep = (lam > max(k, d) * torch.finfo(f64).eps * top) & (top > 0)
    inverse_sq = torch.where(keep, 1.0 / torch.where(keep, lam, 1.0).square(), 0.0)
    coords = (vec.transpose(1, 2) @ centred) @ (h - means[:, labels]).transpose(1, 2)
    share = (coords.square() * inverse_sq.unsqueeze(-1)).sum(dim=1)  # (L, N)
    share = torch.where((top > 0), share, math.inf)
    share = torch.where(finite[:, None], share, math.nan)
    return share.reshape(*lead, n)


@dataclass
class LRSweep:
    """The outcome of :func:`lr_sweep`: one run per learning rate, same start, same budget.

    Attributes:
        model: ``"free"`` or ``"shared"``; loss: ``"dr"`` or ``"ce"``; constraint:
            ``"ball"``, ``"sphere"`` or ``"none"``.
        lrs: the learning rates, in the order given.
        nc1: (steps + 1, L) float64 NC1 of every run after every step (row 0: the start);
            NaN from the step a run's features became non-finite.
        objective: (steps + 1, L) float64 objective of every run after every step: the
            mean loss over the samples plus weight_decay/2 times the mean ||h_i||^2 (free
            features) or ||theta||^2 (shared network).
        nc1_target: the level whose first crossing ``steps_to_target`` counts.
        diverged: per run, whether it failed: its features, their NC1 or its objective
            became non-finite, or its final objective is above its starting one.
        H: (L, N, d) final features of every run.
        norm_violation: the largest violation of the constraint seen after any step by a
            run that had not diverged: max | ||h|| - radius | on the sphere,
            max(||h|| - radius, 0) in the ball, 0 with no constraint.
        wall_time_s: seconds the sweep took.
    """

    model: str
    loss: str
    constraint: str
    lrs: list[float]
    nc1: Tensor
    objective: Tensor
    nc1_target: float
    diverged: list[bool]
    H: Tensor
    norm_violation: float
    wall_time_s: float = 0.0

    @property
    def steps(self) -> int:
        """The step budget of every run."""
        return self.nc1.shape[0] - 1

    @property
    def steps_to_target(self) -> list[int | None]:
        """Per run, the first step s with NC1 < target (0: already at the start), None when
        not within the budget."""
        below = self.nc1 < self.nc1_target  # NaN compares False
        first = below.to(torch.int64).argmax(dim=0)
        hits = below.any(dim=0)
        return [int(s) if bool(hit) else None for s, hit in zip(first, hits, strict=True)]

    @property
    def final_nc1(self) -> list[float]:
        """Per run, NC1 after the last step; inf for a run that failed (see ``diverged``)."""
        last = self.nc1[-1].tolist()
        return [math.inf if bad else v for v, bad in zip(last, self.diverged, strict=True)]

    @property
    def best(self) -> int:
        """Index of the best learning rate: among the runs that did not diverge (all runs if
        every one did), the one that reaches the target in the fewest steps; runs that
        never reach it rank after those that do; ties, and runs that never reach it, are
        ordered by final NC1 (lowest first), then by position in the grid."""
        steps, final = self.steps_to_target, self.final_nc1

        def key(i: int) -> tuple[bool, bool, int, float, int]:
            reached = steps[i] is not None
            value = final[i] if math.isfinite(final[i]) else math.inf
            return (self.diverged[i], not reached, steps[i] or 0, value, i)

        return min(range(len(self.lrs)), key=key)

    @property
    def best_lr(self) -> float:
        """The learning rate of :attr:`best`."""
        return self.lrs[self.best]

    @property
    def at_grid_edge(self) -> bool:
        """Whether the best learning rate is the smallest or largest of a grid of >= 2: a
        wider grid might have found a better one."""
        return len(self.lrs) > 1 and self.best in (0, len(self.lrs) - 1)


def _check_sweep_args(
    loss: str, model: str, constraint: str, lrs: Sequence[float], steps: int
) -> list[float]:
    for name, value, allowed in (
        ("loss", loss, _LOSS_NAMES),
        ("model", model, FEATURE_MODELS),
        ("constraint", constraint, FEATURE_CONSTRAINTS),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    rates = [check_float("lr", lr, minimum=0.0, strict_minimum=True) for lr in lrs]
    if not rates:
        raise ValueError("lrs must hold at least one learning rate")
    check_int("steps", steps, minimum=1)
    return rates


def lr_sweep(
    problem: FeatureProblem,
    *,
    loss: str,
    lrs: Sequence[float],
    steps: int,
    model: str = "free",
    constraint: str = "ball",
    feature_budget: float = 1.0,
    weight_decay: float = 0.0,
    nc1_target: float = 1e-2,
) -> LRSweep:
    """Full-batch gradient descent on ``loss`` against the fixed frame, one run per
    learning rate, all from the same start for the same number of steps (docs/theory.md
    §3 and §5).

    ``model="free"``: every feature is a variable and takes its own projected step

        h_i <- P( h_i - lr (grad_h L(h_i, y_i) + weight_decay h_i) ),

    the gradient of the loss *summed* over the samples, so the step of a feature does not
    depend on N (the mean loss at learning rate lr * N is the same run): each feature then
    moves on its own, and only its start and label matter. ``model="shared"``: the features
    are H = P(f_theta(X)) for the problem's fixed inputs X and one network
    f_theta(x) = relu(x A + a) B + c for all samples, and GD steps theta on the loss
    *averaged* over the samples (plus weight_decay/2 ||theta||^2): every sample pulls on the
    same parameters, so the class counts shape the path. P is
    :func:`constrain_features` with radius sqrt(``feature_budget``) (= sqrt(E_H)), applied
    after every step to free features and as the network's output layer (differentiated
    through) for shared ones.

    Losses: ``"dr"`` is ``nc.losses.DotRegressionLoss`` in [Y22]'s paper form with
    E_H = ``feature_budget`` (E_W = 1 for the unit-row frame); ``"ce"`` is cross-entropy of
    the logits h @ W.T (no bias, no scale). The runs are independent slices of one batched
    computation (a diverging run leaves the others alone) on one CPU thread, so a sweep is
    deterministic for a given problem. A run fails (``LRSweep.diverged``) when anything
    becomes non-finite or when it ends above its starting objective; a failed run ranks
    last in ``LRSweep.best``.

    Raises:
        ValueError: an unknown loss, model or constraint, an empty or non-positive ``lrs``,
            or a budget, target or decay out of range.
    """
    rates = _check_sweep_args(loss, model, constraint, lrs, steps)
    feature_budget = check_float("feature_budget", feature_budget, minimum=0.0, strict_minimum=True)
    weight_decay = check_float("weight_decay", weight_decay, minimum=0.0)
    nc1_target = check_float("nc1_target", nc1_target, minimum=0.0, strict_minimum=True)
    with torch_threads(1):
        return _sweep(
            problem, loss, rates, steps, model, constraint, feature_budget, weight_decay, nc1_target
        )


def _sweep(
    problem: FeatureProblem,
    loss: str,
    rates: list[float],
    steps: int,
    model: str,
    constraint: str,
    feature_budget: float,
    weight_decay: float,
    nc1_target: float,
) -> LRSweep:
    start = time.perf_counter()
    runs = len(rates)
    n, d = problem.H0.shape
    radius = math.sqrt(feature_budget)
    labels, frame = problem.labels, problem.frame
    repeated = labels.repeat(runs)
    dr = DotRegressionLoss(feature_budget=feature_budget, reduction="none")
    lr = torch.tensor(rates, dtype=torch.float64)
    free = model == "free"
    if free:
        variables = [constrain_features(problem.H0.expand(runs, n, d).clone(), radius, constraint)]
    else:
        variables = [p.expand(runs, *p.shape).clone() for p in problem.net0]

    def features(params: list[Tensor]) -> Tensor:
        if free:
            return params[0]
        A, a, B, c = params
        hidden = torch.relu(problem.inputs @ A + a.unsqueeze(1))
        return constrain_features(hidden @ B + c.unsqueeze(1), radius, constraint)

    def objectives(H: Tensor, params: list[Tensor]) -> Tensor:
        """(L,) each run's objective: its mean loss plus weight_decay/2 times the mean
        ||h_i||^2 (free) or ||theta||^2 (shared)."""
        flat = H.reshape(runs * n, d)
        if loss == "dr":
            per_sample = dr(flat, repeated, frame)
        else:
            per_sample = F.cross_entropy(flat @ frame.T, repeated, reduction="none")
        value = per_sample.reshape(runs, n).mean(dim=1)
        if weight_decay:
            if free:
                size = H.square().sum(dim=-1).mean(dim=-1)
            else:
                size = sum(p.square().flatten(1).sum(dim=1) for p in params)
            value = value + 0.5 * weight_decay * size
        return value

    # Free features step on the summed objective (each on its own loss), shared parameters
    # on the mean.
    scale = float(n) if free else 1.0
    nc1 = torch.full((steps + 1, runs), math.nan, dtype=torch.float64)
    objective = torch.full((steps + 1, runs), math.nan, dtype=torch.float64)
    alive = torch.ones(runs, dtype=torch.bool)
    violation = 0.0
    for step in range(steps + 1):
        leaves = [v.detach().requires_grad_(True) for v in variables]
        with torch.enable_grad():
            H = features(leaves)
            value = objectives(H, leaves)
        features_now = H.detach()
        alive &= torch.isfinite(features_now).flatten(1).all(dim=1) & torch.isfinite(value)
        current = nc1_per_sample(features_now, labels, problem.counts).mean(dim=-1)
        alive &= ~current.isnan()  # finite features whose second moments overflow
        nc1[step] = torch.where(alive, current, math.nan)
        objective[step] = torch.where(alive, value.detach(), math.nan)
        if constraint != "none" and bool(alive.any()):
            gap = features_now[alive].norm(dim=-1) - radius
            worst = gap.abs().max() if constraint == "sphere" else gap.clamp(min=0.0).max()
            violation = max(violation, float(worst))
        if step == steps:
            break
        grads = torch.autograd.grad(value.sum() * scale, leaves)
        with torch.no_grad():
            rate = torch.where(alive, lr, 0.0)
            for variable, grad in zip(variables, grads, strict=True):
                variable.sub_(rate.view(runs, *([1] * (variable.ndim - 1))) * grad)
            if free:
                variables[0] = constrain_features(variables[0], radius, constraint)
    # A run that ends above its starting objective failed even if it stayed finite (e.g.
    # DR on free features without a constraint, lr > 2: an oscillation growing each step
    # that NC1, being scale-free, does not see).
    failed = ~alive | ~(objective[-1] <= objective[0])
    return LRSweep(
        model=model,
        loss=loss,
        constraint=constraint,
        lrs=rates,
        nc1=nc1,
        objective=objective,
        nc1_target=nc1_target,
        diverged=[bool(f) for f in failed],
        H=features_now,
        norm_violation=violation,
        wall_time_s=time.perf_counter() - start,
    )
