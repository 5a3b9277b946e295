"""One-call drivers: a collapse report from tensors in memory, or from a model and a loader.

All run the two-pass driver :func:`~neuralcollapse.metrics.evaluation.evaluate_stream`:
:func:`collapse_report` (features in memory), :func:`collect` (a model and a loader, the
features read at a layer or returned by the model) and :func:`collect_evaluation` (the
same with accuracy and shot groups, what the Lightning callback uses).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from neuralcollapse._internal.checks import check_labels
from neuralcollapse.metrics._checks import (
    UndefinedMetricError,
    check_bias,
    check_classifier,
    check_features,
)
from neuralcollapse.metrics.collapse import CollapseReport, GlobalMean
from neuralcollapse.metrics.evaluation import Batch, Evaluation, evaluate_stream

if TYPE_CHECKING:
    from neuralcollapse.data.longtail import ShotGroups

_CHUNK = 8192


def collapse_report(
    features: Tensor,
    labels: Tensor,
    *,
    classifier: Tensor | None = None,
    bias: Tensor | None = None,
    global_mean: GlobalMean = "weighted",
    num_classes: int | None = None,
) -> CollapseReport:
    """Every metric, NC4 included, of ``(N, d)`` features held in memory.

    Args:
        features: ``(N, d)`` floating features (any device; accumulated there in float64).
        labels: ``(N,)`` integer classes.
        classifier: optional ``(K, d)`` rows W; NC4 compares ``argmax(h @ W.T + b)`` with the
            nearest class mean. Without a classifier there are no logits, so NC4 (and the
            classifier metrics) stay None.
        bias: optional ``(K,)`` bias b (zero when omitted).
        global_mean: ``"weighted"`` or ``"balanced"``, see :class:`CollapseStats`.
        num_classes: K; defaults to the classifier's row count, else ``labels.max() + 1``.
    """
    if not isinstance(features, Tensor) or features.ndim != 2:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a (N, d) torch.Tensor, got {shape}; one row per sample")
    features = check_features(features, features.shape[1])
    labels = check_labels(labels, batch=features.shape[0])
    k = _infer_num_classes(num_classes, classifier, labels)
    # Classifier problems are reported before the pass over the data, not after it.
    if bias is not None and classifier is None:
        raise ValueError("bias was given without classifier; pass classifier=W too")
    w = b = None
    if classifier is not None:
        w = check_classifier(classifier, k, features.shape[1]).to(features.device, torch.float64)
        b = None if bias is None else check_bias(bias, k).to(features.device, torch.float64)

    def chunks() -> Iterator[Batch]:
        for start in range(0, features.shape[0], _CHUNK):
            yield features[start : start + _CHUNK], labels[start : start + _CHUNK], None

    # The features are in memory already: the second pass re-reads them, nothing is cached.
    # No logits in the stream: the NC4 pass scores h @ W.T + b itself, in the same product
    # as the distances to the class means (exact argmaxes, see metrics.ncc).
    evaluation = evaluate_stream(
        chunks,
        num_classes=k,
        classifier=w,
        bias=b,
        device=features.device,
        global_mean=global_mean,
        cache_limit=0,
    )
    if evaluation.report is None:  # the driver records the reason instead of raising
        raise UndefinedMetricError(evaluation.metrics["collapse"]["undefined"])
    return evaluation.report


def _linear_logits(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    logits = h.to(torch.float64) @ w.to(h.device, torch.float64).T
    return logits if b is None else logits + b.to(h.device, torch.float64)


def _infer_num_classes(num_classes: int | None, classifier: Any, labels: Tensor) -> int:
    if num_classes is not None:
        return num_classes
    if isinstance(classifier, Tensor) and classifier.ndim == 2:
        return classifier.shape[0]
    if labels.numel() == 0:
        raise ValueError("labels are empty; pass samples of at least two classes")
    # At least 2, so that a single-class input fails with the "two classes" message.
    return max(int(labels.max()) + 1, 2)


def collect(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    layer: str | None = None,
    device: torch.device | str | None = None,
    classifier: Tensor | nn.Module | tuple[Tensor, Tensor | None] | None = None,
    ncc: bool = True,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    num_classes: int | None = None,
    global_mean: GlobalMean = "weighted",
    forward_kwargs: dict[str, Any] | None = None,
) -> CollapseReport:
    """Run ``model`` over ``loader`` and return the collapse report of its features.

    Features are what the classifier module named ``layer`` (a name from
    ``model.named_modules()``, e.g. ``"fc"``) sees: its input, captured with a forward
    pre-hook, or, when that module has a ``features(x)`` method (this package's
    :class:`~neuralcollapse.heads.FixedFrameHead` and ``LearnableHead``, or any head that
    exposes one), ``module.features(input)``: the vectors after the head's neck and
    projection that meet its frame, of the frame's dimension d. With ``layer=None`` the
    model must return ``(logits, features, ...)`` as this package's heads do with
    ``return_features=True`` (pass ``forward_kwargs={"return_features": True}`` to a bare
    head). The model runs in eval mode under ``torch.no_grad()`` and its mode is restored
    afterwards; nothing is printed.

    Args:
        model: any ``nn.Module``; inputs are moved to the device of its first parameter.
        loader: re-iterable batches ``(inputs, labels, ...)``; with ``ncc=True`` it is read
            twice, so it should yield the same samples both times (eval transforms).
        layer: the classifier module whose input (or ``features(input)``) is the
            ``(B, d)`` feature vector.
        device: where the statistics are accumulated (default: the model's device).
        classifier: ``(K, d)`` rows W, ``(W, b)``, or a module with ``weight`` (K, d) and
            ``bias`` attributes (``nn.Linear``, this package's heads, whose ``weight`` is
            the effective classifier ``scale * frame``). Default: the module named
            ``layer`` when its ``weight`` is ``(K, d)`` for the K logits the model returns
            and the d features it sees; otherwise no classifier metrics (e.g. when
            ``layer`` is a hidden layer).
        ncc: run the second pass for NC4. Its logits are ``h @ W.T + b`` when a classifier
            is known, else the model's output (the first element of a tuple output).
        progress: optional wrapper called once per pass as ``progress(loader)`` that
            returns an iterable, e.g. ``tqdm.tqdm``.
        num_classes: K; default the classifier's rows, else the width of the logits.
        global_mean: ``"weighted"`` or ``"balanced"``, see :class:`CollapseStats`.
        forward_kwargs: extra keyword arguments for every ``model(inputs, **kwargs)`` call.

    Raises:
        ValueError: naming the layer and what was found: no such module, a module that
            forward never called, features that are not ``(batch, d)``, or a classifier
            whose rows do not have the width d of those features.
    """
    return collect_evaluation(
        model,
        loader,
        layer=layer,
        device=device,
        classifier=classifier,
        ncc=ncc,
        progress=progress,
        num_classes=num_classes,
        global_mean=global_mean,
        forward_kwargs=forward_kwargs,
    ).report


def collect_evaluation(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    layer: str | None = None,
    device: torch.device | str | None = None,
    classifier: Tensor | nn.Module | tuple[Tensor, Tensor | None] | None = None,
    ncc: bool = True,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
    num_classes: int | None = None,
    global_mean: GlobalMean = "weighted",
    forward_kwargs: dict[str, Any] | None = None,
    groups: Mapping[str, Tensor] | ShotGroups | None = None,
    train_counts: Tensor | None = None,
    distributed: bool = False,
    cache_limit: int = 0,
) -> Evaluation:
    """:func:`collect` with the whole :class:`~neuralcollapse.metrics.Evaluation`:
    accuracy (overall, balanced, per class and per group of ``groups``) next to the
    collapse report, from the same two passes.

    Args:
        groups: named groups of classes for per-group accuracy: a dict name -> class
            indices or the ShotGroups of ``nc.data.shot_groups(train_counts)`` as it is.
        train_counts: optional ``(K,)`` training samples per class (the minority classes
            of the report then follow them).
        distributed: all-reduce the statistics over the default process group (every
            process reads its own shard of the split and must call this).
        cache_limit: keep the first pass's features and logits while they total at most
            this many values, so that the second pass reads them instead of the loader
            (0, the default of :func:`collect`, reads the loader twice).
        Other arguments: see :func:`collect`.
    """
    if ncc and cache_limit == 0 and iter(loader) is loader:
        raise ValueError(
            "loader is a one-shot iterator but ncc=True reads it twice; pass a re-iterable "
            "(a list, a DataLoader) or ncc=False"
        )
    module = _find_module(model, layer) if layer is not None else None
    w, b = _resolve_classifier(classifier)
    adopt_layer = classifier is None and module is not None
    model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
    stats_device = torch.device(device) if device is not None else model_device
    forward = _Forward(model, layer, module, model_device, forward_kwargs or {})

    def one_pass() -> Iterable[Any]:
        return progress(loader) if progress is not None else loader

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), forward:
            batches = iter(one_pass())
            first = next(batches, None)
            if first is None:
                raise ValueError("loader yielded no batches; pass a loader with samples")
            h, y, logits = forward(first)
            # K, d and the classifier follow from the first batch.
            if adopt_layer:
                w, b = _layer_classifier(module, logits.shape[-1], h.shape[1])
            k = num_classes or (w.shape[0] if w is not None else logits.shape[-1])
            if w is not None:
                _check_classifier_width(w, h.shape[1], logits.shape[-1], forward.source)
                w = check_classifier(w, k, h.shape[1])
                b = None if b is None else check_bias(b, k)
            passes = _Passes(forward, (h, y, logits), batches, one_pass, w, b, logits=ncc)
            return evaluate_stream(
                passes,
                num_classes=k,
                classifier=w,
                bias=b,
                groups=groups,
                train_counts=train_counts,
                device=stats_device,
                distributed=distributed,
                global_mean=global_mean,
                cache_limit=cache_limit,
                ncc=ncc,
            )
    finally:
        model.train(was_training)


def _check_classifier_width(w: Tensor, dim: int, num_logits: int, source: str) -> None:
    """A classifier whose rows do not have the width d of the features, named plainly."""
    if not isinstance(w, Tensor) or w.ndim != 2 or w.shape[1] == dim:
        return
    shape = tuple(w.shape)
    if shape == (dim, num_logits):
        fix = "it looks transposed: frames are rows (logits = h @ W.T), pass W.T"
    else:
        fix = (
            "pass the classifier that is applied to these features, or hook the layer whose "
            f"input (or features()) is {shape[1]}-dimensional"
        )
    raise ValueError(
        f"the classifier is {shape} (num_classes, d) but {source} are {dim}-dimensional; {fix}"
    )


class _Passes:
    """The stream of :func:`collect`: the first call finishes the pass whose first batch
    :func:`collect` already ran; later calls start fresh passes over the loader.

    Logits are ``h @ W.T + b`` with a classifier, else the model's output; with
    ``logits=False`` (no NC4 wanted) they are None.
    """

    def __init__(
        self,
        forward: _Forward,
        first: Batch,
        rest: Iterator[Any],
        fresh: Callable[[], Iterable[Any]],
        w: Tensor | None,
        b: Tensor | None,
        *,
        logits: bool,
    ) -> None:
        self._forward, self._fresh, self._w, self._b = forward, fresh, w, b
        self._logits = logits
        self._pending: tuple[Batch, Iterator[Any]] | None = (first, rest)

    def __call__(self) -> Iterator[Batch]:
        if self._pending is not None:
            (first, rest), self._pending = self._pending, None
            return self._run(first, rest)
        return self._run(None, iter(self._fresh()))

    def _run(self, first: Batch | None, rest: Iterator[Any]) -> Iterator[Batch]:
        if first is not None:
            yield self._finish(*first)
        for batch in rest:
            yield self._finish(*self._forward(batch))

    def _finish(self, h: Tensor, y: Tensor, logits: Tensor | None) -> Batch:
        if not self._logits:
            return h, y, None
        if self._w is not None:
            logits = _linear_logits(h, self._w.to(h.device), _to(self._b, h.device))
        return h, y, logits


def _to(tensor: Tensor | None, device: torch.device) -> Tensor | None:
    return None if tensor is None else tensor.to(device)


def _find_module(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if layer not in modules or layer == "":
        names = [n for n in modules if n][:12]
        raise ValueError(
            f"model has no module named {layer!r}; pass one of model.named_modules(), e.g. {names}"
        )
    return modules[layer]


def _resolve_classifier(classifier: Any) -> tuple[Tensor | None, Tensor | None]:
    if classifier is None:
        return None, None
    if isinstance(classifier, nn.Module):
        weight, bias = getattr(classifier, "weight", None), getattr(classifier, "bias", None)
        if isinstance(weight, Tensor) and weight.ndim == 2:
            return weight.detach(), bias.detach() if isinstance(bias, Tensor) else None
    elif isinstance(classifier, Tensor):
        return classifier.detach(), None
    elif isinstance(classifier, Sequence) and len(classifier) == 2:
        w, b = classifier
        if isinstance(w, Tensor) and (b is None or isinstance(b, Tensor)):
            return w.detach(), None if b is None else b.detach()
    raise ValueError(
        f"classifier must be a (K, d) tensor, a (W, b) pair or a module with a (K, d) "
        f"weight (nn.Linear, a head), got {type(classifier).__name__}"
    )


def _layer_classifier(
    module: nn.Module, num_logits: int, dim: int
) -> tuple[Tensor | None, Tensor | None]:
    """The hooked module as classifier, if its weight maps the d features to the K logits."""
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if not isinstance(weight, Tensor) or tuple(weight.shape) != (num_logits, dim):
        return None, None
    return weight.detach(), bias.detach() if isinstance(bias, Tensor) else None


class _Forward:
    """Runs one batch and returns ``(features, labels, logits)``; a context manager that
    installs and removes the feature hook.

    The features are the hooked module's input, passed through the module's own
    ``features`` method when it has one (a head: what its frame or classifier sees).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | None,
        module: nn.Module | None,
        device: torch.device,
        kwargs: dict[str, Any],
    ):
        self.model, self.module, self.device, self.kwargs = model, module, device, kwargs
        self.layer = layer
        self.project = _features_method(module) if module is not None else None
        self._captured: list[Tensor] = []
        self._handle: Any = None

    @property
    def source(self) -> str:
        """Where the features come from, for messages."""
        if self.module is None:
            return "the features the model returned"
        kind = type(self.module).__name__
        if self.project is not None:
            return f"the features {kind}.features() gives at layer {self.layer!r}"
        return f"the inputs of layer {self.layer!r} ({kind})"

    def __enter__(self) -> _Forward:
        if self.module is not None:
            self._handle = self.module.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, _module: nn.Module, args: tuple[Any, ...]) -> None:
        self._captured.append(args[0])

    def __call__(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        if not isinstance(batch, Sequence) or len(batch) < 2:
            raise ValueError(
                f"each batch must be a sequence (inputs, labels, ...), got {type(batch).__name__}"
            )
        inputs, labels = batch[0], batch[1]
        self._captured.clear()
        output = self.model(_move(inputs, self.device), **self.kwargs)
        if self.module is not None:
            if not self._captured:
                raise ValueError(
                    f"layer {self.layer!r} ({type(self.module).__name__}) was not called "
                    "during forward; pick a module that the forward pass runs"
                )
            features = self._captured[-1]
            if self.project is not None and isinstance(features, Tensor):
                features = self.project(features)
            logits = output[0] if isinstance(output, (tuple, list)) else output
        elif isinstance(output, (tuple, list)) and len(output) >= 2:
            logits, features = output[0], output[1]
        else:
            raise ValueError(
                "the model returned a single tensor, so the features are unknown; pass "
                "layer='<name of the classifier module>' or make the model return "
                "(logits, features)"
            )
        if not isinstance(features, Tensor) or features.ndim != 2:
            shape = (
                tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            )
            raise ValueError(
                f"features must be (batch, d) vectors, but {self.source} are {shape}; hook "
                "the module whose input is the pooled, flattened feature (usually the final "
                "Linear or the head)"
            )
        labels = torch.as_tensor(labels)
        return features.detach(), labels, logits.detach()


def _features_method(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """The module's ``features(x)`` method, if it has one (not a submodule called
    ``features``, as torchvision's VGG has)."""
    method = getattr(module, "features", None)
    return method if inspect.ismethod(method) else None


def _move(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Tensor):
        return inputs.to(device)
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_move(x, device) for x in inputs)
    return inputs
