"""``neuralcollapse eval``: re-evaluate a run directory or a checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from neuralcollapse.train.checkpoint import load_checkpoint
from neuralcollapse.train.config import config_from_dict
from neuralcollapse.train.distributed import DistContext, init_distributed, shutdown_distributed
from neuralcollapse.train.trainer import assemble, evaluate_splits, shot_group_classes

SPLITS = {"test": ("test",), "train": ("train",), "both": ("train", "test")}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "eval",
        help="re-evaluate a run directory or checkpoint",
        description="Rebuild the model and data of a checkpoint's config, load its weights "
        "and print accuracy by shot group and the collapse metrics. Under torchrun every "
        "process evaluates a disjoint shard and the statistics are summed exactly.",
    )
    parser.add_argument("target", type=Path, metavar="RUN_DIR|CHECKPOINT")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint of a run directory (default best)",
    )
    parser.add_argument("--split", choices=tuple(SPLITS), default="test")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results here")
    return parser


def _checkpoint_path(target: Path, which: str) -> Path:
    if target.is_dir():
        return target / "checkpoints" / f"{which}.pt"
    return target


def format_evaluation(results: dict) -> str:
    lines = [
        f"{'split':8}{'top1':>7}{'balanced':>10}{'many':>7}{'medium':>8}{'few':>7}"
        f"{'nc1':>10}{'nc2':>8}{'nc3':>8}{'nc4':>8}"
    ]

    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f}"

    def sci(value):
        return "n/a" if value is None else f"{value:.3g}"

    for split, r in results.items():
        c = r["collapse"]
        lines.append(
            f"{split:8}{pct(r['top1']):>7}{pct(r['balanced']):>10}{pct(r['many']):>7}"
            f"{pct(r['medium']):>8}{pct(r['few']):>7}{sci(c['nc1']):>10}"
            f"{sci(c['nc2_etf_distance_means']):>8}{sci(c.get('nc3_self_duality')):>8}"
            f"{sci(c.get('nc4_ncc_mismatch')):>8}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    path = _checkpoint_path(args.target, args.checkpoint)
    state = load_checkpoint(path)
    config = config_from_dict(state["config"])
    context = init_distributed(args.device, config.train.ddp_timeout_s)
    try:
        return _evaluate(args, path, state, config, context)
    finally:
        shutdown_distributed()


def _evaluate(args, path: Path, state: dict, config, context: DistContext) -> int:
    data, loaders, model = assemble(config, context)
    model.load_state_dict(state["model"])
    groups = shot_group_classes(config, data)
    lca = None if data.hierarchy is None else data.hierarchy.lca_heights()
    results = evaluate_splits(
        model,
        loaders,
        groups,
        context.device,
        splits=SPLITS[args.split],
        distributed=context.enabled,
        lca=lca,
    )
    if not context.is_main:
        return 0
    processes = f" x {context.world_size} processes" if context.enabled else ""
    print(f"{path} (epoch {state['epoch']} of {config.name}, {context.device}{processes})")
    print(format_evaluation(results))
    if args.json is not None:
        payload = {"checkpoint": str(path), "epoch": state["epoch"], **results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
