"""The config machinery (``neuralcollapse.config``) and the training config built on it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, Literal

import pytest
import yaml

from neuralcollapse.config import (
    Bounds,
    apply_overrides,
    bounded,
    coerce,
    from_dict,
    load_yaml,
    parse_override,
    parse_value,
    read_yaml_mapping,
    split_overrides,
    to_yaml,
)
from neuralcollapse.errors import ConfigError, UsageError
from neuralcollapse.train.config import (
    RESUMABLE_CHANGES,
    Config,
    check_resume_changes,
    config_from_dict,
    config_to_dict,
    load_config,
)
from neuralcollapse.train.config import ConfigError as ReexportedConfigError
from neuralcollapse.train.config import to_yaml as config_to_yaml

# --------------------------------------------------------------------------- YAML scalars


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 1e-3),
        ("5e-4", 5e-4),
        ("1E+2", 100.0),
        (".5", 0.5),
        ("-2.5e-1", -0.25),
        ("3.", 3.0),
        ("7", 7),
        ("-7", -7),
        ("010", 10),  # decimal, not YAML 1.1 octal
        ("0x1F", 31),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
    ],
)
def test_numbers_booleans_and_null(text: str, value: Any) -> None:
    loaded = load_yaml(text)
    assert loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize(
    "text", ["on", "off", "yes", "no", "y", "n", "ON", "Off", "YES", "No", "1:30", "2024-01-01"]
)
def test_yaml_1_1_lookalikes_are_strings(text: str) -> None:
    assert load_yaml(text) == text


def test_infinities_and_nan_parse_but_are_refused_by_float_fields() -> None:
    assert load_yaml(".inf") == math.inf and load_yaml("-.Inf") == -math.inf
    assert math.isnan(load_yaml(".nan"))

    @dataclass
    class Section:
        x: float = 1.0
        y: float = bounded(1.0, allow_nonfinite=True)

    with pytest.raises(ConfigError, match="x must be a finite number, got inf"):
        from_dict(Section, {"x": math.inf})
    assert from_dict(Section, {"y": -math.inf}).y == -math.inf


def test_duplicate_keys_are_an_error() -> None:
    with pytest.raises(ConfigError, match="line 2, column 1: duplicate key 'lr'"):
        load_yaml("lr: 0.1\nlr: 0.2\n", source="run.yaml")


def test_override_values_use_the_same_loader() -> None:
    assert parse_value("1e-3") == 1e-3
    assert parse_value("off") == "off"
    assert parse_value("[80, 90]") == [80, 90]
    assert parse_value("  ") is None
    assert parse_override("optim.lr=5e-4") == (["optim", "lr"], 5e-4)
    assert parse_override("log.progress=off") == (["log", "progress"], "off")
    assert parse_override("name=a=b") == (["name"], "a=b")


@pytest.mark.parametrize("text", ["optim.lr", "=1", "optim..lr=1", "a b=1", "-x=1"])
def test_malformed_overrides(text: str) -> None:
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        parse_override(text)


def test_an_unparsable_override_value_is_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_override("optim.betas=[0.9, 0.99")
    message = str(caught.value)
    assert message.startswith("override 'optim.betas=[0.9, 0.99': not valid YAML at line 1")
    assert "\n" not in message


def test_split_overrides() -> None:
    items = ["optim.lr=0.1", "--flag", "run.yaml", "steps=3", "path/a=b", "x.y=", "-k=v"]
    assert split_overrides(items) == (
        ["optim.lr=0.1", "steps=3", "x.y="],
        ["--flag", "run.yaml", "path/a=b", "-k=v"],
    )


def test_apply_overrides_nests_and_copies() -> None:
    base = {"optim": {"lr": 0.1}, "name": "a"}
    result = apply_overrides(base, ["optim.lr=1e-3", "model.options.hidden=[32]", "name=b"])
    assert result == {"optim": {"lr": 1e-3}, "model": {"options": {"hidden": [32]}}, "name": "b"}
    assert base == {"optim": {"lr": 0.1}, "name": "a"}
    with pytest.raises(ConfigError, match="name is a value, not a section"):
        apply_overrides(base, ["name.first=x"])


# --------------------------------------------------------------------------- files


def test_malformed_yaml_is_one_line_with_line_and_column(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lr: 0.1\ndata: [1, 2\n")
    with pytest.raises(ConfigError) as caught:
        read_yaml_mapping(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: not valid YAML at line 4, column 1: expected ',' or ']'")


def test_invalid_utf8_names_the_file_and_the_byte(tmp_path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=rf"{path}: not UTF-8 text .*byte offset 9"):
        read_yaml_mapping(path)


def test_missing_file_folder_and_non_mapping(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.yaml")):
        read_yaml_mapping(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder"):
        read_yaml_mapping(tmp_path)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of keys, got list"):
        read_yaml_mapping(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert read_yaml_mapping(empty) == {}


def test_control_characters_are_reported_with_their_position(tmp_path) -> None:
    path = tmp_path / "ctl.yaml"
    path.write_text("a: 1\nb: x\x07\n")
    with pytest.raises(ConfigError, match="line 2, column 5: unacceptable character #x0007"):
        read_yaml_mapping(path)


def test_to_yaml_quotes_lookalike_strings() -> None:
    values = {"a": "off", "b": "1e-3", "c": "2024-01-01", "d": "010", "e": 1e-5, "f": None}
    text = to_yaml(values)
    assert load_yaml(text) == values
    assert yaml.safe_load(text) == values  # YAML 1.1 readers agree


# --------------------------------------------------------------------------- dataclasses


@dataclass
class _Inner:
    rate: float = bounded(0.5, gt=0, le=1)
    sizes: list[int] = bounded(default_factory=lambda: [1], ge=1)


@dataclass
class _Outer:
    mode: Literal["on", "off", "auto"] = "auto"
    flag: bool = False
    count: int | None = bounded(None, ge=0)
    pair: tuple[float, float] = (0.0, 1.0)
    extra: dict[str, Any] = field(default_factory=dict)
    inner: _Inner = field(default_factory=_Inner)


def test_from_dict_types() -> None:
    built = from_dict(
        _Outer,
        {"mode": "off", "flag": "Yes", "count": 3, "pair": [1, 2], "inner": {"rate": 1}},
    )
    assert built == _Outer(mode="off", flag=True, count=3, pair=(1.0, 2.0), inner=_Inner(1.0))
    assert isinstance(built.inner.rate, float)
    assert from_dict(_Outer, {"inner": None, "flag": "OFF"}) == _Outer(flag=False)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"mode": "of"}, r"mode: expected one of 'on', 'off', 'auto', got 'of'"),
        ({"mode": True}, "mode: expected one of"),
        ({"flag": "maybe"}, "flag: expected bool"),
        ({"flag": 1}, "flag: expected bool"),
        ({"count": True}, "count: expected int or null, got True"),
        ({"count": 1.0}, "count: expected int or null, got 1.0"),
        ({"count": -1}, "count must be >= 0 or null, got -1"),
        ({"pair": [1]}, "pair: expected 2 values"),
        ({"extra": [1]}, "extra: expected a mapping"),
        ({"inner": 3}, "inner: expected a mapping of keys"),
        ({"inner": {"rate": 0}}, r"inner.rate must be in \(0, 1\], got 0.0"),
        ({"inner": {"rate": "1e-3"}}, "inner.rate: expected float, got '1e-3'"),
        ({"inner": {"sizes": [2, 0]}}, r"inner.sizes\[1\] must be >= 1, got 0"),
        ({"inner": {"sizes": [2, "x"]}}, r"inner.sizes\[1\]: expected int"),
        ({"inner": {"rat": 1}}, r"unknown key 'inner.rat' \(did you mean 'rate'\?\)"),
    ],
)
def test_from_dict_errors_name_the_key(values: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(_Outer, values)


def test_renamed_and_retired_keys() -> None:
    renamed = {"inner.speed": "inner.rate"}
    with pytest.raises(ConfigError, match="`inner.speed` was renamed to `inner.rate`"):
        from_dict(_Outer, {"inner": {"speed": 1}}, renamed=renamed)
    assert from_dict(_Outer, {"old": 1}, retired=("old",)) == _Outer()


def test_coerce_and_bounds() -> None:
    assert coerce([1, 2.5], tuple[float, ...], "ratios") == (1.0, 2.5)
    assert coerce("on", bool, "x") is True
    assert Bounds(ge=0, lt=1).describe() == "in [0, 1)"
    assert Bounds(gt=0).describe() == "> 0"
    assert Bounds(le=2.5).describe() == "<= 2.5"
    with pytest.raises(TypeError):
        Bounds(ge=0, gt=0)


def test_config_error_is_a_usage_error() -> None:
    assert ReexportedConfigError is ConfigError
    assert issubclass(ConfigError, UsageError) and issubclass(ConfigError, ValueError)


# --------------------------------------------------------------------------- training


def test_scientific_notation_from_overrides_and_files(tmp_path) -> None:
    config = load_config(None, ["optim.lr=1e-3", "optim.weight_decay=5e-4"])
    assert config.optim.lr == 1e-3 and config.optim.weight_decay == 5e-4
    path = tmp_path / "sci.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 5e-4\nschedule:\n  min_lr: 1E-5\n")
    config = load_config(path)
    assert (config.optim.lr, config.optim.weight_decay, config.schedule.min_lr) == (
        1e-3,
        5e-4,
        1e-5,
    )
    assert config.name == "sci"


def test_words_for_literals_and_booleans() -> None:
    config = load_config(None, ["log.progress=off", "train.amp=off", "train.compile=yes"])
    assert config.log.progress == "off" and config.train.amp == "off"
    assert config.train.compile is True
    config = load_config(None, ["log.progress=on", "train.compile=OFF", "log.tensorboard=no"])
    assert config.log.progress == "on"
    assert config.train.compile is False and config.log.tensorboard is False


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lr=.inf", "optim.lr must be a finite number > 0, got inf"),
        ("optim.lr=.nan", "optim.lr must be a finite number > 0, got nan"),
        ("optim.lr=0", "optim.lr must be > 0, got 0.0"),
        ("train.seed=-1", r"train.seed must be in \[0, 4294967295\], got -1"),
        ("head.frame_seed=-1", r"head.frame_seed must be in \[0, 4294967295\] or null, got -1"),
        ("train.mixup_alpha=-0.1", "train.mixup_alpha must be >= 0"),
        ("train.mixup_alpha=.inf", "train.mixup_alpha must be a finite number >= 0"),
        ("data.n_max=0", "data.n_max must be >= 1 or null, got 0"),
        ("eval.train_subsample=0", "eval.train_subsample must be >= 1 or null"),
        ("optim.momentum=1", r"optim.momentum must be in \[0, 1\), got 1.0"),
        ("optim.betas=[0.9, 1]", r"optim.betas\[1\] must be in \[0, 1\), got 1.0"),
        ("optim.betas=[0.9]", "optim.betas must have 2 values"),
        ("optim.grad_clip=0", "optim.grad_clip must be > 0 or null"),
        ("optim.weight_decay=-1e-4", "optim.weight_decay must be >= 0"),
        ("data.crop_padding=-1", "data.crop_padding must be >= 0"),
        ("data.num_workers=-1", "data.num_workers must be >= 0"),
        ("data.samples_per_class=0", "data.samples_per_class must be >= 1"),
        ("data.num_classes=1", "data.num_classes must be >= 2"),
        ("data.dim=0", "data.dim must be >= 1"),
        ("data.separation=0", "data.separation must be > 0"),
        ("data.image_size=0", "data.image_size must be >= 1 or null"),
        ("data.imbalance_ratio=0.5", "data.imbalance_ratio must be >= 1"),
        ("data.tree_branching=[2, 0]", r"data.tree_branching\[1\] must be >= 1"),
        ("eval.many=-1", "eval.many must be >= 0"),
        ("eval.few=-1", "eval.few must be >= 0"),
        ("eval.every=0", "eval.every must be >= 1"),
        ("schedule.milestones=[5, 3]", "schedule.milestones must be positive and strictly"),
        ("schedule.milestones=[0, 3]", r"schedule.milestones\[0\] must be >= 1"),
        ("schedule.min_lr=1", r"schedule.min_lr=1.0 must be <= optim.lr=0.1"),
        ("schedule.warmup_epochs=-1", "schedule.warmup_epochs must be >= 0"),
        ("schedule.gamma=0", "schedule.gamma must be > 0"),
        ("loss.label_smoothing=1", r"loss.label_smoothing must be in \[0, 1\)"),
        ("loss.alpha=1.5", r"loss.alpha must be in \[0, 1\]"),
        ("head.scale=.inf", "head.scale must be a finite number > 0"),
        ("train.ddp_timeout_s=0", "train.ddp_timeout_s must be > 0"),
        ("train.accumulate=0", "train.accumulate must be >= 1"),
        ("name=../x", r"name must be 1-100 characters .* got '\.\./x'"),
        ("name=../../x", "name must be 1-100 characters"),
        ("name=a/b", "name must be 1-100 characters"),
        ("name=.hidden", "name must be 1-100 characters"),
        (f"name={'a' * 101}", "name must be 1-100 characters"),
    ],
)
def test_range_checks_name_the_key_and_the_range(override: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_valid_names_and_default_names_from_file_stems(tmp_path) -> None:
    assert load_config(None, ["name=cifar10_lt-r100.v2"]).name == "cifar10_lt-r100.v2"
    path = tmp_path / "my run (copy).yaml"
    path.write_text("optim:\n  lr: 0.05\n")
    assert load_config(path).name == "my_run__copy_"


def test_device_resident_is_retired_and_deterministic_kept() -> None:
    values = config_to_dict(Config())
    assert "device_resident" not in values["data"]
    assert values["train"]["deterministic"] is True
    old = {"data": {"device_resident": False}, "train": {"deterministic": False}}
    config = config_from_dict(old)  # configs saved by older versions still load
    assert config.train.deterministic is False
    assert "device_resident" not in config_to_yaml(config)


def test_every_packaged_recipe_round_trips_through_yaml() -> None:
    recipes = sorted(
        p
        for p in (files("neuralcollapse") / "configs").iterdir()
        if p.is_file() and not p.name.startswith("_")  # _families.yaml is not a recipe
    )
    assert recipes
    for recipe in recipes:
        config = load_config(str(recipe))
        assert config_from_dict(load_yaml(config_to_yaml(config))) == config, recipe.name
        assert config_from_dict(yaml.safe_load(config_to_yaml(config))) == config, recipe.name


# --------------------------------------------------------------------------- resuming


def test_resume_allows_epochs_eval_every_and_logging() -> None:
    saved = load_config(None, [])
    requested = load_config(
        None, ["train.epochs=60", "eval.every=5", "log.progress=off", "log.tensorboard=false"]
    )
    check_resume_changes(saved, requested)
    assert RESUMABLE_CHANGES == (
        "train.epochs",
        "eval.every",
        "eval.collapse_every",
        "eval.train_subsample",
        "log.*",
    )


def test_resume_refuses_other_changes_naming_old_and_new_values() -> None:
    saved = load_config(None, [])
    with pytest.raises(ConfigError) as caught:
        check_resume_changes(saved, load_config(None, ["optim.lr=0.05", "train.epochs=40"]))
    assert str(caught.value) == (
        "optim.lr cannot change when resuming (checkpoint 0.1, requested 0.05); only "
        "train.epochs, eval.every, eval.collapse_every, eval.train_subsample, log.* can"
    )
    requested = load_config(None, ["head.kind=spread", "model.options={hidden: [8]}"])
    with pytest.raises(ConfigError) as caught:
        check_resume_changes(saved, requested)
    message = str(caught.value)
    assert "head.kind cannot change when resuming (checkpoint 'etf', requested 'spread')" in (
        message
    )
    assert "model.options cannot change when resuming (checkpoint {}, requested" in message
    with pytest.raises(ConfigError, match="name cannot change"):
        check_resume_changes(saved, load_config(None, ["name=other"]))


# --------------------------------------------------------------------------- loss and head keys


def test_new_loss_and_head_keys_default_to_the_old_behaviour():
    config = load_config(None)
    assert config.imports == []
    assert (config.loss.options, config.head.options) == ({}, {})
    assert (config.loss.focal_form, config.loss.focal_weighting) == ("softmax", "alpha")
    assert config.loss.cb_reduction == "auto" and config.head.allow_unreachable is False


@pytest.mark.parametrize(
    ("overrides", "form", "weighting", "reduction", "mean_reduction"),
    [
        (["loss.name=focal"], "softmax", "alpha", "mean", "weight_sum"),
        (["loss.name=focal", "loss.focal_form=sigmoid_cb"], "sigmoid_cb", "alpha", "mean", "batch"),
        (["loss.name=focal", "loss.focal_weighting=cao"], "softmax", "cao", "mean", "batch"),
        (["loss.name=ce", "loss.cb_reduction=batch"], "softmax", "alpha", "batch", "weight_sum"),
        (["loss.name=ce", "loss.cb_reduction=weight_sum"], "softmax", "alpha", "weight_sum", None),
    ],
)
def test_focal_and_class_balanced_keys_reach_the_loss(
    overrides, form, weighting, reduction, mean_reduction
):
    import torch

    from neuralcollapse.losses import FocalLoss
    from neuralcollapse.train.build import build_loss

    config = load_config(
        None, ["head.kind=learnable", "loss.class_weight=class_balanced", *overrides]
    )
    loss = build_loss(config, None, None, torch.tensor([50, 20, 5])).inner
    assert isinstance(loss, FocalLoss) and loss.weight is not None
    assert (loss.form, loss.weighting, loss.reduction) == (form, weighting, reduction)
    if mean_reduction is not None:
        assert loss.mean_reduction == mean_reduction


def test_loss_and_head_key_errors_are_one_line():
    cases = [
        (["loss.focal_form=sigmoid_cb", "loss.focal_weighting=cao"], "focal_weighting='cao'"),
        (["head.kind=learnable", "head.options={a: 1}"], "head.options"),
        (["loss.name=dr", "loss.options={a: 1}"], "'dr' takes no options"),
        (["loss.name=focal", "loss.focal_form=softmaxx"], "loss.focal_form"),
        (["loss.cb_reduction=sum"], "loss.cb_reduction"),
        (["imports=my_module"], "imports"),
    ]
    for overrides, match in cases:
        with pytest.raises(ConfigError, match=match) as info:
            load_config(None, overrides)
        assert "\n" not in str(info.value)
