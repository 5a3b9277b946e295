"""The optional integrations with the real packages, and the README's trainer examples.

* ``neuralcollapse.integrations.torchmetrics.CollapseMetric`` equals CollapseStats on the
  same batches: alone, after ``merge_state`` of two metrics, inside a MetricCollection
  and synchronised by torchmetrics over two gloo processes;
* ``neuralcollapse.integrations.lightning.NeuralCollapseCallback`` logs NC1-NC4 and
  shot-group accuracy through a CSVLogger in a 2-epoch CPU run;
* every Python block of README.md's "Use it in your own trainer" section runs as written.

Tests that need a package skip, naming the extra, when it is not installed.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from neuralcollapse.data import shot_groups
from neuralcollapse.frames import simplex_etf
from neuralcollapse.heads import FixedFrameHead
from neuralcollapse.metrics import AccuracyCounter, CollapseStats, collapse_report
from neuralcollapse.metrics.collect import collect_evaluation

ROOT = Path(__file__).resolve().parents[1]
K, D = 5, 7


def _needs(module: str, extra: str):
    return pytest.importorskip(
        module, reason=f"{module} is not installed: pip install 'neuralcollapse[{extra}]'"
    )


def _features(n: int = 300, seed: int = 0, offset: float = 50.0):
    """Separated classes with a common offset (what the re-centred sums are for)."""
    gen = torch.Generator().manual_seed(seed)
    means = 3.0 * torch.randn(K, D, generator=gen, dtype=torch.float64) + offset
    y = torch.randint(0, K, (n,), generator=gen)
    h = means[y] + torch.randn(n, D, generator=gen, dtype=torch.float64)
    w = torch.randn(K, D, generator=gen, dtype=torch.float64)
    return h, y, w


def _stats(h, y, batch: int = 32) -> CollapseStats:
    stats = CollapseStats(K, D)
    for i in range(0, len(y), batch):
        stats.update(h[i : i + batch], y[i : i + batch])
    return stats


# NC4 needs a second pass, which a streaming metric does not make.
SECOND_PASS = {"nc4_ncc_mismatch", "ncc_accuracy", "classifier_accuracy"}


def _assert_values_match(values: dict, report, rel: float) -> None:
    floats = {
        k: v
        for k, v in dataclasses.asdict(report).items()
        if isinstance(v, float) and k not in SECOND_PASS
    }
    assert set(values) == set(floats)
    for name, expected in floats.items():
        assert float(values[name]) == pytest.approx(expected, rel=rel, abs=1e-12), name


# ------------------------------------------------------------------------ torchmetrics
def test_collapse_metric_equals_collapse_stats_on_the_same_batches():
    _needs("torchmetrics", "torchmetrics")
    from neuralcollapse.integrations.torchmetrics import CollapseMetric

    h, y, w = _features()
    metric = CollapseMetric(K, D, classifier=w)
    for i in range(0, len(y), 32):
        metric.update(h[i : i + 32], y[i : i + 32])
    expected = _stats(h, y).compute(w)
    # The same update sequence: the packed state round-trips exactly.
    assert metric.report() == expected
    _assert_values_match(metric.compute(), expected, rel=0)
    assert metric.compute()["nc3_zhu"].dtype == torch.float64
    metric.reset()
    assert metric.stats().num_samples == 0
    # Calling the metric (torchmetrics' forward) returns that batch's values and adds it.
    batch_values = metric(h[:100], y[:100])
    _assert_values_match(batch_values, _stats(h[:100], y[:100]).compute(w), rel=1e-12)
    metric.update(h[100:], y[100:])
    _assert_values_match(metric.compute(), expected, rel=1e-9)


def test_merged_collapse_metrics_equal_one_collapse_stats_of_all_data():
    _needs("torchmetrics", "torchmetrics")
    from neuralcollapse.integrations.torchmetrics import CollapseMetric

    h, y, w = _features()
    first, second = CollapseMetric(K, D, classifier=w), CollapseMetric(K, D, classifier=w)
    for i in range(0, 150, 25):
        first.update(h[i : i + 25], y[i : i + 25])
    for i in range(150, 300, 50):
        second.update(h[i : i + 50], y[i : i + 50])
    first.merge_state(second)
    expected = _stats(h, y).compute(w)
    _assert_values_match(first.compute(), expected, rel=1e-9)
    assert first.stats().class_counts.tolist() == torch.bincount(y, minlength=K).tolist()


def test_collapse_metric_in_a_metric_collection_with_a_classifier_module():
    torchmetrics = _needs("torchmetrics", "torchmetrics")
    from torchmetrics.classification import MulticlassAccuracy

    from neuralcollapse.integrations.torchmetrics import CollapseMetric

    h, y, _ = _features()
    h = h.float()
    head = nn.Linear(D, K)
    collection = torchmetrics.MetricCollection(
        {"collapse": CollapseMetric(K, D, classifier=head), "acc": MulticlassAccuracy(K)}
    )
    accuracy = AccuracyCounter(K)
    for i in range(0, len(y), 60):
        logits = head(h[i : i + 60]).detach()
        collection.update(features=h[i : i + 60], target=y[i : i + 60], preds=logits)
        accuracy.update(logits, y[i : i + 60])
    values = collection.compute()
    report = collapse_report(h, y, classifier=head.weight.detach(), bias=head.bias.detach())
    acc = values.pop("acc")
    # float32 features, batched versus all at once (CollapseStats' float32 bound: 1e-6).
    _assert_values_match(values, report, rel=1e-6)
    # MulticlassAccuracy's default is macro: the balanced accuracy.
    assert float(acc) == pytest.approx(accuracy.compute()["balanced"], rel=1e-6)


def test_collapse_metric_compute_before_any_update_warns_and_gives_nan():
    _needs("torchmetrics", "torchmetrics")
    from neuralcollapse.integrations.torchmetrics import CollapseMetric

    _, _, w = _features()
    for classifier in (None, w):
        metric = CollapseMetric(K, D, classifier=classifier)
        with pytest.warns(UserWarning, match="called before the ``update``"):
            values = metric.compute()
        h, y, _ = _features(n=60)
        expected = _stats(h, y).compute(classifier)
        floats = {
            k for k, v in dataclasses.asdict(expected).items() if isinstance(v, float)
        } - SECOND_PASS
        assert set(values) == floats
        assert all(math.isnan(float(v)) for v in values.values())


def test_collapse_metric_update_does_not_repack_its_state(monkeypatch):
    _needs("torchmetrics", "torchmetrics")
    from neuralcollapse.integrations import torchmetrics as bridge

    packs = []
    original = bridge._Layout.pack
    monkeypatch.setattr(
        bridge._Layout, "pack", lambda self, stats: packs.append(1) or original(self, stats)
    )
    h, y, w = _features()
    metric = bridge.CollapseMetric(K, D, classifier=w)
    packs.clear()
    for i in range(0, len(y), 10):
        metric.update(h[i : i + 10], y[i : i + 10])
    assert packs == []  # 30 updates, no packing
    assert metric.report() == _stats(h, y, batch=10).compute(w)
    assert len(packs) == 1  # packed once, when the state was read
    state = metric.state_dict() if metric.persistent else None
    assert state is None or "stats_state" not in state or len(packs) == 1
    metric.update(h[:10], y[:10])
    copy = metric.clone()  # a deep copy packs the pending batch, or carries it live
    assert copy.stats().num_samples == metric.stats().num_samples == len(y) + 10


def test_collapse_metric_rejects_bad_arguments():
    _needs("torchmetrics", "torchmetrics")
    from neuralcollapse.integrations.torchmetrics import CollapseMetric

    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        CollapseMetric(1, D)
    with pytest.raises(ValueError, match="classifier must be a"):
        CollapseMetric(K, D, classifier="W")
    metric = CollapseMetric(K, D)
    with pytest.raises(ValueError, match=r"features must have shape \(batch, 7\)"):
        metric.update(torch.zeros(3, D + 1), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"num_classes=5, dim=8.*num_classes=5, dim=7"):
        metric.merge_state(CollapseMetric(K, D + 1))


WORLD = 2


def _metric_worker(rank: int, init_file: str, out_file: str) -> None:
    from neuralcollapse.integrations.torchmetrics import CollapseMetric

    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        h, y, w = _features()
        metric = CollapseMetric(K, D, classifier=w)
        shard = slice(rank * 150, (rank + 1) * 150)
        hs, ys = h[shard], y[shard]
        if rank == 1:
            hs, ys = hs[ys != 4], ys[ys != 4]  # ranks hold different class sets
        for i in range(0, len(ys), 40):
            metric.update(hs[i : i + 40], ys[i : i + 40])
        values = {name: float(v) for name, v in metric.compute().items()}
        values["local_samples"] = metric.stats().num_samples  # unsynced after compute
        Path(f"{out_file}.{rank}").write_text(json.dumps(values))
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo"
)
def test_torchmetrics_syncs_collapse_metric_across_two_processes(tmp_path):
    _needs("torchmetrics", "torchmetrics")
    out = tmp_path / "values"
    mp.spawn(_metric_worker, args=(str(tmp_path / "init"), str(out)), nprocs=WORLD, join=True)
    h, y, w = _features()
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[150:] = y[150:] != 4
    expected = _stats(h[keep], y[keep]).compute(w)
    for rank in range(WORLD):
        values = json.loads((tmp_path / f"values.{rank}").read_text())
        local = values.pop("local_samples")
        assert local == (150 if rank == 0 else int(keep[150:].sum()))
        _assert_values_match(values, expected, rel=1e-9)


# ------------------------------------------------------------------------- lightning
def _long_tailed_data(seed: int = 0):
    """4 classes with 130/60/25/12 training samples (many/medium/medium/few)."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor([130, 60, 25, 12])
    centres = 3.0 * torch.randn(4, 8, generator=gen)

    def split(per_class):
        y = torch.cat([torch.full((int(n),), k) for k, n in enumerate(per_class)])
        x = centres[y] + torch.randn(len(y), 8, generator=gen)
        return torch.utils.data.TensorDataset(x, y)

    train = torch.utils.data.DataLoader(
        split(counts), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    val = torch.utils.data.DataLoader(split([20, 20, 20, 20]), batch_size=32)
    return train, val, counts


def _lit_module(L):
    class Lit(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
            self.head = FixedFrameHead(16, simplex_etf(4, 6, seed=0), neck="bn_l2", scale=4.0)

        def forward(self, x):
            return self.head(self.backbone(x))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Lit()


def _trainer(L, tmp_path, callback, epochs):
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        max_epochs=epochs,
        callbacks=[callback],
        logger=CSVLogger(tmp_path / "logs"),
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
    )


def _csv_rows(trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_lightning_callback_logs_collapse_and_shot_group_accuracy(tmp_path):
    L = _needs("lightning", "lightning")
    from neuralcollapse.integrations.lightning import NeuralCollapseCallback

    torch.manual_seed(0)
    train, val, counts = _long_tailed_data()
    callback = NeuralCollapseCallback(every_n_epochs=1, train_counts=counts)
    module = _lit_module(L)
    trainer = _trainer(L, tmp_path, callback, epochs=2)
    trainer.fit(module, train, val)

    rows = [row for row in _csv_rows(trainer) if row.get("nc/nc1")]
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    wanted = ["nc/nc1", "nc/nc2_etf_distance_means", "nc/nc2_etf_distance_classifier"]
    wanted += ["nc/nc3_self_duality", "nc/nc3_zhu", "nc/nc4_ncc_mismatch"]
    wanted += ["nc/top1", "nc/balanced", "nc/many", "nc/medium", "nc/few"]
    for name in wanted:
        assert all(math.isfinite(float(row[name])) for row in rows), name

    # The last row is the final model on the validation data, measured independently:
    # the head's frame-space features and its effective classifier scale * frame.
    x, y = val.dataset.tensors
    module.eval()
    with torch.no_grad():
        h = module.head.features(module.backbone(x))
        predictions = module(x).argmax(1)
    expected = collapse_report(h, y, classifier=module.head.weight)
    last = rows[-1]
    assert float(last["nc/nc1"]) == pytest.approx(expected.nc1, rel=1e-5)
    assert float(last["nc/nc3_zhu"]) == pytest.approx(expected.nc3_zhu, rel=1e-5)
    per_class = [float((predictions[y == k] == k).float().mean()) for k in range(4)]
    assert float(last["nc/many"]) == pytest.approx(per_class[0], abs=1e-6)
    assert float(last["nc/medium"]) == pytest.approx((per_class[1] + per_class[2]) / 2, abs=1e-6)
    assert float(last["nc/few"]) == pytest.approx(per_class[3], abs=1e-6)
    assert callback.last_epoch == 1 and callback.last.report.dim == 6


def test_lightning_callback_every_n_epochs_and_a_named_layer(tmp_path):
    L = _needs("lightning", "lightning")
    from neuralcollapse.integrations.lightning import NeuralCollapseCallback

    torch.manual_seed(0)
    train, val, _ = _long_tailed_data()
    callback = NeuralCollapseCallback(every_n_epochs=2, layer="head", prefix="val_nc_", ncc=False)
    trainer = _trainer(L, tmp_path, callback, epochs=3)
    trainer.fit(_lit_module(L), train, val)
    rows = [row for row in _csv_rows(trainer) if row.get("val_nc_nc1")]
    assert [int(row["epoch"]) for row in rows] == [1]
    assert "val_nc_nc4_ncc_mismatch" not in rows[0] or not rows[0]["val_nc_nc4_ncc_mismatch"]


def test_lightning_callback_measures_the_training_loader_on_request(tmp_path):
    L = _needs("lightning", "lightning")
    from neuralcollapse.integrations.lightning import NeuralCollapseCallback

    torch.manual_seed(0)
    train, val, counts = _long_tailed_data()
    plain = torch.utils.data.DataLoader(train.dataset, batch_size=64)  # no shuffling
    callback = NeuralCollapseCallback(
        train_counts=counts, splits=("val", "train"), train_eval_loader=plain
    )
    module = _lit_module(L)
    trainer = _trainer(L, tmp_path, callback, epochs=2)
    trainer.fit(module, train, val)
    rows = [row for row in _csv_rows(trainer) if row.get("nc/train/nc1")]
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert any(row.get("nc/nc1") for row in _csv_rows(trainer))  # validation still logged
    x, y = train.dataset.tensors
    module.eval()
    with torch.no_grad():
        h = module.head.features(module.backbone(x))
    expected = collapse_report(h, y, classifier=module.head.weight)
    assert float(rows[-1]["nc/train/nc1"]) == pytest.approx(expected.nc1, rel=1e-5)
    assert callback.last_train_epoch == 1 and callback.last_train.report.num_samples == len(y)
    with pytest.raises(ValueError, match="splits must be a non-empty list of 'val' and 'train'"):
        NeuralCollapseCallback(splits=("test",))


def test_lightning_callback_asks_for_a_layer_when_it_finds_no_head():
    _needs("lightning", "lightning")
    from neuralcollapse.integrations.lightning import NeuralCollapseCallback

    model = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"no FixedFrameHead or LearnableHead; pass layer="):
        NeuralCollapseCallback().measure(model, [(torch.zeros(4, 8), torch.arange(4))])
    with pytest.raises(ValueError, match="every_n_epochs must be an integer >= 1"):
        NeuralCollapseCallback(every_n_epochs=0)


def test_callback_measure_equals_collect_evaluation():
    _needs("lightning", "lightning")
    from neuralcollapse.integrations.lightning import NeuralCollapseCallback

    torch.manual_seed(0)
    _, val, counts = _long_tailed_data()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), FixedFrameHead(16, simplex_etf(4, 6)))
    callback = NeuralCollapseCallback(train_counts=counts)
    got = callback.measure(model, val)
    expected = collect_evaluation(
        model, val, layer="2", groups=shot_groups(counts), train_counts=counts
    )
    assert got.report == expected.report
    assert got.metrics["few"] == expected.metrics["few"]
    values = callback.values(got)
    assert values["nc/nc1"] == expected.report.nc1
    assert "nc/num_samples" not in values and "nc/per_class" not in values


