"""Recipes: composition from bases, generated families, the frozen list of resolved recipes,
sources and targets, the zoo models the recipes name, and --print-config's origins."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

from neuralcollapse.cli import main
from neuralcollapse.config import read_yaml_mapping
from neuralcollapse.errors import ConfigError
from neuralcollapse.models import build, count_parameters, densenet_bc
from neuralcollapse.targets import TARGETS_FILE, get_target, load_targets
from neuralcollapse.train.config import config_to_dict, load_config
from neuralcollapse.train.recipes import (
    BASES_DIR,
    RECIPE_DIR,
    available_bases,
    available_recipes,
    generated_recipes,
    read_recipe,
    recipe_source,
    resolve_config_path,
)

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parent.parent


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _flat(values: dict, prefix: str = "") -> dict:
    """Dotted keys; ``model.options`` stays one value (as the frozen file compares it)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "options":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------- composition


def test_bases_merge_in_order_and_own_keys_win(tmp_path):
    _write(tmp_path / "a.yaml", "optim: {lr: 0.5, momentum: 0.8}\nmodel: {options: {x: 1}}\n")
    _write(tmp_path / "b.yaml", "optim: {lr: 0.2}\nmodel: {options: {y: 2}}\n")
    recipe = _write(tmp_path / "r.yaml", "base: [a.yaml, b.yaml]\noptim: {weight_decay: 0.01}\n")
    values = read_recipe(recipe).values
    assert values["optim"] == {"lr": 0.2, "momentum": 0.8, "weight_decay": 0.01}
    assert values["model"]["options"] == {"x": 1, "y": 2}  # mappings merge key by key
    origins = read_recipe(recipe).origins
    assert origins["optim.lr"].endswith("b.yaml") and origins["optim.momentum"].endswith("a.yaml")
    assert origins["optim.weight_decay"].endswith("r.yaml")


def test_base_chain_name_not_inherited_and_targets_collected(tmp_path):
    _write(tmp_path / "a.yaml", "name: parent\ntargets: [t1]\ntrain: {epochs: 3}\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\ntargets: [t2]\ntrain: {batch_size: 8}\n")
    child = _write(tmp_path / "child.yaml", "base: b.yaml\n")
    recipe = read_recipe(child)
    assert "name" not in recipe.values and recipe.targets == ["t1", "t2"]
    config = load_config(child)
    assert config.name == "child" and (config.train.epochs, config.train.batch_size) == (3, 8)


def test_packaged_base_by_name(tmp_path):
    recipe = _write(tmp_path / "mine.yaml", "base: [cifar100_lt, resnet32_d64, ldam_drw]\n")
    config = load_config(recipe, ["data.imbalance_ratio=100"])
    packaged = load_config("cifar100_lt_r100_ldam_drw")
    assert _flat(config_to_dict(config)) | {"name": 0} == _flat(config_to_dict(packaged)) | {
        "name": 0
    }


def test_base_cycle_is_one_line_error(tmp_path):
    _write(tmp_path / "a.yaml", "base: b.yaml\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml") as info:
        load_config(tmp_path / "a.yaml")
    assert "\n" not in str(info.value)
    _write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "self.yaml")


def test_unknown_base_is_one_line_error(tmp_path):
    recipe = _write(tmp_path / "r.yaml", "base: [cifar100_lt, no_such_base]\n")
    with pytest.raises(ConfigError, match=r"base 'no_such_base' names no base") as info:
        load_config(recipe)
    assert "\n" not in str(info.value) and "cifar_lt_schedule" in str(info.value)
    with pytest.raises(ConfigError, match="targets must be a list"):
        load_config(_write(tmp_path / "t.yaml", "targets: nope\n"))


def test_load_config_takes_packaged_and_generated_names():
    assert load_config("digits_lt").name == "digits_lt"
    assert load_config("digits_lt.yaml").name == "digits_lt"
    config = load_config("cifar100_lt_r100_ldam_drw", ["optim.lr=0.05"])
    assert config.name == "cifar100_lt_r100_ldam_drw" and config.optim.lr == 0.05
    # the path a generated recipe stands for works wherever a recipe path does
    assert load_config(RECIPE_DIR / "cifar10_lt_r200_etf_dr.yaml").data.imbalance_ratio == 200
    with pytest.raises(FileNotFoundError, match="neither a file nor a packaged recipe"):
        load_config("cifar100_lt_r7_ldam_drw")


def test_bases_and_families_are_not_runnable():
    names = set(available_recipes())
    assert not names & set(available_bases())
    assert not any(name.startswith("_") for name in names)
    assert {"cifar_lt_schedule", "ldam_drw", "densenet_bc_150_12"} <= set(available_bases())
    with pytest.raises(FileNotFoundError):
        resolve_config_path("cifar_lt_schedule")
    with pytest.raises(FileNotFoundError):
        resolve_config_path("_families")
    # a generated recipe never shadows a file
    files = {p.stem for p in RECIPE_DIR.glob("[!_]*.yaml")}
    assert not files & set(generated_recipes())


