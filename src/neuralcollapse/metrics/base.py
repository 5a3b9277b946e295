"""The one contract every streaming metric of the package follows.

An accumulator reads data batch by batch and keeps only sums, so that it can be split
over batches, processes and time and put back together exactly:

=================================  ==========================================================
``update(...)``                    add one batch (arguments depend on the metric)
``compute(...)``                   the numbers of everything added so far (nothing changes)
``reset()``                        back to the state of a freshly built accumulator
``merge(other)``                   add another accumulator of the same kind and shape;
                                   returns self
``all_reduce(group=None)``         sum the states of every process (torch.distributed);
                                   a no-op without an initialised process group; returns self
``state_dict()``                   plain tensors and Python values: ``torch.save`` it and
                                   ``torch.load(..., weights_only=True)`` it back
``load_state_dict(state)``         restore; shapes and configuration are checked
=================================  ==========================================================

A subclass declares each state tensor once with :meth:`Accumulator.add_state` (its name,
its default value, how it combines across processes); ``reset``, ``merge``,
``all_reduce``, ``state_dict`` and ``load_state_dict`` follow from the declarations. It
also names its configuration in :meth:`Accumulator._config` (what two accumulators must
share to be merged, e.g. the number of classes), which the state dict records and
:meth:`Accumulator.load_state_dict` checks. A subclass overrides :meth:`Accumulator._merge`
or :meth:`Accumulator._all_reduce` only where its math needs more than a sum (see
:class:`~neuralcollapse.metrics.collapse.CollapseStats`, which re-centres its sums).

The design follows torchmetrics' ``Metric`` (``add_state`` with a reduction) without
depending on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import Tensor

__all__ = ["Accumulator", "distributed_ready"]

Reduction = Literal["sum"]
_Self = TypeVar("_Self", bound="Accumulator")
_REDUCTIONS = ("sum",)


def distributed_ready() -> bool:
    """Whether ``torch.distributed`` is available and its default process group is
    initialised; the one place the package asks."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


@dataclasses.dataclass(frozen=True)
class _StateSpec:
    default: Tensor
    reduce: Reduction | None