# --------------------------------------------------------------------- README examples
SECTION = "## Use it in your own trainer"


def readme_blocks(text: str) -> list[str]:
    """The Python code blocks of the README section SECTION, in order."""
    start = text.find(SECTION)
    assert start >= 0, f"README.md has no {SECTION!r} section"
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else len(text)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def example_namespace(tmp_path, monkeypatch):
    """What the README examples take as given: a backbone, loaders, counts."""
    monkeypatch.chdir(tmp_path)  # the Lightning example writes logs/ here
    torch.manual_seed(0)
    train_loader, val_loader, train_counts = _long_tailed_data()
    return {
        "backbone": nn.Sequential(nn.Linear(8, 32), nn.ReLU()),
        "feature_dim": 32,
        "num_classes": 4,
        "train_loader": train_loader,
        "val_loader": val_loader,
        "train_counts": train_counts,
        "epochs": 2,
    }


def _block(blocks: list[str], marker: str) -> str:
    chosen = [block for block in blocks if marker in block]
    assert len(chosen) == 1, f"expected one README block with {marker!r}, found {len(chosen)}"
    return chosen[0]


def test_readme_has_the_three_trainer_examples():
    blocks = readme_blocks((ROOT / "README.md").read_text())
    for marker in ("for epoch in range(epochs)", "NeuralCollapseCallback", "CollapseMetric"):
        _block(blocks, marker)


