"""Long-tailed baselines compared through the Python API: a learnable classifier with
cross-entropy, the same with logit adjustment, and a fixed simplex ETF with the
dot-regression loss, on the long-tailed digits over paired seeds.

    python examples/longtail_baselines.py [--small] [--out DIR]
"""

from __future__ import annotations

import math
import statistics

from _common import parse_args

from neuralcollapse.train import Trainer, load_config

METHODS = {
    "learnable CE": ["head.kind=learnable", "loss.name=ce"],
    "learnable CE + logit adjustment": ["head.kind=learnable", "loss.name=logit_adjusted"],
    "fixed ETF + DR": ["head.kind=etf", "loss.name=dr"],
}


def main() -> None:
    args = parse_args(__doc__)
    seeds = [0] if args.small else [0, 1, 2]
    epochs = 3 if args.small else 30
    common = [f"train.epochs={epochs}", "log.tensorboard=false", "log.report=false"]
    results: dict[str, list[dict]] = {}
    for method, overrides in METHODS.items():
        for seed in seeds:
            config = load_config(None, [*common, *overrides, f"train.seed={seed}"])
            name = method.replace(" ", "_").replace("+", "and")
            trainer = Trainer(config, args.out / "baselines" / f"{name}-seed{seed}")
            try:
                summary = trainer.fit()
            finally:
                trainer.close()
            results.setdefault(method, []).append(summary["final"])

    print(f"{'method':34s} {'top-1':>7s} {'balanced':>9s} {'NC1':>8s}   ({len(seeds)} seed(s))")
    for method, finals in results.items():
        top1 = _mean(f["top1"] for f in finals)
        balanced = _mean(f["balanced"] for f in finals)
        nc1 = _mean(f["collapse"]["nc1"] for f in finals)
        print(f"{method:34s} {100 * top1:7.1f} {100 * balanced:9.1f} {nc1:8.3g}")


def _mean(values) -> float:
    """The mean; NaN when a run left the value undefined (recorded as null)."""
    values = list(values)
    return math.nan if any(v is None for v in values) else statistics.mean(values)


if __name__ == "__main__":
    main()
