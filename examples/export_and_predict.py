"""Train the default job, export it (weights + config + preprocessing), reload it and
predict raw test images: the predictions reproduce the run's own test accuracy.

    python examples/export_and_predict.py [--small] [--out DIR]
"""

from __future__ import annotations

import json

import torch
from _common import parse_args

import neuralcollapse as nc
from neuralcollapse.train import Trainer, load_config


def main() -> None:
    args = parse_args(__doc__)
    epochs = 3 if args.small else 30
    overrides = [f"train.epochs={epochs}", "log.tensorboard=false", "log.report=false"]
    run_dir = args.out / "export_run"
    trainer = Trainer(load_config(None, overrides), run_dir)  # the digits default job
    try:
        trainer.fit()
    finally:
        trainer.close()

    # Also: neuralcollapse export RUN_DIR --out DIR
    nc.export.save_pretrained(run_dir, args.out / "exported", checkpoint="last")
    model, preprocess = nc.load_pretrained(args.out / "exported", with_preprocess=True)

    # Raw images as the data set stores them ([0, 1] floats for the digits): no manual
    # normalisation, preprocess applies the trainer's.
    test = nc.data.load_digits(seed=0).test
    with torch.no_grad():
        predicted = model(preprocess(test.images)).argmax(dim=1)
    accuracy = (predicted == test.labels).float().mean().item()
    summary = json.loads((run_dir / "summary.json").read_text())
    print(f"exported model, raw test images: top-1 {accuracy:.4f}")
    print(f"the run's own test top-1:         {summary['final']['top1']:.4f}")
    print(f"class names: {', '.join(preprocess.class_names)}")


if __name__ == "__main__":
    main()
