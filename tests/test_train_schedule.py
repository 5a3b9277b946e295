"""What a run measures and when (eval.every, eval.collapse_every, the training subsample),
the validation split and the best epoch chosen on it, the CPU threads of a run and the
background writes of its run directory (CPU, seconds)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuralcollapse._internal.threads import torch_threads
from neuralcollapse.data import LabeledImages
from neuralcollapse.errors import RunFailed
from neuralcollapse.train import Trainer, load_checkpoint, load_config
from neuralcollapse.train import checkpoint as checkpoint_module
from neuralcollapse.train.build import SMALL_MODEL_MACS, forward_macs, run_threads
from neuralcollapse.train.checkpoint import BackgroundWriter, snapshot
from neuralcollapse.train.config import ConfigError, best_split
from neuralcollapse.train.data import (
    load_training_data,
    read_index_list,
    subsample_counts,
    validation_counts,
)
from neuralcollapse.train.evaluation import eval_plan, evaluate_splits
from neuralcollapse.train.recipes import resolve_config_path

DEFAULT = resolve_config_path(None)
FAST = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "train.batch_size=64",
    "log.tensorboard=false",
    "log.report=false",
]
# a 4-class Gaussian mixture: 40 training samples per class before any subset, no
# validation split unless a test asks for one
GAUSS = [
    "data.name=gaussian",
    "data.val_fraction=0",
    "data.num_classes=4",
    "data.dim=6",
    "data.samples_per_class=40",
    "model.name=mlp",
    "model.options={hidden: [16], feature_dim: 8}",
    "train.batch_size=32",
    "log.tensorboard=false",
    "log.report=false",
]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def fit(config, run_dir: Path, **kwargs) -> tuple[Trainer, dict]:
    trainer = Trainer(config, run_dir, **kwargs)
    try:
        return trainer, trainer.fit()
    finally:
        trainer.close()


def rows(images: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(row) for row in images.flatten(1).tolist()}


# --------------------------------------------------------------------------- the schedule


def test_eval_plan_follows_every_collapse_every_and_the_last_epoch():
    config = load_config(None, ["eval.every=3", "eval.collapse_every=4", "train.epochs=10"])
    plans = {e: eval_plan(config, e, last=e == 10) for e in range(1, 11)}
    evaluated = {e: (p.collapse, p.full) for e, p in plans.items() if p is not None}
    assert evaluated == {
        3: (False, False),
        4: (True, False),
        6: (False, False),
        8: (True, False),
        9: (False, False),
        10: (True, True),
    }
    defaults = load_config(None, [])
    assert (defaults.eval.every, defaults.eval.collapse_every) == (5, 10)
    assert defaults.eval.train_subsample == 10000 and defaults.train.num_threads == "auto"


def test_records_say_what_each_epoch_measured(tmp_path):
    schedule = ["eval.every=2", "eval.collapse_every=3", "eval.train_subsample=50"]
    config = load_config(DEFAULT, [*FAST, "train.epochs=5", "data.val_fraction=0", *schedule])
    trainer, summary = fit(config, tmp_path / "run")
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]  # one record per epoch, always
    assert "test" not in records[0] and "measured" not in records[0]
    measured = {r["epoch"]: r["measured"] for r in records if "measured" in r}
    accuracy_only = {"splits": ["test"], "collapse": False, "train_samples": None}
    assert measured == {
        2: {**accuracy_only, "train_size": 503},
        3: {"splits": ["train", "test"], "collapse": True, "train_samples": 50, "train_size": 503},
        4: {**accuracy_only, "train_size": 503},
        5: {"splits": ["train", "test"], "collapse": True, "train_samples": 503, "train_size": 503},
    }
    for epoch in (2, 4):  # accuracy only: no training split, no collapse metric
        record = records[epoch - 1]
        assert "train" not in record and record["test"]["collapse"] == {}
        assert {"top1", "balanced", "many", "medium", "few", "per_class"} <= set(record["test"])
    assert records[2]["train"]["collapse"]["num_samples"] == 50
    assert summary["evaluation"] == {
        "every": 2,
        "collapse_every": 3,
        "train_subsample": 50,
        "final": measured[5],
    }
    # the final numbers are the whole split's: the same as evaluating the model afresh
    # (on the run's threads, so that sums round the same way)
    with torch_threads(summary["num_threads"]):
        again = evaluate_splits(
            trainer.model, trainer.loaders, trainer.data, config, torch.device("cpu")
        )
    assert summary["final"]["train"]["collapse"] == again["train"].metrics["collapse"]
    assert summary["final"]["top1"] == again["test"].metrics["top1"]


def test_accuracy_only_pass_matches_a_hand_count(tmp_path):
    config = load_config(DEFAULT, [*FAST, "train.epochs=1"])
    trainer, _ = fit(config, tmp_path / "run")
    model = trainer.model.eval()
    logits, labels = [], []
    with torch.no_grad():
        for x, y in trainer.loaders.test:
            logits.append(model(x).double())
            labels.append(y)
    hits = (torch.cat(logits).argmax(1) == torch.cat(labels)).double()
    y = torch.cat(labels)
    per_class = [float(hits[y == k].mean()) for k in range(10)]
    result = evaluate_splits(
        trainer.model,
        trainer.loaders,
        trainer.data,
        config,
        torch.device("cpu"),
        splits=["test"],
        collapse=False,
    )["test"].metrics
    assert result["collapse"] == {}  # accuracy alone: no feature statistics
    del result["collapse"]
    assert result["top1"] == pytest.approx(float(hits.mean()), rel=1e-12)
    assert result["per_class"] == pytest.approx(per_class, rel=1e-12)
    assert result["balanced"] == pytest.approx(sum(per_class) / 10, rel=1e-12)
    full = evaluate_splits(
        trainer.model, trainer.loaders, trainer.data, config, torch.device("cpu"), splits=["test"]
    )["test"].metrics
    assert {k: full[k] for k in result} == result  # one home for the numbers


@pytest.mark.parametrize(
    ("counts", "size"),
    [([124, 75, 45, 27, 16, 12, 12, 12, 12, 12], 100), ([5, 0, 3, 1000], 20), ([3, 3, 3], 4)],
)
def test_subsample_counts_are_stratified_and_exact(counts, size):
    counts = torch.tensor(counts)
    got = subsample_counts(counts, size)
    present = counts > 0
    assert int(got.sum()) == size
    assert bool((got[present] >= 1).all()) and bool((got[~present] == 0).all())
    assert bool((got <= counts).all())
    # beyond the one each, shares of n_k - 1 within one sample (largest remainder)
    spare = (counts - 1).clamp(min=0).double()
    quota = (size - int(present.sum())) * spare / spare.sum()
    extra = (got - present.long()).double()
    assert bool(((extra - quota).abs() < 1).all())
    assert torch.equal(subsample_counts(counts, int(counts.sum()) + 5), counts)


def test_subsample_below_the_class_count_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot hold one sample of each of the 3 classes"):
        subsample_counts(torch.tensor([3, 3, 3]), 2)
    config = load_config(DEFAULT, [*FAST, "train.epochs=1", "eval.train_subsample=5"])
    with pytest.raises(ConfigError, match="eval.train_subsample=5: .* 10 classes"):
        Trainer(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- validation


def test_validation_split_is_stratified_disjoint_and_seeded():
    whole = load_training_data(load_config(None, GAUSS))
    data = load_training_data(load_config(None, [*GAUSS, "data.val_fraction=0.15"]))
    assert data.val is not None and whole.val is None
    # round(0.15 * 40) = 6 of every class held out; the rest stays for training
    assert torch.bincount(data.val.labels).tolist() == [6, 6, 6, 6]
    assert data.train_counts.tolist() == [34, 34, 34, 34]
    val, train = rows(data.val.images), rows(data.train.images)
    assert not val & train and val | train == rows(whole.train.images)
    again = load_training_data(load_config(None, [*GAUSS, "data.val_fraction=0.15"]))
    assert torch.equal(again.val.images, data.val.images)
    other = load_training_data(
        load_config(None, [*GAUSS, "data.val_fraction=0.15", "train.seed=1"])
    )
    assert rows(other.val.images) != val


def test_validation_comes_before_the_long_tailed_subset():
    overrides = [*GAUSS, "data.imbalance_ratio=4", "data.val_fraction=0.1"]
    data = load_training_data(load_config(None, overrides))
    # the validation split keeps the loaded split's (balanced) class proportions ...
    assert torch.bincount(data.val.labels).tolist() == [4, 4, 4, 4]
    # ... and the long-tailed subset is drawn from the 36 per class left; its counts are
    # the training counts (shot groups)
    assert data.train_counts.tolist() == torch.bincount(data.train.labels).tolist()
    assert data.train_counts.tolist()[0] == 36 and data.train_counts.tolist()[-1] == 9


def test_validation_counts_round_half_up():
    counts = torch.tensor([124, 75, 45, 12, 5, 1])
    expected = [int(n * 0.1 + 0.5) for n in counts.tolist()]
    assert validation_counts(counts, 0.1).tolist() == expected == [12, 8, 5, 1, 1, 0]


def test_validation_list_file(tmp_path):
    whole = load_training_data(load_config(None, GAUSS))
    listing = tmp_path / "val.txt"
    listing.write_text("# held out\n3, 17 90\n\n120  # one of class 3\n")
    data = load_training_data(load_config(None, [*GAUSS, f"data.val_list={listing}"]))
    chosen = torch.tensor([3, 17, 90, 120])
    assert torch.equal(data.val.images, whole.train.images[chosen])
    assert torch.equal(data.val.labels, whole.train.labels[chosen])
    assert len(data.train.labels) == 160 - 4
    assert read_index_list(listing, 160).tolist() == [3, 17, 90, 120]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1\n2\n160\n", r"line 3: index 160 is outside the training split's 160 samples"),
        ("1 2\n2\n", r"line 2: index 2 is listed twice \(also line 1\)"),
        ("1 x\n", r"line 1: 'x' is not a 0-based sample index"),
        ("-1\n", r"'-1' is not a 0-based sample index"),
        ("# nothing\n", "lists no index"),
        (" ".join(str(i) for i in range(40)), r"leaves class\(es\) '0' \(40 samples\) with no"),
    ],
)
def test_bad_validation_lists_are_refused_naming_the_key(tmp_path, text, match):
    listing = tmp_path / "val.txt"
    listing.write_text(text)
    with pytest.raises(ConfigError, match=f"data.val_list=.*{match}"):
        load_training_data(load_config(None, [*GAUSS, f"data.val_list={listing}"]))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["data.val_fraction=1.0"], r"data.val_fraction must be in \[0, 1\), got 1.0"),
        (["data.val_fraction=-0.1"], r"data.val_fraction must be in \[0, 1\), got -0.1"),
        (["data.val_fraction=0.2", "data.val_list=v.txt"], "set only one of them"),
        (
            ["data.val_fraction=0", "train.select_best_on=val"],
            "needs a validation split: set data.val_fraction",
        ),
        (["train.select_best_on=best"], "train.select_best_on: expected one of"),
        (["train.num_threads=0"], "train.num_threads must be >= 1"),
        (["train.num_threads=many"], "train.num_threads: expected one of 'auto' or int"),
        (["eval.collapse_every=0"], "eval.collapse_every must be >= 1"),
    ],
)
def test_bad_values_are_refused_naming_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)


def test_fractions_that_empty_a_class_or_hold_out_nothing_are_refused(tmp_path):
    tiny = [*GAUSS, "data.samples_per_class=1"]
    with pytest.raises(ConfigError, match=r"data.val_fraction=0.5 leaves class\(es\) '0'"):
        load_training_data(load_config(None, [*tiny, "data.val_fraction=0.5"]))
    with pytest.raises(ConfigError, match="data.val_fraction=0.01 holds out no sample"):
        load_training_data(load_config(None, [*GAUSS, "data.val_fraction=0.01"]))
    with pytest.raises(FileNotFoundError, match="data.val_list='missing.txt' does not exist"):
        load_training_data(load_config(None, [*GAUSS, "data.val_list=missing.txt"]))


def test_best_epoch_is_chosen_on_validation(tmp_path):
    overrides = [*GAUSS, "train.epochs=4", "eval.every=1", "data.val_fraction=0.25"]
    trainer, summary = fit(load_config(None, overrides), tmp_path / "run")
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all({"val", "test"} <= set(r) for r in records)
    assert records[0]["measured"]["splits"] == ["val", "test"]
    assert records[0]["val"]["num_samples"] == 40  # 10 of each class
    best = max(records, key=lambda r: r["val"]["top1"])  # the first of equal ones
    assert summary["best_epoch"] == best["epoch"]
    assert summary["best"]["split"] == "val" and summary["best"]["epoch"] == best["epoch"]
    assert summary["best"]["top1"] == best["test"]["top1"]  # the test numbers of that epoch
    assert summary["best"]["val"]["top1"] == best["val"]["top1"]
    assert summary["best_rule"].startswith("highest validation top1")
    assert summary["final"]["val"]["top1"] == records[-1]["val"]["top1"]
    assert summary["splits"] == {"train": 120, "val": 40, "test": 400}
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert saved["epoch"] == best["epoch"]
    # shot groups follow the training counts left after the validation split
    assert trainer.data.train_counts.tolist() == [30, 30, 30, 30]


def test_test_set_selection_only_when_asked_and_named(tmp_path):
    common = [*GAUSS, "train.epochs=3", "eval.every=1"]
    _, summary = fit(load_config(None, [*common, "train.select_best_on=test"]), tmp_path / "t")
    records = read_jsonl(tmp_path / "t" / "metrics.jsonl")
    best = max(records, key=lambda r: r["test"]["top1"])
    assert summary["best"]["split"] == "test" and summary["best_epoch"] == best["epoch"]
    assert "TEST" in summary["best_rule"] and "optimistic" in summary["best_rule"]
    config = load_config(None, [*common, "data.val_fraction=0.25", "train.select_best_on=none"])
    _, summary = fit(config, tmp_path / "n")
    assert summary["best"] is None and not (tmp_path / "n" / "checkpoints" / "best.pt").exists()
    assert summary["best_rule"] == "none asked for (train.select_best_on=none)"
    assert best_split(load_config(None, ["data.val_fraction=0.1"])) == "val"
    balanced = load_config(None, ["data.val_fraction=0.1", "train.select_best_metric=balanced"])
    assert best_split(balanced) == "val"


def test_resume_with_validation_is_exact(tmp_path):
    common = [*GAUSS, "train.epochs=4", "eval.every=1", "eval.collapse_every=2"]
    common += ["data.val_fraction=0.25", "eval.train_subsample=20"]
    config = load_config(None, common)
    _, whole = fit(config, tmp_path / "whole")
    fit(config, tmp_path / "split", stop_after=2)
    _, resumed = fit(config, tmp_path / "split", resume=True)
    strip = [
        [{k: v for k, v in r.items() if k != "elapsed_s"} for r in read_jsonl(p / "metrics.jsonl")]
        for p in (tmp_path / "whole", tmp_path / "split")
    ]
    assert strip[0] == strip[1]
    assert resumed["best"] == whole["best"] and resumed["final"] == whole["final"]


# --------------------------------------------------------------------------- threads


def test_forward_macs_counts_linear_and_conv_layers():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)
    )
    # conv: 8 x 8 positions x 4 channels x (1 x 3 x 3); linear: 256 x 10
    assert forward_macs(model, (1, 8, 8)) == 64 * 4 * 9 + 256 * 10
    grouped = nn.Conv2d(4, 8, 3, groups=2)
    assert forward_macs(grouped, (4, 5, 5)) == 9 * 8 * 2 * 9
    assert model.training  # the mode is restored


def test_auto_threads_one_for_small_models_and_torch_default_for_large():
    small = load_config(DEFAULT, [])
    device = torch.device("cpu")
    from neuralcollapse import models

    cnn = models.build("small_cnn", seed=0)
    assert forward_macs(cnn, (1, 8, 8)) * 32 < SMALL_MODEL_MACS
    assert run_threads(small, cnn, (1, 8, 8), device) == 1
    resnet = models.build("resnet32", seed=0)
    large = load_config(DEFAULT, ["train.batch_size=128"])
    assert run_threads(large, resnet, (3, 32, 32), device) is None  # 8.8e9 per batch
    fixed = load_config(DEFAULT, ["train.num_threads=3"])
    assert run_threads(fixed, resnet, (3, 32, 32), device) == 3
    assert run_threads(fixed, resnet, (3, 32, 32), torch.device("meta")) is None


def test_the_run_uses_its_threads_and_restores_the_setting(tmp_path, monkeypatch):
    config = load_config(DEFAULT, [*FAST, "train.epochs=1", "train.num_threads=1"])
    trainer = Trainer(config, tmp_path / "run")
    seen = []
    original = Trainer._train_epoch

    def spy(self, log):
        seen.append(torch.get_num_threads())
        return original(self, log)

    monkeypatch.setattr(Trainer, "_train_epoch", spy)
    before = torch.get_num_threads()
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    assert seen == [1] and torch.get_num_threads() == before
    assert summary["num_threads"] == 1


# --------------------------------------------------------------------------- writes


def test_background_writes_run_in_order_and_stop_at_the_first_failure():
    writer = BackgroundWriter()
    done: list[int] = []

    def slow(i: int) -> None:
        time.sleep(0.01 * (3 - i))
        done.append(i)

    for i in range(3):
        writer.submit(slow, i)
    writer.wait()
    assert done == [0, 1, 2]

    def fail() -> None:
        raise OSError(28, "No space left on device")

    writer.submit(fail)
    writer.submit(done.append, 99)  # after a failure nothing else is written
    with pytest.raises(OSError, match="No space left"):
        writer.wait()
    assert done == [0, 1, 2]
    writer.close()


def test_snapshot_copies_tensors_only():
    weights = torch.ones(3)
    state = {"model": {"w": weights}, "steps": [1, 2], "name": "x"}
    copy = snapshot(state)
    weights.add_(1)
    assert torch.equal(copy["model"]["w"], torch.ones(3))
    assert copy["steps"] == [1, 2] and copy["name"] == "x"


def test_a_failed_background_write_is_a_run_failure_naming_the_saved_epoch(tmp_path, monkeypatch):
    # no validation split: no best checkpoint, so the third write is epoch 3's last one
    # (interval 0: a checkpoint is written after every epoch)
    overrides = ["train.epochs=4", "data.val_fraction=0", "log.checkpoint_interval_s=0"]
    config = load_config(DEFAULT, [*FAST, *overrides])
    trainer = Trainer(config, tmp_path / "run")
    original = checkpoint_module.save_checkpoint
    calls = []

    def full_disk(state, path):
        calls.append(state["epoch"])
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        return original(state, path)

    monkeypatch.setattr("neuralcollapse.train.state.save_checkpoint", full_disk)
    with pytest.raises(RunFailed, match="No space left on device.*holds epoch 2"):
        trainer.fit()
    trainer.close()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 2
    # the records past the checkpoint are dropped on resume
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]  # nothing after the failed write
    resumed = Trainer(config, tmp_path / "run", resume=True)
    resumed.close()
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2]


def _checkpoint_writes(monkeypatch) -> list[tuple[str, int]]:
    """(file name, epoch) of every checkpoint the Trainer writes, in order."""
    original = checkpoint_module.save_checkpoint
    writes: list[tuple[str, int]] = []

    def recording(state, path):
        writes.append((Path(path).stem, state["epoch"]))
        return original(state, path)

    monkeypatch.setattr("neuralcollapse.train.state.save_checkpoint", recording)
    return writes


def test_checkpoints_are_written_at_most_once_per_interval_and_at_the_end(tmp_path, monkeypatch):
    writes = _checkpoint_writes(monkeypatch)
    config = load_config(DEFAULT, [*FAST, "train.epochs=4", "log.checkpoint_interval_s=3600"])
    trainer = Trainer(config, tmp_path / "run")
    trainer.fit()
    trainer.close()
    lasts = [epoch for name, epoch in writes if name == "last"]
    assert lasts == [1, 4]  # the first epoch's at once, then the one held at the end
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert (
        best["epoch"]
        == json.loads((tmp_path / "run" / "summary.json").read_text())["best"]["epoch"]
    )
    # every epoch is written when the interval is 0 (and the run is the same)
    writes.clear()
    config = load_config(DEFAULT, [*FAST, "train.epochs=4", "log.checkpoint_interval_s=0"])
    trainer = Trainer(config, tmp_path / "every")
    trainer.fit()
    trainer.close()
    assert [epoch for name, epoch in writes if name == "last"] == [1, 2, 3, 4]
    a = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "every" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_a_held_checkpoint_is_written_when_the_run_fails(tmp_path, monkeypatch):
    writes = _checkpoint_writes(monkeypatch)
    config = load_config(DEFAULT, [*FAST, "train.epochs=5", "log.checkpoint_interval_s=3600"])
    trainer = Trainer(config, tmp_path / "run")
    original = trainer.step.train_epoch

    def diverge_in_epoch_4(loader, epoch, progress, **kwargs):
        if epoch == 3:
            raise FloatingPointError("loss is nan at epoch 4, step 1")
        return original(loader, epoch, progress, **kwargs)

    trainer.step.train_epoch = diverge_in_epoch_4
    with pytest.raises(RunFailed, match="holds epoch 3"):
        trainer.fit()
    trainer.close()
    assert [epoch for name, epoch in writes if name == "last"] == [1, 3]
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 3


@pytest.mark.parametrize("store", ["memory", "stream"])
def test_validation_split_of_image_files_is_stored_like_the_training_split(tmp_path, store):
    from PIL import Image

    for split, per_class in (("train", 4), ("test", 1)):
        for k, name in enumerate(("ant", "bee", "cat")):
            for i in range(per_class):
                value = 60 * k + 10 * i + (5 if split == "test" else 0)
                folder = tmp_path / split / name
                folder.mkdir(parents=True, exist_ok=True)
                image = np.full((4, 4, 3), value, dtype=np.uint8)
                Image.fromarray(image).save(folder / f"{i}.png")
    overrides = [
        "data.name=image_folder",
        f"data.root={tmp_path}",
        "data.image_size=4",
        f"data.store={store}",
        "data.num_workers=0",
        "data.val_fraction=0.25",
    ]
    data = load_training_data(load_config(None, overrides))

    def values(dataset) -> list[int]:
        if isinstance(dataset, LabeledImages):
            return sorted(int(v) for v in dataset.images[:, 0, 0, 0])
        return sorted(int(dataset[i][0][0, 0, 0]) for i in range(len(dataset)))

    assert isinstance(data.val, LabeledImages) == (store == "memory")
    assert isinstance(data.train, LabeledImages) == (store == "memory")
    held, kept = values(data.val), values(data.train)
    assert len(held) == 3 and torch.bincount(data.val.labels).tolist() == [1, 1, 1]
    assert sorted(held + kept) == [60 * k + 10 * i for k in range(3) for i in range(4)]
    assert data.train_counts.tolist() == [3, 3, 3]


def test_validation_by_default_and_how_to_opt_out(tmp_path):
    default = load_config(None, [])
    assert default.data.val_fraction == 0.1 and best_split(default) == "val"
    no_val = [opt for opt in GAUSS if opt != "data.val_fraction=0"]
    data = load_training_data(load_config(None, no_val))
    assert torch.bincount(data.val.labels).tolist() == [4, 4, 4, 4]  # 10% of 40 per class
    # a list replaces the default fraction; another fraction beside a list is refused
    listing = tmp_path / "val.txt"
    listing.write_text("0 1 2\n")
    listed = load_training_data(load_config(None, [*no_val, f"data.val_list={listing}"]))
    assert len(listed.val.labels) == 3
    overrides = [*GAUSS, "train.epochs=1"]  # data.val_fraction=0: opted out
    trainer, summary = fit(load_config(None, overrides), tmp_path / "run")
    assert trainer.data.val is None and summary["best"] is None
    assert summary["validation"] == {
        "samples": 0,
        "source": "data.val_fraction=0",
        "rule": "none: no validation split, so no epoch is chosen as best",
    }