def test_readme_plain_loop_example_runs(example_namespace):
    code = _block(readme_blocks((ROOT / "README.md").read_text()), "for epoch in range(epochs)")
    exec(compile(code, "README.md:plain-loop", "exec"), example_namespace)
    report, model = example_namespace["report"], example_namespace["model"]
    assert report.dim == model.fc.dim == 64 and report.nc3_zhu is not None
    acc = example_namespace["acc"]
    assert {"top1", "balanced", "many", "medium", "few"} <= set(acc)


def test_readme_lightning_example_runs(example_namespace):
    _needs("lightning", "lightning")
    code = _block(readme_blocks((ROOT / "README.md").read_text()), "NeuralCollapseCallback")
    exec(compile(code, "README.md:lightning", "exec"), example_namespace)
    rows = [row for row in _csv_rows(example_namespace["trainer"]) if row.get("nc/nc1")]
    assert len(rows) == example_namespace["epochs"]
    assert all(math.isfinite(float(row["nc/nc4_ncc_mismatch"])) for row in rows)


def test_readme_torchmetrics_example_runs(example_namespace):
    _needs("torchmetrics", "torchmetrics")
    code = _block(readme_blocks((ROOT / "README.md").read_text()), "CollapseMetric")
    exec(compile(code, "README.md:torchmetrics", "exec"), example_namespace)
    values, head = example_namespace["values"], example_namespace["head"]
    backbone, val_loader = example_namespace["backbone"], example_namespace["val_loader"]
    x, y = val_loader.dataset.tensors
    with torch.no_grad():
        h = head.eval().features(backbone.eval()(x))
    expected = collapse_report(h, y, classifier=head.weight)
    # Batched (32) versus all at once: float64 sums about other shifts.
    assert float(values["nc1"]) == pytest.approx(expected.nc1, rel=1e-6)
    assert float(values["nc3_zhu"]) == pytest.approx(expected.nc3_zhu, rel=1e-6)
    assert "acc" in values
