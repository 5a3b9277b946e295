"""A Lightning module with a fixed-frame head, and ``NeuralCollapseCallback`` logging NC1-NC4
and shot-group accuracy of the validation and the training data to a CSV logger.

    python examples/lightning_callback.py [--small] [--out DIR]
"""

from __future__ import annotations

import lightning as L
import torch
from _common import digits_loaders, parse_args
from lightning.pytorch.loggers import CSVLogger

import neuralcollapse as nc
from neuralcollapse.integrations.lightning import NeuralCollapseCallback


class LitClassifier(L.LightningModule):
    def __init__(self, num_classes: int = 10, dim: int = 16) -> None:
        super().__init__()
        self.backbone = nc.models.build("small_cnn", seed=0)
        frame = nc.frames.simplex_etf(num_classes, dim, seed=0)
        self.head = nc.heads.FixedFrameHead(self.backbone.feature_dim, frame, neck="bn_l2")
        self.loss = nc.losses.DotRegressionLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        _, h = self.head(self.backbone(x), return_features=True)
        loss = self.loss(h, y, self.head.frame)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(dim=1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(0)
    train_loader, test_loader, counts = digits_loaders()
    # The training data measured without shuffling (the geometry, not the batch order).
    train_eval = torch.utils.data.DataLoader(train_loader.dataset, batch_size=256)
    callback = NeuralCollapseCallback(
        every_n_epochs=1, train_counts=counts, splits=("val", "train"), train_eval_loader=train_eval
    )
    trainer = L.Trainer(
        max_epochs=2 if args.small else 30,
        callbacks=[callback],
        logger=CSVLogger(args.out / "lightning"),
        accelerator="cpu",
        enable_progress_bar=not args.small,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )
    trainer.fit(LitClassifier(), train_loader, test_loader)
    report = callback.last.report
    print(f"validation NC1 {report.nc1:.3g}, training NC1 {callback.last_train.report.nc1:.3g}")
    print(f"metrics logged to {trainer.logger.log_dir}/metrics.csv")


if __name__ == "__main__":
    main()
