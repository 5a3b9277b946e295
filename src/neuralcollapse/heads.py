"""Classifier heads: a fixed-frame head and an ordinary learnable one, same interface.

Both map backbone features ``x`` (B, in_features) to logits (B, K) and, on request, also
return ``h``, the exact feature vector the classifier sees (after the neck), which is what
losses such as :class:`~neuralcollapse.losses.DotRegressionLoss` and the collapse metrics
must be given::

    head = FixedFrameHead(512, nc.frames.simplex_etf(100, 128, seed=0), neck="bn_l2")
    logits, h = head(x, return_features=True)
    loss = nc.losses.DotRegressionLoss()(h, y, head.frame)

Necks (what sits between backbone and frame, docs/theory.md §2):

* ``"none"``  -- identity.
* ``"l2"``    -- L2 normalisation, h / max(||h||, 1e-8).
* ``"bn"``    -- learnable BatchNorm1d (the [Y22] ImageNet-LT model).
* ``"bn_l2"`` -- BatchNorm1d then L2 normalisation (the [Y22] CIFAR models).
* ``"mlp"``   -- two Linear-LayerNorm-LeakyReLU blocks and a Linear, plus a residual
  Linear from the input, then L2 normalisation (the FSCIL follow-up's neck).
* ``"haframe"`` -- [L23]'s head: BatchNorm1d, then two residual blocks (Linear without
  bias, BN, PReLU, twice, identity skip); no normalisation (the norm is a temperature).

Both heads trace with ``torch.fx`` (and so with torchvision's ``create_feature_extractor``)
inside a model: the input check is skipped for symbolic values. A head traced as the root
module needs ``concrete_args={"return_features": False}`` (FX cannot branch on a traced
flag). :meth:`FixedFrameHead.get_config` and
:func:`head_from_config` describe and rebuild a head (what ``nc.export`` saves).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neuralcollapse._internal.checks import check_float, check_int

__all__ = [
    "NECKS",
    "NONNEGATIVE_NECKS",
    "FixedFrameHead",
    "L2Normalize",
    "LearnableHead",
    "MLPNeck",
    "ResidualBlock",
    "build_neck",
    "head_from_config",
]

NECKS = ("none", "l2", "bn", "bn_l2", "mlp", "haframe")
#: Necks whose output is non-negative when their input is (a ReLU backbone's features):
#: the identity, and L2 normalisation (dividing by a positive norm keeps every sign).
#: BatchNorm's shift, the MLP and the [L23] head produce signed features.
NONNEGATIVE_NECKS = ("none", "l2")

L2_EPS = 1e-8


class L2Normalize(nn.Module):
    """Scale each row to unit Euclidean norm: (B, d) -> (B, d)."""

    def __init__(self, eps: float = L2_EPS) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1, eps=self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class MLPNeck(nn.Module):
    """(B, in_features) -> (B, out_features), unit rows: MLP branch + linear skip, then L2."""

    def __init__(self, in_features: int, out_features: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or 2 * out_features
        self.branch = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.LayerNorm(hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, hidden),
            nn.LayerNorm(hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, out_features),
        )
        self.skip = nn.Linear(in_features, out_features)
        self.normalize = L2Normalize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.branch(x) + self.skip(x))


class ResidualBlock(nn.Module):
    """x + f(x), f = (Linear without bias -> BatchNorm1d -> PReLU) twice; (B, d) -> (B, d).

    ``prelu="per_channel"`` learns one slope per feature, as [L23]'s official
    transformation module does (``nn.PReLU(num_parameters=channels)``,
    ltong1130ztr/HAFrame util/arch/wideresnet.py:104 and util/arch/HAF_resnet.py:41);
    ``"shared"`` one slope per PReLU layer (PyTorch's default). Both start at 0.25, so they
    agree at initialisation and drift apart as the slopes train.
    """

    def __init__(self, dim: int, *, prelu: str = "shared") -> None:
        super().__init__()
        slopes = _prelu_parameters(prelu, dim)
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [
                nn.Linear(dim, dim, bias=False),
                nn.BatchNorm1d(dim),
                nn.PReLU(num_parameters=slopes),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


PRELU_MODES = ("shared", "per_channel")


def _prelu_parameters(prelu: str, dim: int) -> int:
    if prelu not in PRELU_MODES:
        raise ValueError(f"prelu must be one of {', '.join(PRELU_MODES)}, got {prelu!r}")
    return dim if prelu == "per_channel" else 1


def build_neck(
    name: str,
    in_features: int,
    out_features: int,
    *,
    prelu: str = "shared",
    bn_momentum: float = 0.1,
) -> nn.Module:
    """The neck called ``name`` mapping (B, in_features) -> (B, out_features).

    Only ``"mlp"`` changes the width; the others need ``in_features == out_features``.
    ``bn_momentum`` is the running-statistics momentum of the neck's leading BatchNorm
    (``bn``, ``bn_l2``, ``haframe``; PyTorch's 0.1 by default; [L23]'s CIFAR-100
    WideResNet head uses 0.001, ltong1130ztr/HAFrame util/arch/wideresnet.py:198).
    ``prelu`` is the slope sharing of the ``haframe`` neck's PReLUs (:class:`ResidualBlock`).
    """
    if name not in NECKS:
        raise ValueError(f"unknown neck {name!r}; choose one of {', '.join(NECKS)}")
    _prelu_parameters(prelu, 1)
    bn_momentum = check_float("bn_momentum", bn_momentum, minimum=0.0, strict_minimum=True)
    if bn_momentum > 1:
        raise ValueError(f"bn_momentum must lie in (0, 1], got {bn_momentum}")
    if name == "mlp":
        return MLPNeck(in_features, out_features)
    if in_features != out_features:
        raise ValueError(
            f"neck {name!r} keeps the width, but in_features={in_features} != "
            f"out_features={out_features}: add a projection or use neck='mlp'"
        )
    if name == "haframe":
        return nn.Sequential(
            nn.BatchNorm1d(out_features, momentum=bn_momentum),
            ResidualBlock(out_features, prelu=prelu),
            ResidualBlock(out_features, prelu=prelu),
        )
    layers: list[nn.Module] = []
    if name in ("bn", "bn_l2"):
        layers.append(nn.BatchNorm1d(out_features, momentum=bn_momentum))
    if name in ("l2", "bn_l2"):
        layers.append(L2Normalize())
    return nn.Sequential(*layers) if layers else nn.Identity()


def _check_frame(frame: object) -> torch.Tensor:
    """A (K, d) finite floating-point frame with K >= 2, d >= 1 and no zero row."""
    if (
        not isinstance(frame, torch.Tensor)
        or frame.ndim != 2
        or frame.shape[0] < 2
        or frame.shape[1] < 1
    ):
        shape = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
        raise ValueError(
            f"frame must be a (K, d) tensor with K >= 2 rows and d >= 1 columns, got {shape}"
        )
    if not frame.is_floating_point():
        raise ValueError(f"frame must be a floating-point tensor, got dtype {frame.dtype}")
    bad = torch.nonzero(~torch.isfinite(frame).all(dim=1)).flatten().tolist()
    if bad:
        raise ValueError(
            f"frame must be finite: rows {bad[:10]}{' ...' if len(bad) > 10 else ''} hold NaN "
            "or infinite values"
        )
    zero = torch.nonzero((frame == 0).all(dim=1)).flatten().tolist()
    if zero:
        raise ValueError(
            f"frame rows {zero[:10]}{' ...' if len(zero) > 10 else ''} are all zero: a zero "
            "class vector gives its class a constant logit of 0 that no feature can change; "
            "every class needs a nonzero vector"
        )
    return frame


def _check_input(x: torch.Tensor, in_features: int) -> None:
    # A symbolic value (torch.fx tracing, e.g. torchvision's create_feature_extractor) has
    # no shape to check. The traced graph runs without this check: a wrong width then
    # fails inside the projection or the product with the frame.
    if isinstance(x, torch.fx.Proxy):
        return
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != in_features:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"head expects features of shape (batch, {in_features}), got {shape}; "
            "flatten or pool the backbone output first"
        )


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() if device_type == "cuda" else False


def _check_dtype(x: torch.Tensor, module: nn.Module) -> None:
    """Features whose float dtype differs from the head's weights fail inside the first
    layer with torch's mixed-dtype error; say what to convert instead (autocast regions
    cast for themselves)."""
    if isinstance(x, torch.fx.Proxy) or not x.is_floating_point():
        return
    weight = next(module.parameters(), None)
    if weight is None or weight.dtype == x.dtype or _autocast_on(x.device.type):
        return
    raise ValueError(
        f"features are {x.dtype} but the head's weights are {weight.dtype}: convert one to "
        f"the other (features.to({weight.dtype}) or head.to({x.dtype}))"
    )


class FixedFrameHead(nn.Module):
    """A classifier whose class vectors are a fixed frame W (K, d) that is never trained.

    ``logits = scale * h @ W.T`` with ``h = neck(projection(x))``. The frame is a
    persistent buffer: saved in ``state_dict()``, restored by ``load_state_dict()``, moved
    by ``.to()``, absent from ``parameters()`` (so no optimiser or weight decay touches it).

    Args:
        in_features: width of the backbone features x.
        frame: (K, d) class vectors, e.g. :func:`~neuralcollapse.frames.simplex_etf`:
            floating point, finite, no all-zero row (errors name the offending rows). A
            copy is stored.
        neck: one of :data:`NECKS` (default ``"bn_l2"``, the [Y22] CIFAR setting).
        scale: logit scale (inverse temperature) > 0; with unit features and a unit-row
            frame the logits lie in [-scale, scale].

    When ``in_features != d`` a learnable ``nn.Linear(in_features, d)`` projection comes
    first (except with ``neck="mlp"``, which maps to d itself).
    """

    frame: torch.Tensor

    def __init__(
        self,
        in_features: int,
        frame: torch.Tensor,
        *,
        neck: str = "bn_l2",
        scale: float = 1.0,
        prelu: str = "shared",
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        frame = _check_frame(frame)
        scale = check_float("scale", scale, minimum=0.0, strict_minimum=True)
        if neck not in NECKS:
            raise ValueError(f"unknown neck {neck!r}; choose one of {', '.join(NECKS)}")
        self.scale = scale
        self.neck_name = neck
        dim = frame.shape[1]
        self.register_buffer("frame", frame.detach().clone(), persistent=True)
        needs_projection = in_features != dim and neck != "mlp"
        self.projection = nn.Linear(in_features, dim) if needs_projection else nn.Identity()
        self.neck_options = {"prelu": prelu, "bn_momentum": float(bn_momentum)}
        self.neck = build_neck(
            neck, in_features if neck == "mlp" else dim, dim, prelu=prelu, bn_momentum=bn_momentum
        )

    @property
    def num_classes(self) -> int:
        return self.frame.shape[0]

    @property
    def dim(self) -> int:
        """Dimension d of the features h that meet the frame."""
        return self.frame.shape[1]

    @property
    def weight(self) -> torch.Tensor:
        """The effective classifier ``scale * W`` (K, d), for metrics: logits = h @ weight.T."""
        return self.scale * self.frame

    @property
    def bias(self) -> None:
        """Fixed-frame heads have no bias."""
        return None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, d): the features h the frame sees."""
        _check_input(x, self.in_features)
        _check_dtype(x, self)
        return self.neck(self.projection(x))

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K); with ``return_features=True`` the pair ``(logits, h)``."""
        h = self.features(x)
        logits = self.scale * (h @ self.frame.to(h.dtype).T)
        return (logits, h) if return_features else logits

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, dim={self.dim}, "
            f"neck={self.neck_name!r}, scale={self.scale}"
        )

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments but the frame, as JSON types, plus ``num_classes``
        and ``dim`` (the frame's shape): ``head_from_config(head.get_config(),
        frame=head.frame)`` builds an identical head (then load the state dict)."""
        return {
            "type": "FixedFrameHead",
            "in_features": self.in_features,
            "num_classes": self.num_classes,
            "dim": self.dim,
            "neck": self.neck_name,
            "scale": self.scale,
            **self.neck_options,
        }


