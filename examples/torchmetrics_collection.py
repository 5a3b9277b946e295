"""``CollapseMetric`` (NC1-NC3 as a ``torchmetrics.Metric``) in a ``MetricCollection``
beside torchmetrics' own accuracy, fed batch by batch.

    python examples/torchmetrics_collection.py [--small]
"""

from __future__ import annotations

import torch
from _common import digits_loaders, parse_args
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

import neuralcollapse as nc
from neuralcollapse.integrations.torchmetrics import CollapseMetric


def main() -> None:
    args = parse_args(__doc__)
    torch.manual_seed(0)
    train_loader, test_loader, _ = digits_loaders()
    backbone = nc.models.build("small_cnn", seed=0)
    head = nc.heads.FixedFrameHead(backbone.feature_dim, nc.frames.simplex_etf(10, 16, seed=0))
    model = torch.nn.Sequential(backbone, head)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nc.losses.DotRegressionLoss()
    for _ in range(2 if args.small else 20):
        model.train()
        for x, y in train_loader:
            _, h = head(backbone(x), return_features=True)
            loss = loss_fn(h, y, head.frame)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    metrics = MetricCollection(
        {
            "collapse": CollapseMetric(10, head.dim, classifier=head),
            "acc": MulticlassAccuracy(10),  # macro average: the balanced accuracy
        }
    )
    model.eval()
    with torch.no_grad():
        for x, y in test_loader:
            logits, h = head(backbone(x), return_features=True)
            metrics.update(features=h, target=y, preds=logits)
    values = metrics.compute()
    for name in ("acc", "nc1", "nc2_etf_distance_means", "nc3_zhu"):
        print(f"{name:24s} {float(values[name]):.4g}")


if __name__ == "__main__":
    main()