class Accumulator:
    """Base class of the streaming metrics: see the module docstring for the contract.

    Subclasses call ``super().__init__(device)`` first, then :meth:`add_state` for each
    state tensor, and implement ``update``, ``compute`` and :meth:`_config`.

    Args:
        device: where the state tensors live (default CPU).
    """

    #: Bumped when the meaning or layout of the state dict changes.
    state_version: ClassVar[int] = 1
    #: The end of the message raised when two accumulators (or a state dict) differ in
    #: configuration: what to do about it.
    _compatibility_hint: ClassVar[str] = "build both with the same arguments"

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._specs: dict[str, _StateSpec] = {}

    # ------------------------------------------------------------------ declarations
    def add_state(self, name: str, default: Tensor, *, reduce: Reduction | None = "sum") -> None:
        """Declare a state tensor, stored as the attribute ``_<name>``.

        Args:
            name: the key in :meth:`state_dict`.
            default: its value in a fresh (or :meth:`reset`) accumulator, moved to
                :attr:`device`. The accumulator keeps this tensor as the template of
                its state: the caller hands it over and must not modify it afterwards.
            reduce: ``"sum"``: :meth:`merge` adds the other accumulator's value and
                :meth:`all_reduce` sums over processes. ``None``: the subclass's
                :meth:`_merge` and :meth:`_all_reduce` handle it.
        """
        if reduce is not None and reduce not in _REDUCTIONS:
            raise ValueError(f"reduce must be one of {_REDUCTIONS} or None, got {reduce!r}")
        if name in self._specs:
            raise ValueError(f"state {name!r} is declared twice")
        # The default is kept as given (on the device), not copied: a fresh accumulator
        # of large states then costs one allocation per state beside the default's.
        template = default.detach().to(self.device)
        self._specs[name] = _StateSpec(template, reduce)
        setattr(self, f"_{name}", template.clone())

    def _config(self) -> dict[str, Any]:
        """What another accumulator must share with this one to be merged, and what a
        state dict must match to be loaded: ints, strings, tuples or tensors."""
        return {}

    def _state(self, name: str) -> Tensor:
        return getattr(self, f"_{name}")

    # ---------------------------------------------------------------------- contract
    def update(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - abstract
        """Add one batch."""
        raise NotImplementedError

    def compute(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        """The metric of everything added so far; the state is left unchanged."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget every batch: the state of a freshly built accumulator."""
        for name, spec in self._specs.items():
            setattr(self, f"_{name}", spec.default.clone())

    def merge(self: _Self, other: Accumulator) -> _Self:
        """Add the batches ``other`` has seen to this accumulator; returns self.

        ``other`` must be of the same class and configuration; it is left unchanged and
        may live on another device. The result equals one accumulator fed both streams
        (exactly for counts, up to float64 round-off for float sums).
        """
        if type(other) is not type(self):
            raise ValueError(
                f"merge() takes a {type(self).__name__}, got {type(other).__name__}; build "
                f"one with {type(self).__name__}(...) and update() it"
            )
        self._check_compatible(other._config(), source=f"the other {type(self).__name__}")
        self._merge(other)
        return self

    def all_reduce(self: _Self, group: Any = None) -> _Self:
        """Sum the state of every process of ``group`` in place; returns self.

        Every process of the group must call it (it is a collective). When
        ``torch.distributed`` is unavailable or no process group is initialised, it does
        nothing: a single process already holds the whole sum.
        """
        if distributed_ready():
            self._all_reduce(group)
        return self

    def state_dict(self) -> dict[str, Any]:
        """``kind``, ``version``, the configuration and copies of the state tensors.

        Only tensors and plain Python values, so ``torch.save`` writes it and
        ``torch.load(path, weights_only=True)`` reads it back.
        """
        state: dict[str, Any] = {"kind": type(self).__name__, "version": self.state_version}
        state.update({key: _plain(value) for key, value in self._config().items()})
        for name in self._specs:
            state[name] = self._state(name).clone()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the configuration must match this object's.

        Raises:
            ValueError: not a state dict of this class, another version or
                configuration, or a state tensor of the wrong shape. Nothing changes then.
        """
        cls = type(self).__name__
        if not isinstance(state, Mapping):
            raise ValueError(
                f"state must be the dict returned by {cls}.state_dict(), got {type(state).__name__}"
            )
        missing = [k for k in ("version", *self._config(), *self._specs) if k not in state]
        if missing:
            raise ValueError(
                f"state dict lacks {missing}; pass the dict returned by {cls}.state_dict()"
            )
        if state.get("kind", cls) != cls:
            raise ValueError(f"the state dict is from a {state['kind']}, not a {cls}")
        if state["version"] != self.state_version:
            raise ValueError(
                f"state dict version {state['version']!r} is not supported by {cls} "
                f"(expected {self.state_version}); recompute the state with this version"
            )
        self._check_compatible(state, source="the state dict")
        loaded = {}
        for name, spec in self._specs.items():
            value = state[name]
            if not isinstance(value, Tensor) or tuple(value.shape) != tuple(spec.default.shape):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"state dict entry {name!r} has shape {shape}, expected "
                    f"{tuple(spec.default.shape)}; the state dict is corrupt or from another "
                    f"{cls} configuration"
                )
            loaded[name] = value.detach().to(self.device, spec.default.dtype).clone()
        for name, value in loaded.items():
            setattr(self, f"_{name}", value)

    # ------------------------------------------------------------------ overridables
    def _merge(self, other: Accumulator) -> None:
        """Combine ``other``'s states into this one's (already checked compatible)."""
        self._require_sum_states("_merge")
        for name in self._specs:
            self._state(name).add_(other._state(name).to(self.device))

    def _all_reduce(self, group: Any) -> None:
        """Sum the declared states over ``group`` (a process group is initialised).

        States of one dtype travel together in one flat buffer: one collective per dtype.
        """
        import torch.distributed as dist

        self._require_sum_states("_all_reduce")
        by_dtype: dict[torch.dtype, list[str]] = {}
        for name in self._specs:
            by_dtype.setdefault(self._state(name).dtype, []).append(name)
        for names in by_dtype.values():
            flat = torch.cat([self._state(name).reshape(-1) for name in names])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
            offset = 0
            for name in names:
                tensor = self._state(name)
                size = tensor.numel()
                tensor.copy_(flat[offset : offset + size].view_as(tensor))
                offset += size

    def _require_sum_states(self, method: str) -> None:
        custom = [name for name, spec in self._specs.items() if spec.reduce != "sum"]
        if custom:
            raise NotImplementedError(
                f"{type(self).__name__} declares states without a reduction ({custom}); it "
                f"must override {method}"
            )

    def _check_compatible(self, config: Mapping[str, Any], *, source: str) -> None:
        """Raise ValueError, naming the differences, unless ``config`` (another
        accumulator's or a state dict's) matches :meth:`_config`."""
        mine = self._config()
        cls = type(self).__name__
        scalars = [key for key, value in mine.items() if not isinstance(value, Tensor)]
        if any(not _same(mine[key], config.get(key)) for key in scalars):
            raise ValueError(
                f"{source} has {_describe(config, scalars)} but this {cls} has "
                f"{_describe(mine, scalars)}; {self._compatibility_hint}"
            )
        tensors = [key for key in mine if key not in scalars]
        differing = [key for key in tensors if not _same(mine[key], config.get(key))]
        if differing:
            what = " and ".join(
                _tensor_difference(key, mine[key], config.get(key)) for key in differing
            )
            raise ValueError(
                f"{source} has other {what} than this {cls}; {self._compatibility_hint}"
            )


def _plain(value: Any) -> Any:
    """A configuration value as state-dict material: tensors copied, tuples as lists."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return list(value)
    return value


def _same(mine: Any, theirs: Any) -> bool:
    if isinstance(mine, Tensor) or isinstance(theirs, Tensor):
        if not (isinstance(mine, Tensor) and isinstance(theirs, Tensor)):
            return False
        if mine.shape != theirs.shape:
            return False
        a = mine.detach().cpu().to(torch.float64)
        b = theirs.detach().cpu().to(torch.float64)
        same_nan = torch.equal(a.isnan(), b.isnan())
        return same_nan and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
    if isinstance(mine, Sequence) and not isinstance(mine, str):
        return (
            isinstance(theirs, Sequence)
            and not isinstance(theirs, str)
            and tuple(mine) == tuple(theirs)
        )
    return mine == theirs


def _describe(config: Mapping[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{key}={_show(config.get(key))}" for key in keys)


def _show(value: Any) -> str:
    return repr(tuple(value) if isinstance(value, list) else value)


def _tensor_difference(key: str, mine: Tensor, theirs: Any) -> str:
    words = key.replace("_", " ")
    if isinstance(theirs, Tensor) and theirs.shape != mine.shape:
        return f"{words} (shape {tuple(theirs.shape)} instead of {tuple(mine.shape)})"
    if not isinstance(theirs, Tensor):
        return f"{words} (a {type(theirs).__name__}, not a tensor)"
    return words
