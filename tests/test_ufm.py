"""The unconstrained feature model simulator, its reproductions and ``neuralcollapse ufm``."""

from __future__ import annotations

import argparse
import json
import sys

import matplotlib.image
import pytest
import torch

from neuralcollapse.cli import main
from neuralcollapse.commands import ufm as ufm_command
from neuralcollapse.errors import ConfigError, UsageError
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.ufm import (
    UFMConfig,
    build_problem,
    dr_vs_ce,
    etf_optimum,
    haframe,
    load_ufm_config,
    minority_collapse,
    simulate,
    ufm_config_from_dict,
)
from neuralcollapse.ufm.reproductions import binary_tree

# The submodule, not the function of the same name re-exported by the package.
simulate_module = sys.modules["neuralcollapse.ufm.simulate"]

SMALL = dict(num_classes=4, dim=4, n_per_class=5, steps=200, log_every=50)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("num_classes", [5, 70])  # (K, N) and (N, K) logit layouts
@pytest.mark.parametrize("bias", [True, False])
def test_closed_form_gradients_match_autograd(loss: str, num_classes: int, bias: bool) -> None:
    config = UFMConfig(
        num_classes=num_classes,
        dim=8,
        n_per_class=3,
        loss=loss,
        bias=bias,
        lambda_W=0.03,
        lambda_H=0.02,
        lambda_b=0.01,
        dtype="float64",
    )
    problem = build_problem(config)
    objective = simulate_module._Objective(config, problem.labels, None, torch.float64)
    H = problem.H0.clone().requires_grad_(True)
    W = problem.W0.clone().requires_grad_(True)
    b = torch.linspace(-1, 1, num_classes, dtype=torch.float64).requires_grad_(True)
    b_arg = b if bias else None
    (objective.data_loss(H, W, b_arg) + objective.penalty(H, W, b_arg)).backward()
    with torch.no_grad():
        grads = objective.grads(H.detach(), W.detach(), None if b_arg is None else b.detach())
    expected = [H.grad, W.grad] + ([b.grad] if bias else [])
    assert len(grads) == len(expected)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_frame_loss_gradient_is_on_features_only() -> None:
    config = UFMConfig(**SMALL, head_kind="etf", loss="dr", dtype="float64")
    problem = build_problem(config)
    objective = simulate_module._Objective(config, problem.labels, None, torch.float64)
    grads = objective.grads(problem.H0, problem.W0, None)
    H = problem.H0.clone().requires_grad_(True)
    (objective.data_loss(H, problem.W0, None) + objective.penalty(H, problem.W0, None)).backward()
    assert len(grads) == 1
    torch.testing.assert_close(grads[0], H.grad)


# --------------------------------------------------------------------------- simulate


def test_history_records_every_log_step_and_the_end() -> None:
    result = simulate(UFMConfig(**{**SMALL, "steps": 120}))
    assert result.series("step") == [0, 50, 100, 120]
    entry = result.history[-1]
    for key in ("loss", "data_loss", "accuracy", "W_norm", "H_norm", "b_norm", "nc1", "nc3_zhu"):
        assert entry[key] is not None, key
    assert result.final.nc1 == pytest.approx(entry["nc1"])
    assert result.H.shape == (20, 4) and result.W.shape == (4, 4) and result.b.shape == (4,)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


@pytest.mark.parametrize(
    "optimizer, lr", [("gd", 1.0), ("sgd", 0.5), ("adam", 0.05), ("lbfgs", 1.0)]
)
def test_every_optimizer_lowers_the_objective(optimizer: str, lr: float) -> None:
    result = simulate(UFMConfig(**SMALL, optimizer=optimizer, lr=lr))
    assert not result.diverged
    assert result.history[-1]["loss"] < 0.8 * result.history[0]["loss"]


@pytest.mark.parametrize("loss", ["ce", "mse", "dr"])
def test_fixed_etf_features_collapse_whatever_the_loss(loss: str) -> None:
    config = UFMConfig(
        **{**SMALL, "steps": 1500}, head_kind="etf", loss=loss, optimizer="sgd", lr=0.5
    )
    result = simulate(config)
    assert result.final.nc1 < 1e-3
    assert result.history[-1]["accuracy"] == 1.0
    # A fixed frame is never changed.
    torch.testing.assert_close(result.W, build_problem(config).W0)


