"""Two-stage methods (cRT, LWS, tau-norm), deferred re-weighting and post-hoc logit
adjustment, in a plain loop and through the trainer, on tiny models (CPU, seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neuralcollapse.cli import main
from neuralcollapse.heads import LearnableHead
from neuralcollapse.losses import class_balanced_weights, log_prior
from neuralcollapse.models import build
from neuralcollapse.train import Trainer, load_checkpoint, load_config
from neuralcollapse.train.build import Classifier
from neuralcollapse.train.config import ConfigError
from neuralcollapse.train.stage2 import (
    ClassifierRetraining,
    LearnableWeightScaling,
    tau_normalize_,
)

TINY = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "train.batch_size=64",
    "train.epochs=3",
    "data.imbalance_ratio=100",
    "head.kind=learnable",
    "loss.name=ce",
    "log.tensorboard=false",
    "log.report=false",
]


def tiny_model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    backbone = build("mlp", seed=seed, in_features=8, hidden=[12], feature_dim=6)
    return Classifier(backbone, LearnableHead(6, 4))


def tiny_batches(n: int = 5, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 8, generator=generator), torch.randint(0, 4, (16,), generator=generator))
        for _ in range(n)
    ]


def backbone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def train(tmp_path: Path, name: str, *overrides: str, **kwargs) -> tuple[Trainer, dict]:
    trainer = Trainer(load_config(None, [*TINY, *overrides]), tmp_path / name, **kwargs)
    try:
        return trainer, trainer.fit()
    finally:
        trainer.close()


# --------------------------------------------------------------------------- plain loop


def test_tau_normalisation_rescales_rows_and_drops_the_bias():
    layer = nn.Linear(5, 3)
    weight = layer.weight.detach().clone()
    tau_normalize_(layer, 0.6)
    norms = weight.norm(dim=1, keepdim=True)
    torch.testing.assert_close(layer.weight.detach(), weight / norms**0.6)
    assert torch.count_nonzero(layer.bias) == 0
    unit = nn.Linear(5, 3, bias=False)
    tau_normalize_(unit, 1.0)
    torch.testing.assert_close(unit.weight.norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match="tau must be >= 0"):
        tau_normalize_(unit, -1.0)


def test_learnable_weight_scaling_folds_into_the_classifier():
    layer = nn.Linear(5, 3)
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    scaling = LearnableWeightScaling(3)
    with torch.no_grad():
        scaling.scales.copy_(torch.tensor([0.5, 2.0, 1.5]))
    h = torch.randn(7, 5)
    expected = scaling(nn.functional.linear(h, weight, bias))
    scaling.fold_(layer, weight, bias)
    torch.testing.assert_close(layer(h), expected)


@pytest.mark.parametrize("method", ["crt", "lws"])
def test_retraining_changes_the_classifier_and_not_the_backbone(method):
    model = tiny_model()
    model.train()
    for x, _ in tiny_batches(3, seed=9):  # give BatchNorm non-trivial running statistics
        model(x)
    frozen = backbone_state(model)
    classifier = model.head.classifier
    weight, bias = classifier.weight.detach().clone(), classifier.bias.detach().clone()
    retrain = ClassifierRetraining(model, method, lr=0.5, epochs=3, weight_decay=1e-4)
    losses = [retrain.train_epoch(tiny_batches())["loss"] for _ in range(3)]
    retrain.finish()
    assert_same_state(frozen, backbone_state(model))  # BN statistics included (eval mode)
    assert not torch.equal(classifier.weight.detach(), weight)
    assert all(p.requires_grad for p in model.parameters())  # flags restored
    assert losses[-1] < losses[0]
    if method == "lws":  # each row (and its bias) only rescaled, by the same factor
        ratio = classifier.weight.detach() / weight
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
        torch.testing.assert_close(classifier.bias.detach() / bias, ratio[:, 0])


@pytest.mark.parametrize("method", ["crt", "lws"])
def test_backbone_mode_train_moves_batchnorm_statistics_and_eval_does_not(method):
    states = {}
    for mode in ("eval", "train"):
        model = tiny_model()
        frozen = backbone_state(model)
        retrain = ClassifierRetraining(model, method, lr=0.1, epochs=2, backbone_mode=mode)
        for _ in range(2):
            retrain.train_epoch(tiny_batches())
            # Kang et al.'s loop: train mode every epoch (stats use the batch statistics)
            assert model.backbone.training == (mode == "train")
        retrain.finish()
        states[mode] = backbone_state(model)
        moved = [k for k in frozen if not torch.equal(frozen[k], states[mode][k])]
        if mode == "eval":
            assert moved == []
        else:  # only BatchNorm buffers move; the weights stay frozen
            assert moved and all("running_" in k or "num_batches" in k for k in moved)
    running = [k for k in states["eval"] if k.endswith("running_mean")]
    assert running and not torch.equal(states["eval"][running[0]], states["train"][running[0]])


def test_backbone_mode_is_checked():
    with pytest.raises(ValueError, match="backbone_mode must be 'eval' or 'train'"):
        ClassifierRetraining(tiny_model(), "crt", lr=0.1, epochs=1, backbone_mode="frozen")
    with pytest.raises(ConfigError, match="train.stage2_backbone_mode: expected one of"):
        load_config(None, [*TINY, "train.stage2=crt", "train.stage2_backbone_mode=on"])


def test_crt_reinitialises_from_the_seed_and_follows_a_cosine():
    a, b = tiny_model(0), tiny_model(1)
    ClassifierRetraining(a, "crt", lr=0.1, epochs=4, seed=3)
    retrain = ClassifierRetraining(b, "crt", lr=0.1, epochs=4, seed=3)
    assert torch.equal(a.head.classifier.weight, b.head.classifier.weight)
    lrs = [retrain.lr_at(e) for e in range(4)]
    np.testing.assert_allclose(lrs, [0.1 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])


def test_retraining_refuses_a_fixed_frame():
    from neuralcollapse.frames import simplex_etf
    from neuralcollapse.heads import FixedFrameHead

    backbone = build("mlp", seed=0, in_features=8, hidden=[12], feature_dim=6)
    model = Classifier(backbone, FixedFrameHead(6, simplex_etf(4, 6, seed=0)))
    with pytest.raises(ValueError, match="learnable linear head"):
        ClassifierRetraining(model, "crt", lr=0.1, epochs=1)


# --------------------------------------------------------------------------- in a run


@pytest.mark.parametrize("method", ["crt", "lws", "tau_norm"])
def test_stage2_in_a_run(tmp_path, method):
    stage1, plain = train(tmp_path, "plain")
    # every epoch evaluated, and the best chosen (on the test split) over both stages
    chosen = ["eval.every=1", "train.select_best_on=test"]
    trainer, summary = train(
        tmp_path, method, f"train.stage2={method}", "train.stage2_epochs=2", *chosen
    )
    # stage 1 is the same run: the backbone ends where the plain run's ended
    assert_same_state(backbone_state(stage1.model), backbone_state(trainer.model))
    assert not torch.equal(stage1.model.head.weight, trainer.model.head.weight)
    extra = 1 if method == "tau_norm" else 2
    records = read_jsonl(tmp_path / method / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, 4 + extra))
    assert [r.get("stage") for r in records] == [None] * 3 + [method] * extra
    assert "test" in records[-1]
    stages = summary["stages"]
    assert stages == {
        "stage1_epochs": 3,
        "stage2": method,
        "stage2_epochs": extra,
        "final_from": method,
        "best_from": "stage1" if summary["best_epoch"] <= 3 else method,
    }
    assert summary["epochs"] == 3 + extra
    assert summary["final"]["top1"] == records[-1]["test"]["top1"]
    best = max(records, key=lambda r: r["test"]["top1"])  # the first of equal ones
    assert summary["best_epoch"] == best["epoch"] and summary["best"]["split"] == "test"
    # the last epoch of each stage gets the collapse metrics (eval.collapse_every=10)
    stage2_collapse = [True] if method == "tau_norm" else [False, True]
    assert [r["measured"]["collapse"] for r in records] == [False, False, True, *stage2_collapse]
    assert plain["stages"]["final_from"] == "stage1" and plain["stages"]["stage2"] == "none"
    state = load_checkpoint(tmp_path / method / "checkpoints" / "last.pt")
    assert state["stage2_done"] and state["epoch"] == 3 + extra


def test_backbone_mode_in_a_run(tmp_path):
    crt = ["train.stage2=crt", "train.stage2_epochs=2"]
    eval_mode, _ = train(tmp_path, "eval", *crt)
    train_mode, summary = train(tmp_path, "train", *crt, "train.stage2_backbone_mode=train")
    stage1, _ = train(tmp_path, "plain")
    eval_state, train_state = backbone_state(eval_mode.model), backbone_state(train_mode.model)
    assert_same_state(backbone_state(stage1.model), eval_state)  # eval: nothing moved
    moved = [k for k in eval_state if not torch.equal(eval_state[k], train_state[k])]
    assert moved and all("running_" in k or "num_batches" in k for k in moved)
    assert summary["config"]["train"]["stage2_backbone_mode"] == "train"


def test_the_final_checkpoint_holds_the_stage2_model(tmp_path, capsys):
    _, summary = train(tmp_path, "crt", "train.stage2=crt", "train.stage2_epochs=2")
    out = tmp_path / "eval.json"
    args = ["eval", str(tmp_path / "crt"), "--checkpoint", "last", "--json", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert json.loads(out.read_text())["test"]["top1"] == summary["final"]["top1"]


def test_resume_after_stage2_and_after_an_interrupted_stage2(tmp_path):
    _, whole = train(tmp_path, "whole", "train.stage2=lws", "train.stage2_epochs=2")
    # stop after the first stage, then resume: stage 2 runs on resume, identically
    config = load_config(None, [*TINY, "train.stage2=lws", "train.stage2_epochs=2"])
    first = Trainer(config, tmp_path / "split", stop_after=3)
    first.fit()
    first.close()
    assert [r.get("stage") for r in read_jsonl(tmp_path / "split" / "metrics.jsonl")] == [None] * 3
    again = Trainer(config, tmp_path / "split", resume=True)
    resumed = again.fit()
    again.close()
    assert resumed["final"]["top1"] == whole["final"]["top1"]
    strip = [
        {k: v for k, v in r.items() if k != "elapsed_s"}
        for r in read_jsonl(tmp_path / "split" / "metrics.jsonl")
    ]
    assert strip == [
        {k: v for k, v in r.items() if k != "elapsed_s"}
        for r in read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    ]
    # a finished run resumes to the same summary, and cannot grow its first stage
    done = Trainer(config, tmp_path / "whole", resume=True)
    assert done.fit()["final"] == whole["final"]
    done.close()
    longer = load_config(
        None, [*TINY, "train.stage2=lws", "train.stage2_epochs=2", "train.epochs=5"]
    )
    with pytest.raises(ConfigError, match="stage 2 .* has finished"):
        Trainer(longer, tmp_path / "whole", resume=True)


def test_stage2_config_errors_name_the_keys():
    with pytest.raises(ConfigError, match="train.stage2='crt' re-balances a learnable"):
        load_config(None, ["train.stage2=crt"])  # the default fixed ETF
    with pytest.raises(ConfigError, match="head.cosine=true"):
        load_config(None, [*TINY, "head.cosine=true", "head.bias=false", "train.stage2=lws"])
    with pytest.raises(ConfigError, match="set head.bias=false"):
        load_config(None, [*TINY, "head.cosine=true"])
    with pytest.raises(ConfigError, match="loss.class_weight / loss.drw_epoch weight"):
        load_config(None, [*TINY, "loss.name=balanced_softmax", "loss.drw_epoch=2"])
    with pytest.raises(ConfigError, match="set only one of them"):
        load_config(None, [*TINY, "loss.class_weight=class_balanced", "loss.drw_epoch=2"])
    with pytest.raises(ConfigError, match="train.stage2: expected one of"):
        load_config(None, [*TINY, "train.stage2=decouple"])


# --------------------------------------------------------------------------- DRW, post hoc


def test_deferred_reweighting_switches_at_its_epoch_in_a_run(tmp_path):
    ldam = ["head.cosine=true", "head.bias=false", "loss.name=ldam", "train.epochs=3"]
    plain, _ = train(tmp_path, "plain", *ldam)
    deferred, _ = train(tmp_path, "drw", *ldam, "loss.drw_epoch=2", "loss.cb_beta=0.999")
    a = read_jsonl(tmp_path / "plain" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "drw" / "metrics.jsonl")
    assert a[0]["train_loss"] == b[0]["train_loss"] and a[1]["train_loss"] == b[1]["train_loss"]
    assert a[2]["train_loss"] != b[2]["train_loss"]  # the third epoch (index 2) is weighted
    assert plain.step.loss_fn.inner.weight is None
    expected = class_balanced_weights(deferred.data.train_counts, 0.999, dtype=torch.float64)
    torch.testing.assert_close(deferred.step.loss_fn.inner.weight, expected)


def test_posthoc_logit_adjustment_changes_only_the_evaluation(tmp_path):
    trainer, plain = train(tmp_path, "plain")
    _, adjusted = train(tmp_path, "adjusted", "eval.logit_adjust_tau=1.0")
    a = read_jsonl(tmp_path / "plain" / "metrics.jsonl")
    b = read_jsonl(tmp_path / "adjusted" / "metrics.jsonl")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    # recompute the adjusted test accuracy by hand from the trained model
    model, prior = trainer.model.eval(), log_prior(trainer.data.train_counts).float()
    hits = total = 0
    with torch.no_grad():
        for x, y in trainer.loaders.test:
            hits += int(((model(x) - prior).argmax(1) == y).sum())
            total += y.numel()
    assert adjusted["final"]["top1"] == pytest.approx(hits / total)
    assert adjusted["final"]["top1"] != plain["final"]["top1"]


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss.name=logit_adjusted", "loss.tau=1.5"],
        ["loss.name=balanced_softmax", "train.mixup_alpha=1.0"],
        ["loss.name=focal", "loss.focal_gamma=1", "loss.class_weight=class_balanced"],
        ["loss.name=ce", "loss.drw_epoch=1", "train.mixup_alpha=0.5"],
        ["head.kind=etf", "head.neck=bn_l2", "loss.name=logit_adjusted"],
    ],
)
def test_every_baseline_loss_trains(tmp_path, overrides):
    _, summary = train(tmp_path, "run", *overrides, "train.epochs=2")
    assert 0 <= summary["final"]["top1"] <= 1 and summary["final"]["few"] is not None


def test_the_reproduce_claim_baselines_are_valid_configs():
    from neuralcollapse.claims import CLAIMS, lt_baselines
    from neuralcollapse.train.recipes import resolve_config_path

    assert "y22-vs-lt-baselines" in CLAIMS
    baselines = dict(lt_baselines(30))
    assert len(baselines) == 7
    configs = {k: load_config(resolve_config_path("digits_lt"), v) for k, v in baselines.items()}
    assert configs["LDAM-DRW"].loss.drw_epoch == 24 and configs["LDAM-DRW"].head.cosine
    assert (
        configs["cRT"].train.stage2_epochs == 10 and configs["tau-norm"].train.stage2 == "tau_norm"
    )
    assert {c.head.kind for c in configs.values()} == {"learnable"}
