"""The trainer and its commands, end to end on the embedded digits data (CPU, seconds)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from neuralcollapse.cli import main
from neuralcollapse.data import CIFAR_ARCHIVES, dataset_traits
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.train import Trainer, load_checkpoint, load_config, save_checkpoint
from neuralcollapse.train.build import build_optimizer, lr_factor
from neuralcollapse.train.config import ConfigError, config_from_dict
from neuralcollapse.train.recipes import RECIPE_DIR, available_recipes, resolve_config_path
from neuralcollapse.train.trainer import assemble

DEFAULT = resolve_config_path(None)  # the embedded default recipe, digits_lt.yaml
# Small and fast variants of the default; the default itself runs in the CLI test.
FAST = [
    "model.name=mlp",
    "model.options={hidden: [32], feature_dim: 16}",
    "train.batch_size=64",
    "log.tensorboard=false",
    "log.report=false",
]


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


# --------------------------------------------------------------------------- config


def test_defaults_and_overrides():
    config = load_config(
        resolve_config_path(None),
        ["optim.lr=0.05", "data.imbalance_ratio=50", "schedule.milestones=[3, 4]"],
    )
    assert config.name == "digits_lt"
    assert config.optim.lr == 0.05 and config.data.imbalance_ratio == 50.0
    assert config.schedule.milestones == [3, 4]
    assert config.train.epochs == 30 and config.head.kind == "etf" and config.loss.name == "dr"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optim.lrr=0.1"], r"unknown key 'optim.lrr' \(did you mean 'lr'\?\)"),
        (["optimizer.lr=0.1"], "unknown key 'optimizer'"),
        (["optim.lr=fast"], "optim.lr: expected float, got 'fast'"),
        (["train.epochs=2.5"], "train.epochs: expected int"),
        (["optim.name=lamb"], "optim.name: expected one of 'sgd', 'adamw', got 'lamb'"),
        (["head.kind=learnable"], "loss.name='dr' needs a fixed frame"),
        (["head.kind=haframe"], "needs a class hierarchy: set data.hierarchy"),
        (["train.epochs=0"], "train.epochs must be >= 1"),
        (["data.name=cifar10"], "set data.root"),
        (["optim.lr"], "must look like section.key=value"),
        (["train.batch_size=true"], "train.batch_size: expected int, got True"),
    ],
)
def test_bad_config_values_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(resolve_config_path(None), overrides)


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a packaged recipe"):
        resolve_config_path(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of keys"):
        load_config(listing)


def test_print_config_round_trips(capsys, tmp_path):
    code, out, _ = cli(capsys, "train", "--print-config", "optim.lr=0.02")
    assert code == 0
    values = yaml.safe_load(out)
    assert values["optim"]["lr"] == 0.02 and values["name"] == "digits_lt"
    assert config_from_dict(values).optim.lr == 0.02


def test_impossible_frame_fails_before_training(tmp_path):
    config = load_config(
        None, ["head.dim=5", "data.name=gaussian", "data.num_classes=10", "model.name=mlp"]
    )
    with pytest.raises(ConfigError, match=r"head.kind='etf' with d=5 < K-1=9"):
        Trainer(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing behind


def test_amp_needs_cuda(tmp_path):
    config = load_config(DEFAULT, ["train.amp=bf16", "train.device=cpu"])
    with pytest.raises(ConfigError, match="train.amp='bf16' needs a CUDA device"):
        Trainer(config, tmp_path / "run")


# --------------------------------------------------------------------------- schedule, optim


def test_lr_schedule_shapes():
    warm = load_config(
        None,
        [
            "schedule.name=multistep",
            "schedule.warmup_epochs=2",
            "schedule.milestones=[4, 6]",
            "train.epochs=8",
        ],
    )
    factors = [lr_factor(warm, step, 10) for step in range(80)]
    assert factors[0] == pytest.approx(1 / 20) and factors[19] == pytest.approx(1.0)
    assert factors[39] == 1.0 and factors[40] == pytest.approx(0.1)
    assert factors[60] == pytest.approx(0.01)
    cosine = load_config(
        None,
        [
            "schedule.name=cosine",
            "schedule.warmup_epochs=0",
            "train.epochs=4",
            "optim.lr=0.1",
            "schedule.min_lr=0.001",
        ],
    )
    assert lr_factor(cosine, 0, 10) == pytest.approx(1.0)
    assert lr_factor(cosine, 20, 10) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(cosine, 40, 10) == pytest.approx(0.01)


def test_norm_and_bias_excluded_from_weight_decay():
    config = load_config(DEFAULT, ["optim.no_decay_norm_and_bias=true", *FAST])
    _, _, model = assemble(config, torch.device("cpu"))
    groups = build_optimizer(config, model).param_groups
    decay = [p for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    no_decay = [p for g in groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decay and no_decay
    assert all(p.ndim > 1 for p in decay) and all(p.ndim == 1 for p in no_decay)
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in decay + no_decay) == total


def test_backbone_learning_rate_scale():
    config = load_config(DEFAULT, ["optim.backbone_lr_scale=0.1", "optim.lr=0.2", *FAST])
    _, _, model = assemble(config, torch.device("cpu"))
    groups = build_optimizer(config, model).param_groups
    backbone = {id(p) for p in model.backbone.parameters()}
    for group in groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1
        assert group["lr"] == pytest.approx(0.02 if in_backbone.pop() else 0.2)


# --------------------------------------------------------------------------- end to end


def test_train_command_on_the_default_config(capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = cli(capsys, "train", "train.epochs=2", "--run-dir", run_dir)
    assert code == 0, err
    assert f"training digits_lt into {run_dir}: 10 classes" in out
    assert "many" in out and "nc1" in out and f"run directory: {run_dir}" in out
    # validation by default, said on the console; validation metrics while training, the
    # test metrics once, at the end
    assert "validation (data.val_fraction=0.1): a stratified 10% of every class" in out
    assert out.count("val top1") == 2 and "test top1" not in out
    assert out.count("test set") == 1
    assert f"report: {run_dir / 'report.html'}" in out  # written at the end of training
    files = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    assert {
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "checkpoints/last.pt",
        "geometry.npz",
        "report.html",
    } <= files
    # a validation split by default: the best epoch is chosen on it (never on the test set)
    assert "checkpoints/best.pt" in files
    assert any(name.startswith("tensorboard/events.out.tfevents") for name in files)
    assert not any(name.endswith(".tmp") for name in files)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"top1", "balanced", "many", "medium", "few", "collapse"} <= set(summary["final"])
    assert summary["final"]["collapse"]["num_classes"] == 10
    assert summary["best"]["split"] == "val" and summary["best_epoch"] in (1, 2)
    assert summary["best_rule"].startswith("highest validation top1")
    # 10% of every class of the loaded split, before the long-tailed subset
    assert summary["splits"] == {"train": 454, "val": 129, "test": 500}
    assert summary["validation"]["samples"] == 129
    assert summary["validation"]["source"] == "data.val_fraction=0.1"
    assert summary["evaluation"]["final"] == {
        "splits": ["train", "val", "test"],
        "collapse": True,
        "train_samples": 454,
        "train_size": 454,
    }
    assert summary["num_threads"] == 1  # train.num_threads=auto: the digits CNN is small
    assert summary["epochs"] == 2 and summary["seed"] == 0
    assert summary["versions"]["torch"] == torch.__version__
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert 0 <= records[-1]["test"]["top1"] <= 1
    assert records[-1]["test"]["collapse"]["nc4_ncc_mismatch"] is not None
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2


def test_eval_command_reproduces_the_final_metrics(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert cli(capsys, "train", *FAST, "train.epochs=2", "--run-dir", run_dir)[0] == 0
    out_json = tmp_path / "eval.json"
    code, out, _ = cli(
        capsys, "eval", run_dir, "--checkpoint", "last", "--split", "both", "--json", out_json
    )
    assert code == 0 and "nc1" in out
    evaluation = json.loads(out_json.read_text())
    final = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert evaluation["test"]["top1"] == final["test"]["top1"]
    assert evaluation["train"]["collapse"]["nc1"] == pytest.approx(
        final["train"]["collapse"]["nc1"], rel=1e-12
    )


def test_eval_picks_best_only_where_a_run_has_one_and_evaluates_its_validation_split(
    capsys, tmp_path
):
    plain = tmp_path / "plain"
    opt_out = ["train.epochs=1", "data.val_fraction=0"]  # no validation split, no best epoch
    assert cli(capsys, "train", *FAST, *opt_out, "--run-dir", plain)[0] == 0
    code, out, _ = cli(capsys, "eval", plain)  # default --checkpoint auto: last.pt here
    assert code == 0 and "last.pt" in out
    code, _, err = cli(capsys, "eval", plain, "--checkpoint", "best")
    assert code == 2 and "no checkpoints/best.pt" in err and "--checkpoint last" in err
    code, _, err = cli(capsys, "eval", plain, "--split", "val")
    assert code == 2 and "without a validation split" in err
    out_json = tmp_path / "all.json"
    assert cli(capsys, "eval", plain, "--split", "all", "--json", out_json)[0] == 0
    assert set(json.loads(out_json.read_text())) == {"checkpoint", "epoch", "train", "test"}

    held = tmp_path / "held"
    args = [*FAST, "train.epochs=2", "eval.every=1", "data.val_fraction=0.2"]
    assert cli(capsys, "train", *args, "--run-dir", held)[0] == 0
    summary = json.loads((held / "summary.json").read_text())
    assert summary["best"]["split"] == "val" and summary["splits"]["val"] > 0
    code, out, _ = cli(capsys, "eval", held, "--split", "all", "--json", out_json)
    assert code == 0 and "best.pt" in out
    evaluation = json.loads(out_json.read_text())
    assert evaluation["epoch"] == summary["best_epoch"]
    assert evaluation["val"]["num_samples"] == summary["splits"]["val"]
    assert evaluation["val"]["top1"] == summary["best"]["val"]["top1"]


def test_resume_is_exact(capsys, tmp_path):
    common = [*FAST, "train.epochs=4", "train.mixup_alpha=0.5", "schedule.name=cosine"]
    # accuracy every epoch, collapse metrics on a training subsample every other epoch
    common += ["eval.every=1", "eval.collapse_every=2", "eval.train_subsample=60"]
    assert cli(capsys, "train", *common, "--run-dir", tmp_path / "full")[0] == 0
    code, out, _ = cli(
        capsys, "train", *common, "--run-dir", tmp_path / "split", "--stop-after", "2"
    )
    assert code == 0 and "--resume" in out
    assert len(read_jsonl(tmp_path / "split" / "metrics.jsonl")) == 2
    code, out, _ = cli(capsys, "train", "--resume", tmp_path / "split")
    assert code == 0 and "resuming" in out
    full = without_time(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    split = without_time(read_jsonl(tmp_path / "split" / "metrics.jsonl"))
    assert full == split
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_may_extend_but_not_change_the_model(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert cli(capsys, "train", *FAST, "train.epochs=1", "--run-dir", run_dir)[0] == 0
    code, _, err = cli(capsys, "train", "--resume", run_dir, "optim.lr=0.5")
    assert code == 2 and "optim.lr cannot change when resuming" in err
    code, out, _ = cli(capsys, "train", "--resume", run_dir, "train.epochs=2")
    assert code == 0
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]


def test_existing_run_dir_is_never_overwritten(capsys, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    code, _, err = cli(capsys, "train", *FAST, "train.epochs=1", "--run-dir", run_dir)
    assert code == 2 and "already holds files" in err
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_interrupt_keeps_the_last_full_epoch(tmp_path, monkeypatch):
    config = load_config(DEFAULT, [*FAST, "train.epochs=3"])
    lines: list[str] = []
    trainer = Trainer(config, tmp_path / "run", echo=lines.append)
    original = Trainer._train_epoch

    def interrupt_in_epoch_two(self, progress):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return original(self, progress)

    monkeypatch.setattr(Trainer, "_train_epoch", interrupt_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["epoch"] == 1
    assert any("--resume" in line for line in lines)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "cannot be read"),
        (b"not a zip file at all", "cannot be read"),
        ("foreign", "not a neuralcollapse checkpoint"),
        ("truncated", "cannot be read"),
    ],
)
def test_bad_checkpoints_give_clear_errors(tmp_path, content, match):
    path = tmp_path / "ckpt.pt"
    if content == "foreign":
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    elif content == "truncated":
        save_checkpoint({"model": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_eval_and_resume_report_damaged_checkpoints(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert cli(capsys, "train", *FAST, "train.epochs=1", "--run-dir", run_dir)[0] == 0
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    code, _, err = cli(capsys, "train", "--resume", run_dir, "train.epochs=2")
    assert code == 2 and "truncated, corrupt" in err and "Traceback" not in err
    assert err.count("\n") == 1 and "weights_only=False" not in err
    code, _, err = cli(capsys, "eval", run_dir, "--checkpoint", "last")
    assert code == 2 and "truncated, corrupt" in err
    code, _, err = cli(capsys, "eval", tmp_path / "missing.pt")
    assert code == 2 and "does not exist" in err


def test_checkpoint_loads_without_pickled_code(tmp_path):
    run_dir = tmp_path / "run"
    Trainer(load_config(DEFAULT, [*FAST, "train.epochs=1"]), run_dir).fit()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["format"] == "neuralcollapse-checkpoint" and state["epoch"] == 1
    assert "frame" in "".join(state["model"])  # the fixed frame travels with the weights


def test_training_is_deterministic(tmp_path):
    config = load_config(DEFAULT, [*FAST, "train.epochs=2", "train.mixup_alpha=1.0"])
    first = Trainer(config, tmp_path / "a").fit()
    second = Trainer(config, tmp_path / "b").fit()
    assert first["final"] == second["final"]


def test_compare_variants_with_paired_seeds(capsys, tmp_path):
    out_json = tmp_path / "table.json"
    learnable = "digits_lt head.kind=learnable loss.name=ce"
    code, out, err = cli(
        capsys,
        "compare",
        "digits_lt",
        learnable,
        *[arg for item in FAST for arg in ("--set", item)],
        "--set",
        "train.epochs=1",
        "--set",
        "data.val_fraction=0",
        "--seeds",
        "2",
        "--runs-dir",
        tmp_path / "runs",
        "--json",
        out_json,
    )
    assert code == 0, err
    table = json.loads(out_json.read_text())
    first, second = table["variants"]
    assert (
        first["label"] == "digits_lt"
        and second["label"] == "digits_lt head.kind=learnable loss.name=ce"
    )
    # The variants are what they say: the baseline is the plain linear classifier.
    assert first["config"]["head"] == {**first["config"]["head"], "kind": "etf", "neck": "bn_l2"}
    assert second["config"]["head"]["kind"] == "learnable"
    assert second["config"]["head"]["neck"] == "none" and second["config"]["loss"]["name"] == "ce"
    assert first["config"]["train"]["epochs"] == second["config"]["train"]["epochs"] == 1
    assert [r["seed"] for r in first["runs"]] == [r["seed"] for r in second["runs"]] == [0, 1]
    # Paired statistics by hand: per-seed differences, their mean, sample std and wins.
    paired = table["paired"][0]["metrics"]["top1"]
    diffs = [
        b["final"]["top1"] - a["final"]["top1"]
        for a, b in zip(first["runs"], second["runs"], strict=True)
    ]
    assert paired["differences"] == pytest.approx(diffs)
    assert paired["mean"] == pytest.approx(sum(diffs) / 2)
    assert paired["std"] == pytest.approx(abs(diffs[0] - diffs[1]) / math.sqrt(2))
    assert paired["wins"] == sum(d > 0 for d in diffs) and paired["seeds"] == 2
    assert "paired difference to 'digits_lt'" in out and "+-" in out
    # no run held out a validation split, so none chose a best epoch: no such column
    assert "best top1" not in out and "best top1" not in first["mean"]
    assert len(list((tmp_path / "runs").iterdir())) == 4


def test_compare_refuses_what_would_not_compare(capsys, tmp_path):
    code, _, err = cli(capsys, "compare", "digits_lt", "digits_lt", "--seeds", "1")
    assert code == 2 and "resolve to the same config" in err
    code, _, err = cli(capsys, "compare", "digits_lt", "head.kind=learnable")
    assert code == 2 and "--set" in err
    code, _, err = cli(capsys, "compare", "digits_lt", "digits_lt optim.lr=0.05", "--label", "a")
    assert code == 2 and "--label" in err


# --------------------------------------------------------------------------- recipes


def write_cifar_standin(root: Path, name: str, per_class: int, seed: int = 0) -> None:
    """A tiny release in the official python-pickle layout (extracted folder)."""
    fmt = CIFAR_ARCHIVES[name]
    rng = np.random.default_rng(seed)
    folder = root / fmt.folder
    folder.mkdir(parents=True)
    k = fmt.num_classes
    train_labels = np.repeat(np.arange(k), per_class)
    parts = np.array_split(rng.permutation(train_labels), len(fmt.train_members))
    members = dict(zip(fmt.train_members, parts, strict=True))
    members[fmt.test_members[0]] = np.repeat(np.arange(k), 2)
    for member, labels in members.items():
        payload = {
            b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
            b"batch_label": member.encode(),
        }
        if name == "cifar10":
            payload[b"labels"] = [int(v) for v in labels]
        else:
            payload[b"fine_labels"] = [int(v) for v in labels]
            payload[b"coarse_labels"] = [int(v) // 5 for v in labels]
        (folder / member).write_bytes(pickle.dumps(payload, protocol=2))
    meta = (
        {b"label_names": [f"c{i}".encode() for i in range(10)]}
        if name == "cifar10"
        else {
            # the official names (those of the shipped tree), so builtin:cifar100 matches
            b"fine_label_names": [n.encode() for n in Hierarchy.builtin("cifar100").leaves],
            b"coarse_label_names": [f"g{i}".encode() for i in range(20)],
        }
    )
    (folder / fmt.meta_member).write_bytes(pickle.dumps(meta, protocol=2))


def write_list_file_standin(root: Path, classes: int = 4, per_class: int = 3) -> tuple[Path, Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = []
    for k in range(classes):
        for i in range(per_class):
            rel = Path(f"img/{k}_{i}.png")
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / rel)
            lines.append(f"{rel} {k}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    (root / "test.txt").write_text("\n".join(lines[::2]) + "\n")
    return root / "train.txt", root / "test.txt"


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("standins")
    write_cifar_standin(base / "cifar10", "cifar10", per_class=100)
    write_cifar_standin(base / "cifar100", "cifar100", per_class=100)
    write_list_file_standin(base / "imagenet")
    # 100 leaves named as CIFAR-100's classes (trees are matched to classes by name)
    balanced, official = Hierarchy.balanced([4, 5, 5]), Hierarchy.builtin("cifar100").leaves
    rename = dict(zip(balanced.leaves, official, strict=True))
    tree = Hierarchy([(rename.get(c, c), p) for c, p in balanced.edges], classes=official)
    tree = tree.save(base / "tree100.csv")
    return {
        "cifar10": base / "cifar10",
        "cifar100": base / "cifar100",
        "list_file": base / "imagenet",
        "tree100": tree,
    }


def test_every_recipe_is_listed():
    names = available_recipes()
    assert "digits_lt" in names and "imagenet_lt_r50_etf_dr" in names
    for data in ("cifar10", "cifar100"):
        for ratio in (100, 50, 10):
            for variant in ("learnable_ce", "etf_ce", "etf_dr"):
                assert f"{data}_lt_r{ratio}_{variant}" in names
    assert {"cifar10_resnet18_etf_dk", "cifar10_resnet18_learnable"} <= set(names)


def _built_on_standins(recipe: str) -> bool:
    """Recipes on the official-release data sets, or starting from pretrained weights, are
    trained on tiny releases in tests/test_datasets.py instead."""
    config = load_config(RECIPE_DIR / f"{recipe}.yaml")
    return not dataset_traits(config.data.name).release and config.model.weights is None


@pytest.mark.parametrize("recipe", [r for r in available_recipes() if _built_on_standins(r)])
def test_every_recipe_parses_and_builds(recipe, standins):
    config = load_config(RECIPE_DIR / f"{recipe}.yaml")
    assert config.name == recipe
    # the stand-ins hold 100 images per class: a validation split would leave the tail of
    # a ratio-100 subset empty
    overrides = ["train.batch_size=4", "eval.batch_size=8", "data.num_workers=0"]
    overrides.append("data.val_fraction=0")
    if config.data.imbalance_ratio > 100:  # ratio 200 needs n_max >= 200: cap it at 100
        overrides.append("data.imbalance_ratio=100")
    if config.data.name in standins:
        overrides.append(f"data.root={standins[config.data.name]}")
    if config.data.hierarchy is not None:
        overrides.append(f"data.hierarchy={standins['tree100']}")
    if config.data.name == "list_file":
        root = standins["list_file"]
        overrides += [
            f"data.train_list={root / 'train.txt'}",
            f"data.test_list={root / 'test.txt'}",
            "data.image_size=32",
        ]
        if config.data.crop_size is not None:  # the recipe's crop, scaled to the stand-ins
            overrides.append("data.crop_size=28")
    config = load_config(RECIPE_DIR / f"{recipe}.yaml", overrides)
    data, loaders, model = assemble(config, torch.device("cpu"))
    if config.data.name.startswith("cifar") and config.data.imbalance_ratio > 1:
        counts = data.train_counts.tolist()
        assert counts[0] == 100 and counts == sorted(counts, reverse=True)
        assert counts[-1] == math.floor(100 / config.data.imbalance_ratio)
    x, y = next(iter(loaders[0]))
    model.eval()
    with torch.no_grad():
        logits, h = model(x, return_features=True)
    assert logits.shape == (x.shape[0], data.num_classes)
    assert h.shape[1] == model.head.dim
    if config.head.kind != "learnable":
        assert list(model.parameters())  # trainable backbone; the frame is a buffer
        assert all(p is not model.head.frame for p in model.parameters())


def test_gradient_accumulation_and_clipping(tmp_path):
    config = load_config(
        DEFAULT, [*FAST, "train.epochs=1", "train.accumulate=2", "optim.grad_clip=0.5"]
    )
    trainer = Trainer(config, tmp_path / "run")
    micro_batches = len(trainer.loaders[0])
    assert trainer.loaders[0]._loader.batch_size == 32  # 64 per step, in 2 micro-batches
    trainer.fit()
    assert trainer.global_step == math.ceil(micro_batches / 2)
    with pytest.raises(ConfigError, match="multiple of train.accumulate"):
        load_config(DEFAULT, ["train.batch_size=63", "train.accumulate=2"])


def test_train_metrics_on_a_fixed_subsample_and_whole_at_the_end(tmp_path):
    schedule = ["eval.every=1", "eval.collapse_every=1", "eval.train_subsample=100"]
    config = load_config(DEFAULT, [*FAST, "train.epochs=3", "data.val_fraction=0", *schedule])
    first = Trainer(config, tmp_path / "a").fit()
    Trainer(config, tmp_path / "b").fit()
    records = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    again = read_jsonl(tmp_path / "b" / "metrics.jsonl")
    counts = []
    for record in records[:2]:  # before the last epoch: the stratified subsample
        train = record["train"]
        assert train["collapse"]["num_samples"] == train["num_samples"] == 100
        assert record["measured"] == {
            "splits": ["train", "test"],
            "collapse": True,
            "train_samples": 100,
            "train_size": 503,
        }
        assert record["test"]["collapse"]["num_samples"] == 500  # the test set is never cut
        counts.append(train["collapse"]["class_counts"])
    # the same subset every epoch and every run, one sample at least of every class
    assert counts[0] == counts[1] == again[0]["train"]["collapse"]["class_counts"]
    assert min(counts[0]) >= 1 and sum(counts[0]) == 100
    # the last epoch, and so summary.json, measure the whole training split
    assert records[-1]["measured"]["train_samples"] == 503
    assert first["final"]["train"]["collapse"]["num_samples"] == 503


def test_d_equal_k_recipe_reaches_every_class_for_any_seed():
    from neuralcollapse.frames import unreachable_classes
    from neuralcollapse.train.build import run_frame

    recipe = resolve_config_path("cifar10_resnet18_etf_dk")
    for seed in range(100):
        config = load_config(recipe, [f"train.seed={seed}"])
        frame = run_frame(config, num_classes=10, feature_dim=10, hierarchy=None)
        assert unreachable_classes(frame) == [], seed


def test_a_frame_with_unreachable_classes_is_refused_naming_the_keys(tmp_path):
    config = load_config(
        DEFAULT,
        [
            *FAST,
            "model.name=mlp",
            "model.options={hidden: [32], feature_dim: 10}",
            "head.neck=none",
            "head.rotation=random",
            "train.seed=2",
        ],
    )
    from neuralcollapse.frames import simplex_etf, unreachable_classes

    assert unreachable_classes(simplex_etf(10, 10, seed=2))  # seed 2 leaves classes out
    with pytest.raises(ConfigError, match=r"head.neck=none.*unreachable.*head.rotation=none"):
        Trainer(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- from Python


def test_fit_from_python_writes_what_the_config_says_report_included(tmp_path):
    pytest.importorskip("matplotlib", reason="the HTML report needs matplotlib")
    config = load_config(DEFAULT, [*FAST, "train.epochs=1", "log.report=true"])
    lines: list[str] = []
    trainer = Trainer(config, tmp_path / "run", echo=lines.append)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    report = tmp_path / "run" / "report.html"
    assert report.is_file() and "<html" in report.read_text().lower()
    assert f"report: {report}" in lines
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == json.loads(
        json.dumps(summary)
    )
    quiet = load_config(DEFAULT, [*FAST, "train.epochs=1"])  # log.report=false
    trainer = Trainer(quiet, tmp_path / "quiet")
    try:
        trainer.fit()
    finally:
        trainer.close()
    assert not (tmp_path / "quiet" / "report.html").exists()


# --------------------------------------------------------------------------- undefined


def test_collapsed_features_finish_the_run_with_null_metrics_and_resume(capsys, tmp_path):
    """Features at one point (every class mean the same): NC1 has no between-class
    covariance to compare with. The run finishes; the metrics are null with the reason,
    in the records, the summary and the report, and --resume finishes again."""
    pytest.importorskip("matplotlib", reason="the HTML report needs matplotlib")
    overrides = [*FAST, "train.epochs=2", "head.kind=learnable", "loss.name=ce"]
    config = load_config(DEFAULT, [*overrides, "log.report=true"])
    run_dir = tmp_path / "run"
    trainer = Trainer(config, run_dir)
    last_bn = trainer.model.backbone.net[5]  # the features' BatchNorm: output 0 -> ReLU 0
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
    last_bn.requires_grad_(False)
    try:
        summary = trainer.fit()
    finally:
        trainer.close()
    reason = "all present class means coincide"
    for split in (summary["final"], summary["final"]["train"], summary["final"]["val"]):
        assert reason in split["collapse"]["undefined"] and split["collapse"]["nc1"] is None
    assert summary["final"]["top1"] is not None  # accuracy is still measured
    record = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert reason in record["test"]["collapse"]["undefined"]
    assert record["test"]["collapse"]["nc2_etf_distance_means"] is None
    assert "collapse metrics undefined" in (run_dir / "report.html").read_text()
    code, out, err = cli(capsys, "train", "--resume", run_dir)
    assert code == 0, err
    assert "undefined, " + reason in out
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert reason in resumed["final"]["collapse"]["undefined"]