def test_spread_and_cosine_frame_run() -> None:
    config = UFMConfig(
        num_classes=6, dim=3, n_per_class=4, head_kind="spread", loss="cosine_frame",
        steps=300, spread_steps=200, optimizer="sgd", lr=0.5,
    )  # fmt: skip
    result = simulate(config)
    assert result.similarity.shape == (6, 6)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_long_tailed_and_explicit_counts() -> None:
    lt = build_problem(UFMConfig(num_classes=4, n_per_class=20, imbalance_ratio=10, profile="exp"))
    assert lt.counts.tolist() == [20, 9, 4, 2]
    explicit = build_problem(UFMConfig(num_classes=3, counts=[5, 2, 1]))
    assert explicit.labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 2]


def test_same_seed_same_result_other_seed_other_result() -> None:
    config = UFMConfig(**SMALL, optimizer="sgd", lr=0.5)
    first, second = simulate(config), simulate(config)
    assert torch.equal(first.H, second.H) and torch.equal(first.W, second.W)
    assert [e["loss"] for e in first.history] == [e["loss"] for e in second.history]
    other = simulate(UFMConfig(**SMALL, optimizer="sgd", lr=0.5, seed=1))
    assert not torch.equal(first.H, other.H)


def test_global_rng_and_thread_setting_are_left_alone() -> None:
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    simulate(UFMConfig(**SMALL, num_threads=1))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_a_start_of_the_wrong_size_is_refused() -> None:
    start = build_problem(UFMConfig(**SMALL))
    with pytest.raises(ValueError, match="build it with build_problem"):
        simulate(UFMConfig(**{**SMALL, "dim": 5}), start=start)


def test_float64_option() -> None:
    result = simulate(UFMConfig(**SMALL, dtype="float64"))
    assert result.H.dtype == torch.float64 and result.W.dtype == torch.float64


def test_divergence_is_reported_not_hidden() -> None:
    result = simulate(UFMConfig(**SMALL, loss="mse", optimizer="gd", lr=1e4))
    assert result.diverged
    assert result.history[-1]["step"] < SMALL["steps"]


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "values, match",
    [
        ({"loss": "hinge"}, "loss: expected one of"),
        ({"head_kind": "random"}, "head_kind: expected one of"),
        ({"optimizer": "rmsprop"}, "optimizer: expected one of"),
        ({"head_knd": "etf"}, "did you mean 'head_kind'"),
        ({"head_kind": "learnable", "loss": "dr"}, "loss='dr' needs a fixed head"),
        ({"head_kind": "learnable", "loss": "cosine_frame"}, "needs a fixed head"),
        ({"head_kind": "etf", "loss": "dr", "bias": True}, "set bias=false"),
        ({"num_classes": 3, "counts": [4, 4]}, "counts has 2 entries but num_classes=3"),
        ({"num_classes": 2, "counts": [4, 0]}, r"counts\[1\] must be >= 1, got 0"),
        ({"head_kind": "etf", "num_classes": 10, "dim": 5}, "dim >= num_classes - 1"),
        ({"head_kind": "spread", "dim": 1}, "head_kind='spread' needs dim >= 2"),
        ({"dim": "wide"}, "dim: expected int"),
        ({"lr": 0}, "lr must be > 0"),
        ({"lambda_H": -1}, "lambda_H must be >= 0"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
        ({"momentum": 1}, r"momentum must be in \[0, 1\), got 1.0"),
        ({"lr": float("inf")}, "lr must be a finite number > 0, got inf"),
        ({"head_gamma": float("nan")}, "head_gamma must be a finite number > 0, got nan"),
        ({"num_threads": 0}, "num_threads must be >= 1 or null, got 0"),
        ({"classifier": "etf"}, "`classifier` was renamed to `head_kind`"),
        ({"frame_scale": 2.0}, "`frame_scale` was renamed to `head_scale`"),
        ({"gamma": 3.0}, "`gamma` was renamed to `head_gamma`"),
    ],
)
def test_config_errors_name_the_key(values: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ufm_config_from_dict(values)


def test_python_built_configs_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="loss: expected one of"):
        simulate(UFMConfig(loss="hinge"))  # type: ignore[arg-type]


