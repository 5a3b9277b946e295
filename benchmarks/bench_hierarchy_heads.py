"""Claim ([L23]): a hierarchy-aware frame makes mistakes less severe than an ETF or a
learnable classifier, at the same top-1 error.

Runs ``neuralcollapse compare`` on the three CPU demonstration recipes (synthetic data whose
24 class means follow a balanced tree; MLP; 30 epochs): HAFrame + cosine frame loss, simplex
ETF + the same neck and loss, learnable classifier + CE. Prints mean +- std over seeds of
top-1, mistake severity (mean LCA height of the wrong top-1 predictions) and hierarchical
distance@1/@5 (mean LCA height between truth and the top-k predictions).

    python benchmarks/bench_hierarchy_heads.py [--seeds 5] [--runs-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import tempfile

import torch

from neuralcollapse.cli import main as cli

RECIPES = ("hier_mixture_haframe", "hier_mixture_etf", "hier_mixture_learnable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--runs-dir", default=None)
    args = parser.parse_args()
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="bench_hier_")
    print(f"# {datetime.date.today()} torch {torch.__version__} threads {torch.get_num_threads()}")
    code = cli(
        [
            "compare",
            *RECIPES,
            "--seeds",
            str(args.seeds),
            "--runs-dir",
            runs_dir,
            "log.tensorboard=false",
            "log.report=false",
        ]
    )
    raise SystemExit(code)


if __name__ == "__main__":
    main()
