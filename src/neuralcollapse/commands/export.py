"""``neuralcollapse export``: a run's model as a Hugging-Face-style directory.

Writes ``model.safetensors``, ``config.json`` and ``preprocessor_config.json`` (see
:mod:`neuralcollapse.export`). torch and the trainer are imported by :func:`run`, so
``neuralcollapse export --help`` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a run's model: weights, config and preprocessing"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help=HELP,
        description="Save the model of a run directory (or a checkpoint file) as "
        "model.safetensors + config.json + preprocessor_config.json, loadable with "
        "neuralcollapse.load_pretrained(DIR, with_preprocess=True). The model is rebuilt by "
        "the trainer's own builder, which reads the run's data set once (its input shape, "
        "class names and normalisation): the data must be readable here.",
    )
    parser.add_argument("target", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="the export directory"
    )
    parser.add_argument(
        "--checkpoint",
        choices=("auto", "best", "last"),
        default="auto",
        help="which checkpoint of a run directory: best, last, or auto (default): best when "
        "the run has it, else last",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from neuralcollapse._internal.tables import render_table
    from neuralcollapse.export import (
        PREPROCESSOR_NAME,
        load_preprocessor,
        read_pretrained_config,
        save_pretrained,
    )

    which = None if args.checkpoint == "auto" else args.checkpoint
    directory = save_pretrained(args.target, args.out, checkpoint=which)
    document = read_pretrained_config(directory)
    rows = [
        ["checkpoint", document.get("source", {}).get("checkpoint", "")],
        ["epoch", document.get("source", {}).get("epoch", "")],
        ["model", document["architecture"].get("backbone", {}).get("name", "head")],
        ["classes", document["num_classes"]],
        ["input shape", "x".join(str(n) for n in document.get("input_shape", []))],
    ]
    if (directory / PREPROCESSOR_NAME).is_file():
        preprocess = load_preprocessor(directory)
        rows.append(["mean", _values(preprocess.image_mean)])
        rows.append(["std", _values(preprocess.image_std)])
    print(render_table(["exported", str(directory)], rows, align=["left", "left"]))
    return 0


def _values(values: tuple[float, ...] | None) -> str:
    return "none" if values is None else ", ".join(f"{v:.4f}" for v in values)