def test_a_ratio_that_empties_a_class_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="class counts: .*0 samples"):
        simulate(UFMConfig(num_classes=4, n_per_class=5, imbalance_ratio=10))


def test_haframe_without_a_hierarchy_is_an_error() -> None:
    with pytest.raises(ConfigError, match="needs a class hierarchy"):
        simulate(UFMConfig(num_classes=8, head_kind="haframe", dim=8))
    with pytest.raises(ConfigError, match="4 leaf classes but num_classes=8"):
        simulate(UFMConfig(num_classes=8, head_kind="haframe", dim=8), hierarchy=binary_tree(2))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        simulate(UFMConfig(num_classes=8, head_kind="haframe", hierarchy="/no/such.csv"))


def test_yaml_and_overrides(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("num_classes: 6\nhead_kind: etf\nloss: dr\nlr: 0.2\n")
    config = load_ufm_config(path, ["lr=0.05", "counts=[3, 3, 2, 2, 1, 1]"])
    assert (config.num_classes, config.head_kind, config.loss) == (6, "etf", "dr")
    assert config.lr == 0.05 and config.counts == [3, 3, 2, 2, 1, 1]
    assert not config.use_bias
    with pytest.raises(FileNotFoundError):
        load_ufm_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown key 'stepz'"):
        load_ufm_config(path, ["stepz=3"])


def test_example_config_loads_and_runs() -> None:
    from importlib.resources import files

    path = files("neuralcollapse") / "configs" / "ufm" / "imbalanced_etf_dr.yaml"
    config = load_ufm_config(str(path), ["steps=100", "log_every=50"])
    assert (config.head_kind, config.loss, config.imbalance_ratio) == ("etf", "dr", 10.0)
    result = simulate(config)
    assert result.labels.shape == (220,)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


# --------------------------------------------------------------------------- reproductions


def test_etf_optimum_small() -> None:
    rep = etf_optimum(seeds=2, num_classes=4, dim=4, n_per_class=5, steps=1500)
    assert rep.agrees
    assert rep.measured["max_nc1"] < 1e-3 and rep.measured["max_W_etf_distance"] < 1e-3
    assert len(rep.table) == 2


def test_etf_optimum_reports_failure_when_not_converged() -> None:
    rep = etf_optimum(seeds=1, num_classes=4, dim=4, n_per_class=5, steps=20)
    assert not rep.agrees
    assert rep.measured["max_nc1"] >= 1e-3


def test_minority_collapse_small() -> None:
    rep = minority_collapse(
        ratios=(1, 100), n_major=100, num_classes=4, dim=4, steps_learnable=3000, steps_fixed=800
    )
    learn = rep.measured["learnable_W_minor_cos"]
    fixed = rep.measured["etf_means_minor_cos"]
    assert learn[0] == pytest.approx(-1 / 3, abs=0.05)
    assert learn[1] > 0.9  # minority classifier rows collapse together
    assert fixed == pytest.approx([-1 / 3, -1 / 3], abs=0.01)  # ETF keeps them apart
    assert rep.agrees


def test_dr_vs_ce_reports_both_step_counts() -> None:
    rep = dr_vs_ce(num_classes=4, dim=4, n_max=10, imbalance_ratio=5, steps=600)
    ce, dr = rep.measured["ce_steps_to_nc1_target"], rep.measured["dr_steps_to_nc1_target"]
    assert ce is not None and dr is not None  # both collapse onto the fixed ETF
    assert rep.agrees == (dr < ce)
    assert [row["loss"] for row in rep.table] == ["ce", "dr"]
    assert set(rep.curves) == {"ce", "dr"}


def test_haframe_small_means_reproduce_the_similarity() -> None:
    rep = haframe(n_per_class=5, lambda_H=2e-2, steps=1500)
    assert rep.agrees
    assert rep.measured["cosine_frame_max_abs_error"] < 0.05
    heights = [row["lca_height"] for row in rep.table]
    assert heights == [1, 2, 3]
    targets = [row["target_S"] for row in rep.table]
    assert targets == sorted(targets, reverse=True)  # siblings closest


def test_binary_tree() -> None:
    tree = binary_tree(3)
    assert isinstance(tree, Hierarchy) and tree.num_classes == 8
    assert int(tree.lca_heights().max()) == 3


# --------------------------------------------------------------------------- CLI


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    ufm_command.add_parser(parser.add_subparsers(dest="command"))
    return parser


def _check_outputs(folder, name: str) -> dict:
    payload = json.loads((folder / f"{name}.json").read_text())
    image = matplotlib.image.imread(folder / f"{name}.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    return payload


def test_command_module_runs_a_reproduction(tmp_path, capsys) -> None:
    args = _command_parser().parse_args(
        ["ufm", "dr-vs-ce", "num_classes=4", "dim=4", "n_max=10", "imbalance_ratio=5",
         "steps=300", "--out", str(tmp_path)]
    )  # fmt: skip
    assert ufm_command.run(args) == 0
    payload = _check_outputs(tmp_path, "dr-vs-ce")
    assert list(payload)[:3] == ["expected", "measured", "agrees"]
    assert isinstance(payload["agrees"], bool)
    assert "steps_to_nc1" in capsys.readouterr().out


def test_cli_reproduction_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        ["ufm", "haframe", "--out", str(out), "n_per_class=5", "lambda_H=0.02", "steps=1000"]
    )
    assert code == 0
    payload = _check_outputs(out, "haframe")
    assert {"expected", "measured", "agrees"} <= set(payload)
    assert payload["measured"]["num_classes"] == 8
    assert "agrees:" in capsys.readouterr().out


def test_cli_haframe_with_a_hierarchy_file(tmp_path) -> None:
    edges = tmp_path / "tree.csv"
    edges.write_text("child,parent\na,x\nb,x\nc,y\nd,y\nx,root\ny,root\n")
    code = main(["ufm", "haframe", "--hierarchy", str(edges), "--out", str(tmp_path), "steps=50"])
    assert code == 0
    assert _check_outputs(tmp_path, "haframe")["measured"]["num_classes"] == 4


def test_cli_simulate_from_yaml(tmp_path, capsys) -> None:
    config = tmp_path / "ufm.yaml"
    config.write_text("num_classes: 4\ndim: 4\nn_per_class: 5\nsteps: 100\nlog_every: 25\n")
    code = main(["ufm", "simulate", "--config", str(config), "--out", str(tmp_path), "lr=0.2"])
    assert code == 0
    payload = _check_outputs(tmp_path, "simulate")
    assert payload["config"]["lr"] == 0.2
    assert [e["step"] for e in payload["history"]] == [0, 25, 50, 75, 100]
    assert "nc1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["ufm", "etf-optimum", "bogus=1"], "unknown parameter 'bogus'"),
        (["ufm", "simulate", "loss=hinge"], "loss: expected one of"),
        (["ufm", "simulate", "--config", "/no/such.yaml"], "does not exist"),
        (["ufm", "dr-vs-ce", "--config", "x.yaml"], "--config applies to 'simulate' only"),
        (["ufm", "haframe", "--hierarchy", "/no/tree.csv"], "does not exist"),
        (["ufm", "simulate", "classifier=etf"], "`classifier` was renamed to `head_kind`"),
        (["ufm", "etf-optimum", "seeds=two"], "seeds: expected int, got 'two'"),
        (["ufm", "etf-optimum", "seeds=0"], "seeds must be an integer >= 1"),
        (["ufm", "minority-collapse", "ratios=[]"], "ratios must be a non-empty list"),
        (["ufm", "simulate", "lr=.inf"], "lr must be a finite number > 0, got inf"),
    ],
)
def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, argv, message) -> None:
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_old_names_in_files_and_overrides_name_the_new_one(tmp_path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("num_classes: 4\nclassifier: etf\n")
    with pytest.raises(ConfigError, match="`classifier` was renamed to `head_kind`"):
        load_ufm_config(path)
    with pytest.raises(ConfigError, match="`frame_scale` was renamed to `head_scale`"):
        load_ufm_config(None, ["frame_scale=2"])
    with pytest.raises(TypeError):
        UFMConfig(classifier="etf")  # type: ignore[call-arg]


def test_yaml_1_2_numbers_and_words_in_ufm_configs(tmp_path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("lambda_H: 5e-4\nlr: .5\nbias: off\n")
    config = load_ufm_config(path, ["lambda_W=1e-3", "init_std=1E-1"])
    assert (config.lambda_H, config.lr, config.lambda_W, config.init_std) == (
        5e-4,
        0.5,
        1e-3,
        0.1,
    )
    assert config.bias is False  # a bool field reads on/off, yes/no as booleans


@pytest.mark.parametrize("kind", ["etf", "spread", "haframe"])
def test_fixed_heads_are_the_frames_of_the_frame_module(kind: str) -> None:
    from neuralcollapse.frames import (
        hierarchy_aware_frame,
        hierarchy_similarity,
        simplex_etf,
        spread_frame,
    )

    tree = binary_tree(2)
    config = UFMConfig(
        num_classes=4, dim=4, n_per_class=2, head_kind=kind, head_scale=2.5, head_gamma=1.5,
        spread_steps=30, seed=3,
    )  # fmt: skip
    problem = build_problem(config, hierarchy=tree)
    if kind == "etf":
        frame = simplex_etf(4, 4, seed=3, dtype=torch.float64)
    elif kind == "spread":
        frame = spread_frame(4, 4, seed=3, steps=30, dtype=torch.float64)
    else:
        frame = hierarchy_aware_frame(tree, gamma=1.5, dim=4, seed=3, dtype=torch.float64)
    assert torch.equal(problem.W0, (2.5 * frame).float())
    if kind == "haframe":
        expected = hierarchy_similarity(tree, gamma=1.5).matrix
    else:
        unit = torch.nn.functional.normalize(frame, dim=1)
        expected = unit @ unit.T
    assert torch.equal(problem.similarity, expected)


def test_haframe_reads_every_hierarchy_format(tmp_path) -> None:
    nested = tmp_path / "tree.json"
    nested.write_text(json.dumps(binary_tree(2).to_nested()))
    config = UFMConfig(
        num_classes=4, dim=4, n_per_class=2, head_kind="haframe", hierarchy=str(nested),
        loss="cosine_frame", steps=5, log_every=5,
    )  # fmt: skip
    assert simulate(config).similarity.shape == (4, 4)
    broken = tmp_path / "broken.csv"
    broken.write_text("child,parent\na\n")
    with pytest.raises(ConfigError, match="hierarchy: .*broken.csv"):
        simulate(UFMConfig(**{**config.to_dict(), "hierarchy": str(broken)}))
    with pytest.raises(UsageError, match="broken.csv"):
        haframe(hierarchy=str(broken), steps=5)


def test_reproduction_parameters_are_type_checked() -> None:
    kwargs = ufm_command._reproduction_kwargs(
        minority_collapse, ["ratios=[1, 1e2]", "lr=1", "num_classes=4"]
    )
    assert kwargs == {"ratios": (1.0, 100.0), "lr": 1.0, "num_classes": 4}
    with pytest.raises(ConfigError, match="n_major: expected int"):
        ufm_command._reproduction_kwargs(minority_collapse, ["n_major=1e3"])
    with pytest.raises(UsageError, match="unknown parameter 'hierarchy'"):
        ufm_command._reproduction_kwargs(haframe, ["hierarchy=x.csv"])


def test_plots_module_imports_no_matplotlib() -> None:
    import subprocess

    code = (
        "import sys, neuralcollapse.ufm.plots, neuralcollapse.commands.ufm; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