class LearnableHead(nn.Module):
    """An ordinary learnable linear classifier with the same interface as FixedFrameHead.

    ``logits = h @ W.T + b`` with ``h = neck(x)``; W (K, in_features) and b are trained.

    ``cosine=True`` makes it a cosine classifier (the normalised linear layer Cao et al.
    2019 train LDAM with): ``h = neck(x) / ||neck(x)||`` and
    ``logits_k = <h, w_k / ||w_k||>`` in [-1, 1], no bias (``weight`` is then the
    row-normalised W).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        bias: bool = True,
        neck: str = "none",
        cosine: bool = False,
        prelu: str = "shared",
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        check_int("num_classes", num_classes, minimum=2)
        if cosine and bias:
            raise ValueError("a cosine classifier (cosine=True) has no bias: pass bias=False")
        self.neck_name = neck
        self.cosine = bool(cosine)
        self.neck_options = {"prelu": prelu, "bn_momentum": float(bn_momentum)}
        self.neck = build_neck(neck, in_features, in_features, prelu=prelu, bn_momentum=bn_momentum)
        self.classifier = nn.Linear(in_features, num_classes, bias=bias)

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    @property
    def dim(self) -> int:
        return self.in_features

    @property
    def weight(self) -> torch.Tensor:
        """The classifier W (K, d) (row-normalised for a cosine classifier)."""
        if self.cosine:
            return F.normalize(self.classifier.weight, dim=1, eps=L2_EPS)
        return self.classifier.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The classifier bias (K,), or None."""
        return self.classifier.bias

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_features) -> (B, d): the features h the classifier sees."""
        _check_input(x, self.in_features)
        _check_dtype(x, self)
        h = self.neck(x)
        return F.normalize(h, dim=1, eps=L2_EPS) if self.cosine else h

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, K); with ``return_features=True`` the pair ``(logits, h)``."""
        h = self.features(x)
        logits = h @ self.weight.to(h.dtype).T if self.cosine else self.classifier(h)
        return (logits, h) if return_features else logits

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments as JSON types: ``head_from_config(head.get_config())``
        builds a head of the same shape (then load the state dict)."""
        return {
            "type": "LearnableHead",
            "in_features": self.in_features,
            "num_classes": self.num_classes,
            "bias": self.classifier.bias is not None,
            "neck": self.neck_name,
            "cosine": self.cosine,
            **self.neck_options,
        }


def head_from_config(
    config: Mapping[str, Any], frame: torch.Tensor | None = None
) -> FixedFrameHead | LearnableHead:
    """The head described by ``head.get_config()``; a FixedFrameHead needs its ``frame``.

    Args:
        config: the dict of :meth:`FixedFrameHead.get_config` or
            :meth:`LearnableHead.get_config`.
        frame: the (K, d) frame of a FixedFrameHead; its shape must match the config's
            ``num_classes`` and ``dim``. Ignored (must be None) for a LearnableHead.

    Raises:
        ValueError: an unknown ``type``, missing keys, or a frame that is missing or of
            another shape than the config says.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"head config must be a dict, got {type(config).__name__}")
    kind = config.get("type")
    required = {
        "FixedFrameHead": ("in_features", "num_classes", "dim", "neck", "scale"),
        "LearnableHead": ("in_features", "num_classes", "bias", "neck", "cosine"),
    }
    if kind not in required:
        raise ValueError(
            f"head config has type {kind!r}; expected one of {sorted(required)} (the dict "
            "that head.get_config() returns)"
        )
    missing = [key for key in required[kind] if key not in config]
    if missing:
        raise ValueError(f"{kind} config lacks {missing}; pass the dict of head.get_config()")
    if kind == "LearnableHead":
        if frame is not None:
            raise ValueError("a LearnableHead has no frame; pass frame=None")
        return LearnableHead(
            config["in_features"],
            config["num_classes"],
            bias=bool(config["bias"]),
            neck=config["neck"],
            cosine=bool(config["cosine"]),
            prelu=config.get("prelu", "shared"),
            bn_momentum=float(config.get("bn_momentum", 0.1)),
        )
    expected = (config["num_classes"], config["dim"])
    if not isinstance(frame, torch.Tensor) or tuple(frame.shape) != tuple(expected):
        found = tuple(frame.shape) if isinstance(frame, torch.Tensor) else type(frame).__name__
        raise ValueError(
            f"the FixedFrameHead config says the frame is {tuple(expected)} (num_classes, "
            f"dim), got {found}; pass the head's saved frame"
        )
    return FixedFrameHead(
        config["in_features"],
        frame,
        neck=config["neck"],
        scale=float(config["scale"]),
        # configs written before these options existed hold PyTorch's defaults
        prelu=config.get("prelu", "shared"),
        bn_momentum=float(config.get("bn_momentum", 0.1)),
    )
