"""A plain PyTorch loop: a fixed simplex-ETF head, the dot-regression loss, and the
collapse metrics (``CollapseStats``) and shot-group accuracy measured every epoch.

    python examples/plain_loop.py [--small]
"""

from __future__ import annotations

import torch
from _common import digits_loaders, parse_args

import neuralcollapse as nc


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(0)
    train_loader, test_loader, counts = digits_loaders()
    epochs = 3 if args.small else 30
    backbone = nc.models.build("small_cnn", seed=0)  # (B, 1, 8, 8) -> (B, 64) features
    frame = nc.frames.simplex_etf(10, 16, seed=0)  # (K, d): one row per class
    head = nc.heads.FixedFrameHead(backbone.feature_dim, frame, neck="bn_l2")
    model = torch.nn.Sequential(backbone, head)
    loss_fn = nc.losses.DotRegressionLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    groups = nc.data.shot_groups(counts)

    for epoch in range(1, epochs + 1):
        model.train()
        for x, y in train_loader:
            logits, h = head(backbone(x), return_features=True)
            loss = loss_fn(h, y, head.frame)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        model.eval()
        accuracy = nc.metrics.AccuracyCounter(10, groups=groups)
        stats = nc.metrics.CollapseStats(10, head.dim)
        with torch.no_grad():
            for x, y in test_loader:
                logits, h = head(backbone(x), return_features=True)
                accuracy.update(logits, y)
                stats.update(h, y)
        acc = accuracy.compute()
        report = stats.compute(head.weight)
        print(
            f"epoch {epoch}: top-1 {acc['top1']:.3f}  few-shot {acc['few']:.3f}  "
            f"NC1 {report.nc1:.3g}  NC3 {report.nc3_zhu:.3g}"
        )


if __name__ == "__main__":
    main()