def test_generated_recipes_are_listed_and_named():
    names = set(available_recipes())
    for data in ("cifar10", "cifar100"):
        for ratio in (200, 100, 50):
            for method in ("etf_dr", "learnable_ce", "etf_ce", "densenet_etf_dr"):
                assert f"{data}_lt_r{ratio}_{method}" in names
        for ratio in (100, 50, 10):
            for method in ("ldam_drw", "cb_focal", "la", "bs", "crt", "lws", "tau_norm"):
                assert f"{data}_lt_r{ratio}_{method}" in names
    assert "cifar100_lt_r100_ldam_drw_d128" in names
    assert {f"{d}_lt_r{r}_etf_dr" for d in ("svhn", "stl10") for r in (200, 100, 50)} <= names
    for name in generated_recipes():
        assert load_config(name).name == name


# --------------------------------------------------------------------------- no duplicates


def _own_leaves(path: Path) -> dict[str, str]:
    def walk(values: dict, prefix: str = "") -> dict[str, str]:
        out = {}
        for key, value in values.items():
            if isinstance(value, dict) and value:
                out.update(walk(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = repr(value)
        return out

    return {k: v for k, v in walk(read_yaml_mapping(path)).items() if k not in ("name", "targets")}


def test_no_two_recipe_files_differ_only_in_a_few_values():
    """The rule: two files (recipes or bases, their own keys, ``name`` and ``targets``
    aside, ``base`` counted as a value) that share at least 4 identical settings and differ
    in at most 3 (a key only one of them sets, or a different value) repeat settings that
    belong in a common base, with the differences as overrides. Files that are already
    base + overrides share little of their own and pass."""
    files = sorted(RECIPE_DIR.glob("[!_]*.yaml")) + sorted(BASES_DIR.glob("*.yaml"))
    own = {path: _own_leaves(path) for path in files}
    flagged = []
    for a, b in itertools.combinations(files, 2):
        left, right = own[a], own[b]
        shared = sum(1 for k in left if k in right and left[k] == right[k])
        differ = len(set(left) ^ set(right)) + sum(
            1 for k in left if k in right and left[k] != right[k]
        )
        if shared >= 4 and differ <= 3:
            flagged.append(f"{a.name} ~ {b.name} ({shared} shared, {differ} different)")
    assert not flagged, "; ".join(flagged)


# --------------------------------------------------------------------------- frozen list


def _changes() -> dict[tuple[str, str], dict]:
    expected = {}
    for group in yaml.safe_load((DATA / "recipe_changes_619f939.yaml").read_text()):
        assert group["reason"].strip()
        for recipe in group["recipes"]:
            for key, change in group["changes"].items():
                expected[(recipe, key)] = change
    return expected


def test_every_frozen_recipe_resolves_as_before_apart_from_listed_changes():
    frozen = json.loads((DATA / "resolved_recipes_619f939.json").read_text())
    old_defaults = _flat(json.loads((DATA / "resolved_defaults_619f939.json").read_text()))
    new_defaults = _flat(config_to_dict(load_config(None)))
    expected, used, problems = _changes(), set(), []
    for name, old in frozen.items():
        assert name in available_recipes(), f"{name} no longer resolves"
        new = _flat(config_to_dict(load_config(name)))
        for key, was in _flat(old).items():
            now = new.get(key, "<missing>")
            change = expected.get((name, key))
            if change is not None:
                used.add((name, key))
                if (was, now) != (change["was"], change["now"]):
                    problems.append(f"{name} {key}: {was!r} -> {now!r}, listed {change}")
            elif now != was and not (
                key != "name" and was == old_defaults.get(key) and now == new_defaults.get(key)
            ):
                problems.append(f"{name} {key}: {was!r} -> {now!r} (not a listed change)")
        # keys added since 619f939: a recipe that sets one away from its default changed
        for key in new.keys() - _flat(old).keys():
            change = expected.get((name, key))
            if change is not None:
                used.add((name, key))
                if ("<absent>", new[key]) != (change["was"], change["now"]):
                    problems.append(f"{name} {key}: new key = {new[key]!r}, listed {change}")
            elif new[key] != new_defaults.get(key, new[key]):
                problems.append(f"{name} {key}: new key = {new[key]!r} (not a listed change)")
    assert not problems, "; ".join(problems)
    assert used == set(expected), f"listed changes that no longer happen: {set(expected) - used}"


# --------------------------------------------------------------------------- sources, targets

_PROJECT = "this project's setting"


@pytest.mark.parametrize("name", available_recipes() + available_bases())
def test_every_recipe_and_base_names_its_source(name):
    source = recipe_source(name)
    assert source, f"{name}: no '# Source:' header line (or family source)"
    cites = ("[Y22]", "[Z21]", "[L23]", "Cao", "Cui", "Menon", "Ren", "Kang", "MiSLAS", "Papyan")
    assert _PROJECT in source or any(c in source for c in cites) or "see the" in source


def test_recipe_headers_label_project_settings_for_ratio_10_and_d128():
    assert _PROJECT in recipe_source("cifar100_lt_r10_etf_dr")
    assert _PROJECT in recipe_source("cifar100_lt_r100_ldam_drw_d128")
    assert "Res_cifar100_imb0005_ETF_DR.yaml" in recipe_source("cifar100_lt_r200_etf_dr")
    assert "Res_stl_imb002.yaml" in recipe_source("stl10_lt_r50_learnable_ce")


def test_every_targets_id_a_recipe_names_exists():
    targets = load_targets()
    named = set()
    for name in available_recipes():
        for target in read_recipe(resolve_config_path(name)).targets:
            assert target in targets, f"{name} names unknown target {target!r}"
            named.add(target)
    assert "z21_resnet18_memory_saving" in named


def test_targets_table_entries():
    targets = load_targets()
    assert load_targets(TARGETS_FILE) == targets
    assert targets["mislas_stage1_mixup_cifar100_lt_r100"].value == 39.5
    for target in targets.values():
        assert target.paper and target.table and target.row and target.setting
        assert target.metric and target.unit and target.source
        # a missing value says why, a present one names a file:line or a table
        if target.value is None:
            assert "not reached" in target.source
        else:
            assert re.search(r"\.(md|py|yaml|sh):\d+|Table \d", target.source), target.id
    with pytest.raises(ConfigError, match="no target 'mislas_stage1_cifar100'.*closest"):
        get_target("mislas_stage1_cifar100")


def test_targets_loader_refuses_a_bad_entry(tmp_path):
    bad = _write(tmp_path / "t.yaml", "x:\n  paper: p\n  valeu: 1.0\n")
    with pytest.raises(ConfigError, match="unknown key 'x.valeu'"):
        load_targets(bad)


_MARK = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*%?\s*<!--\s*t:([A-Za-z0-9_.-]+)\s*-->")
# accuracy-like numbers (two digits, a decimal point) in a line that cites a paper
# (a signed number is a measured difference, ``x=30.0`` a setting: neither is a quote)
_QUOTE = re.compile(r"(?<![\d.\w=+-])\d{2}\.\d{1,2}(?![\d.])")
_CITES = re.compile(r"\[(Y22|Z21|L23)\]|Cao|Cui|Menon|Ren |Kang|MiSLAS|Zhong")


@pytest.mark.parametrize("doc", ["README.md", "docs/theory.md"])
def test_quoted_paper_numbers_come_from_the_targets_table(doc):
    """Every number marked ``<!--t:ID-->`` equals that target's value, and every
    accuracy-like number (NN.N, NN.NN) on a line citing a paper carries a mark, or
    ``<!--measured-->`` when it is this project's own measurement (a line that says
    "this project's" or "measured" about its numbers is not a quote)."""
    targets = load_targets()
    text = (ROOT / doc).read_text(encoding="utf-8")
    for number, target_id in _MARK.findall(text):
        assert target_id in targets, f"{doc}: unknown target {target_id!r}"
        value = targets[target_id].value
        assert value is not None, f"{doc} quotes {number} for {target_id}, which has no value"
        assert math.isclose(float(number.replace(",", "")), value), (doc, number, target_id)
    for line in text.splitlines():
        # a line that cites a paper quotes it, unless it says its numbers are this project's
        if not _CITES.search(line) or re.search(r"this project's|measured", line):
            continue
        unmarked = _MARK.sub("", re.sub(r"[\d.]+\s*%?\s*<!--\s*measured\s*-->", "", line))
        assert not _QUOTE.findall(unmarked), f"{doc}: unmarked paper number in: {line.strip()}"


# --------------------------------------------------------------------------- models


def _densenet_bc_parameters(depth: int, growth: int, compression: float, inputs: int = 3):
    """Parameter count of DenseNet-BC written from the architecture's definition (Huang et
    al. 2017, the BC variant for 32 x 32 inputs), independently of nc.models.densenet."""
    layers = (depth - 4) // 6
    channels = 2 * growth
    total = inputs * channels * 3 * 3  # stem conv, no bias
    for block in range(3):
        for i in range(layers):
            c = channels + i * growth
            # BN(c) + 1x1 conv c -> 4k + BN(4k) + 3x3 conv 4k -> k
            total += 2 * c + c * 4 * growth + 2 * 4 * growth + 4 * growth * growth * 9
        channels += layers * growth
        if block < 2:
            reduced = int(math.floor(channels * compression))
            total += 2 * channels + channels * reduced  # BN + 1x1 conv
            channels = reduced
    return total + 2 * channels, channels  # final BN


def test_densenet_bc_150_12_builds_with_d_510_and_its_parameter_count():
    model = densenet_bc(150, 12)  # the defaults of the zoo's "densenet_bc"
    expected, width = _densenet_bc_parameters(150, 12, 0.5)
    assert width == 510 and model.feature_dim == 510
    assert count_parameters(model) == expected == 1_509_780  # the count docs record
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 72 small convolutions: threads cost more than they save
    try:
        with torch.no_grad():  # 8 x 8 keeps it fast: two 2x2 poolings leave 2 x 2
            features = model(torch.randn(2, 3, 8, 8))
    finally:
        torch.set_num_threads(threads)
    assert features.shape == (2, 510) and torch.isfinite(features).all()
    small = build("densenet_bc", seed=0, depth=40, growth_rate=4, compression=0.5)
    assert count_parameters(small) == _densenet_bc_parameters(40, 4, 0.5)[0]
    with pytest.raises(ValueError, match="depth"):
        build("densenet_bc", depth=4)


def test_densenet_recipe_resolves_to_the_model():
    config = load_config("cifar100_lt_r100_densenet_learnable_ce")
    assert config.model.name == "densenet_bc"
    assert config.model.options == {"depth": 150, "growth_rate": 12}
    assert "train.py:143-149" in recipe_source("cifar100_lt_r100_densenet_etf_dr")


def test_z21_modes():
    for head in ("learnable", "etf_dk"):
        plain = load_config(f"cifar10_resnet18_{head}")
        sota = load_config(f"cifar10_resnet18_{head}_sota")
        assert (plain.model.options["stem"], plain.data.augment) == ("imagenet", "none")
        assert (sota.model.options["stem"], sota.data.augment) == ("cifar", "crop_flip")
    etf = load_config("cifar10_resnet18_etf_dk_sota")
    assert etf.model.options["feature_dim"] == 10 and etf.head.kind == "etf"


def test_y22_settings():
    assert load_config("cifar100_lt_r200_etf_dr").model.options == {"width": 2}  # d = 128
    assert load_config("cifar10_lt_r200_etf_dr").model.options == {"width": 1}  # d = 64
    for method in ("ldam_drw", "cb_focal", "la", "bs", "crt", "lws", "tau_norm"):
        assert load_config(f"cifar100_lt_r100_{method}").model.options == {"width": 1}
        assert load_config(f"cifar100_lt_r100_{method}_d128").model.options == {"width": 2}
    tiered = load_config("tiered_imagenet_h_haframe")
    assert (tiered.optim.lr, tiered.optim.backbone_lr_scale) == (0.01, 1.0)
    imagenet = load_config("imagenet_lt_r50_etf_dr")
    assert (imagenet.data.augment, imagenet.data.crop_size) == ("random_resized_crop", 224)


def test_every_distinct_recipe_backbone_builds():
    """Each backbone the recipes name builds (the CIFAR / ImageNet ones cannot train here:
    no data); inputs follow the data set's channels."""
    seen = {}
    for name in available_recipes():
        config = load_config(name)
        key = (config.model.name, json.dumps(config.model.options, sort_keys=True))
        seen.setdefault(key, config.model)
    for model in seen.values():
        with torch.device("meta"):
            backbone = build(model.name, **model.options)
        assert backbone.feature_dim >= 1


# --------------------------------------------------------------------------- --print-config


def test_print_config_shows_origins_and_reads_back(capsys):
    code = main(
        ["train", "--print-config", "--config", "cifar100_lt_r100_ldam_drw", "optim.lr=0.05"]
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if "# <-" in line}
    assert lines["lr"].endswith("# <- override")
    assert lines["momentum"].endswith("# <- _bases/cifar_lt_schedule.yaml")
    assert lines["cosine"].endswith("# <- _bases/ldam_drw.yaml")
    assert lines["imbalance_ratio"].endswith("# <- generated: baselines (_families.yaml)")
    assert lines["nesterov"].endswith("# <- default")
    values = yaml.safe_load(out)
    assert values["optim"]["lr"] == 0.05 and values["name"] == "cifar100_lt_r100_ldam_drw"
    assert values["model"]["options"] == {"width": 1}


def test_print_config_says_what_the_loader_resolved(capsys, tmp_path):
    recipe = _write(
        tmp_path / "r.yaml", "base: digits_lt\nhead: {kind: learnable}\nloss: {name: ce}\n"
    )
    assert main(["train", "--print-config", "--config", str(recipe)]) == 0
    out = capsys.readouterr().out
    neck = next(line for line in out.splitlines() if line.strip().startswith("neck:"))
    assert "digits_lt.yaml (set to 'auto', resolved)" in neck and "neck: none" in neck
