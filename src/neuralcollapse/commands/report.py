"""``neuralcollapse report``: the HTML report of one or several run directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralcollapse.report import IMAGE_FORMATS, write_report


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="write an HTML report of run directories",
        description="Write one self-contained HTML page (figures embedded, opens offline) "
        "of the runs' config, summary, loss / accuracy / NC1-NC4 curves, per-class accuracy "
        "and class-mean geometry, read from the run directories' files alone; several runs "
        "are overlaid and compared in a table. The "
        "figures are also saved beside the page, in <out stem>_figures/.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the HTML file (default RUN_DIR/report.html for one run, ./report.html for several)",
    )
    parser.add_argument(
        "--format",
        dest="image_format",
        choices=IMAGE_FORMATS,
        default="png",
        help="image format of the figures (default png)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    path = write_report(args.run_dirs, args.out, image_format=args.image_format)
    print(f"wrote {path}")
    return 0
