"""The unconstrained feature model simulator, its reproductions and ``neuralcollapse ufm``."""

from __future__ import annotations

import argparse
import json
import math
import sys

import matplotlib.image
import pytest
import torch

from neuralcollapse.cli import main
from neuralcollapse.commands import ufm as ufm_command
from neuralcollapse.errors import ConfigError, UsageError
from neuralcollapse.hierarchy import Hierarchy
from neuralcollapse.metrics import collapse_report
from neuralcollapse.ufm import (
    DR_VS_CE_QUICK,
    FeatureProblem,
    LRSweep,
    UFMConfig,
    build_feature_problem,
    build_problem,
    constrain_features,
    dr_vs_ce,
    etf_optimum,
    haframe,
    load_ufm_config,
    lr_sweep,
    minority_collapse,
    nc1_per_sample,
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
        ({"seed": -1}, r"seed must be in \[0, 4294967295\], got -1"),
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


# --------------------------------------------------------------------------- dr-vs-ce


def _sweep_problem(counts=(8, 8, 8, 8), **kwargs) -> FeatureProblem:
    return build_feature_problem(list(counts), dim=4, hidden=16, **kwargs)


def test_nc1_per_sample_matches_the_collapse_report() -> None:
    problem = _sweep_problem((6, 5, 3, 2))
    gen = torch.Generator().manual_seed(0)
    H = torch.randn(3, 16, 4, generator=gen, dtype=torch.float64)
    H[1] = 0.1 * H[1] + problem.frame[problem.labels]  # nearly collapsed
    shares = nc1_per_sample(H, problem.labels, problem.counts)
    assert shares.shape == (3, 16)
    for i in range(3):
        want = collapse_report(H[i], problem.labels).nc1
        assert float(shares[i].mean()) == pytest.approx(want, rel=1e-9)
    # Per-class NC1 weighted by the class shares n_k / N gives NC1 back.
    per_class = torch.zeros(4, dtype=torch.float64).index_add_(0, problem.labels, shares[0])
    per_class /= problem.counts
    weights = problem.counts.double() / problem.counts.sum()
    assert float(weights @ per_class) == pytest.approx(float(shares[0].mean()), rel=1e-12)
    bad = H.clone()
    bad[2, 0, 0] = math.nan
    assert torch.isnan(nc1_per_sample(bad, problem.labels, problem.counts)[2]).all()
    same = problem.frame[0].expand(16, 4)  # every class mean equal: NC1 undefined
    assert math.isinf(float(nc1_per_sample(same, problem.labels, problem.counts).mean()))


def test_feature_problem_subset_keeps_the_first_samples_of_each_class() -> None:
    problem = _sweep_problem((4, 4, 4))
    part = problem.subset([4, 2, 1])
    assert part.labels.tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert part.rows.tolist() == [0, 1, 2, 3, 4, 5, 8]
    assert torch.equal(part.H0, problem.H0[part.rows])
    assert torch.equal(part.inputs, problem.inputs[part.rows])
    assert part.net0 is problem.net0 and part.frame is problem.frame
    with pytest.raises(ValueError, match=r"one count in \[1, n_k\] per class"):
        problem.subset([5, 1, 1])
    same = _sweep_problem((4, 4, 4))
    assert torch.equal(same.H0, problem.H0) and torch.equal(same.net0[0], problem.net0[0])
    assert problem.inputs.shape == (12, 8)  # input_dim defaults to 2 d


def _fake_sweep(nc1_rows: list[list[float]], diverged: list[bool]) -> LRSweep:
    nc1 = torch.tensor(nc1_rows, dtype=torch.float64)
    lrs = [0.1 * 10**i for i in range(nc1.shape[1])]
    return LRSweep(
        model="free", loss="dr", constraint="ball", lrs=lrs, nc1=nc1,
        objective=torch.zeros_like(nc1), nc1_target=0.1, diverged=diverged,
        H=torch.zeros(len(lrs), 1, 1), norm_violation=0.0,
    )  # fmt: skip


def test_best_lr_rule_fewest_steps_then_lowest_final_nc1() -> None:
    # Run 1 reaches the target first (step 1); runs 2 and 3 reach it at step 2.
    sweep = _fake_sweep([[1, 1, 1, 1], [0.5, 0.05, 0.5, 0.5], [0.5, 0.01, 0.02, 0.03]], [False] * 4)
    assert sweep.steps_to_target == [None, 1, 2, 2]
    assert sweep.best == 1 and sweep.best_lr == sweep.lrs[1] and not sweep.at_grid_edge
    # A tie in steps goes to the lower final NC1.
    tie = _fake_sweep([[1, 1, 1], [0.5, 0.5, 0.5], [0.5, 0.05, 0.01]], [False] * 3)
    assert tie.steps_to_target == [None, 2, 2] and tie.best == 2 and tie.at_grid_edge
    # None reached: lowest final NC1; a failed run ranks last even when it "reached".
    none = _fake_sweep([[1, 1, 1], [0.9, 0.01, 0.5], [0.8, 0.5, 0.3]], [False, True, False])
    assert none.steps_to_target == [None, 1, None]
    assert none.best == 2 and none.final_nc1[1] == math.inf


def test_lr_sweep_picks_each_loss_its_own_lr_from_the_grid() -> None:
    problem = _sweep_problem()
    grid = [0.03, 0.3, 3.0, 30.0]
    for model in ("free", "shared"):
        for loss in ("dr", "ce"):
            sweep = lr_sweep(problem, loss=loss, lrs=grid, steps=40, model=model)
            assert sweep.lrs == grid and sweep.nc1.shape == (41, 4)
            assert sweep.best_lr in grid
            steps, final = sweep.steps_to_target, sweep.final_nc1
            best = sweep.best
            ok = [i for i in range(4) if not sweep.diverged[i]]
            reached = [i for i in ok if steps[i] is not None]
            if reached:
                assert steps[best] == min(steps[i] for i in reached)
            else:
                assert final[best] == min(final[i] for i in ok)
            if steps[best] is not None:  # the first step below the target
                assert sweep.nc1[steps[best], best] < sweep.nc1_target
                assert (sweep.nc1[: steps[best], best] >= sweep.nc1_target).all()


@pytest.mark.parametrize("model", ["free", "shared"])
def test_sphere_constraint_holds_after_every_step(model: str) -> None:
    problem = _sweep_problem((5, 5, 2, 2))
    budget = 2.5
    for loss in ("dr", "ce"):
        for steps in (1, 2, 5):  # the final features after each of the first steps
            sweep = lr_sweep(
                problem, loss=loss, lrs=[0.01, 1.0, 100.0], steps=steps, model=model,
                constraint="sphere", feature_budget=budget,
            )  # fmt: skip
            norms = sweep.H.norm(dim=-1)
            torch.testing.assert_close(
                norms, torch.full_like(norms, math.sqrt(budget)), rtol=0, atol=1e-6
            )
        # ...and the sweep's own check after every one of 30 steps.
        sweep = lr_sweep(
            problem, loss=loss, lrs=[0.01, 1.0, 100.0], steps=30, model=model,
            constraint="sphere", feature_budget=budget,
        )  # fmt: skip
        assert sweep.norm_violation < 1e-6 and not any(sweep.diverged)


def test_ball_constraint_holds_and_leaves_inner_features_alone() -> None:
    problem = _sweep_problem()
    sweep = lr_sweep(problem, loss="ce", lrs=[0.1, 10.0], steps=20, constraint="ball")
    assert sweep.norm_violation < 1e-12
    assert (sweep.H.norm(dim=-1) <= 1 + 1e-12).all()
    H = torch.tensor([[0.3, 0.4], [3.0, 4.0]], dtype=torch.float64)
    torch.testing.assert_close(
        constrain_features(H, 1.0, "ball"), torch.tensor([[0.3, 0.4], [0.6, 0.8]]).double()
    )
    torch.testing.assert_close(
        constrain_features(H, 2.0, "sphere"), torch.tensor([[1.2, 1.6], [1.2, 1.6]]).double()
    )
    assert constrain_features(H, 1.0, "none") is H


def test_imbalance_moves_shared_features_but_not_free_ones() -> None:
    """The reviewer's point: with free features (weight decay or the norm constraint) each
    feature moves alone, so dropping samples of some classes leaves every remaining
    feature's path unchanged; with one shared network it does not."""
    balanced = _sweep_problem((8, 8, 8, 8))
    imbalanced = balanced.subset([8, 8, 2, 2])
    lrs = [0.3, 3.0]
    settings = {
        "free_wd": {"model": "free", "constraint": "none", "weight_decay": 5e-3},
        "free": {"model": "free", "constraint": "ball"},
        "shared": {"model": "shared", "constraint": "ball"},
    }
    change: dict[str, list[float]] = {}
    for name, kwargs in settings.items():
        change[name] = []
        for loss in ("dr", "ce"):
            runs = [
                lr_sweep(p, loss=loss, lrs=lrs, steps=60, **kwargs) for p in (balanced, imbalanced)
            ]
            kept = runs[0].H[:, imbalanced.rows]
            change[name].append(float((kept - runs[1].H).norm(dim=-1).max()))
            if name != "shared":  # the shared NC1 changes (below); free NC1 may shift slightly
                continue
            per_class = [
                nc1_per_sample(run.H[1], p.labels, p.counts)
                for run, p in zip(runs, (balanced, imbalanced), strict=True)
            ]
            assert not torch.allclose(per_class[0][imbalanced.rows], per_class[1])
    assert max(change["free_wd"]) < 1e-10
    assert max(change["free"]) < 1e-10
    assert max(change["shared"]) > 1e-2


def test_dr_vs_ce_quick_result_fields_and_verdicts() -> None:
    rep = dr_vs_ce(**DR_VS_CE_QUICK)
    assert rep.name == "dr-vs-ce" and rep.scope and "Cannot test" in rep.scope
    measured = rep.measured
    grid = list(DR_VS_CE_QUICK["lrs"])
    assert measured["lr_grid"] == grid
    cells = ["free/balanced", "free/imbalanced", "shared/balanced", "shared/imbalanced"]
    assert list(measured["verdicts"]) == cells
    assert list(measured["control_verdicts"]) == ["free_wd/balanced", "free_wd/imbalanced"]
    assert measured["class_counts"] == {"balanced": [10] * 4, "imbalanced": [10, 10, 2, 2]}
    for key, cell in measured["cells"].items():
        dr, ce = cell["dr"], cell["ce"]
        for info in (dr, ce):
            assert info["lr"] in grid
            assert {"steps_to_target", "final_nc1", "minority_class_nc1", "lr_at_grid_edge"} <= set(
                info
            )
        # The verdict is computed from the measured steps: DR strictly fewer than CE.
        faster = dr["steps_to_target"] is not None and (
            ce["steps_to_target"] is None or dr["steps_to_target"] < ce["steps_to_target"]
        )
        assert cell["dr_faster"] == faster
        verdicts = (
            measured["verdicts"] if key in measured["verdicts"] else measured["control_verdicts"]
        )
        assert verdicts[key] == faster
        # The chosen lr is the sweep's best under the stated rule.
        sweep = measured["sweeps"][key]["dr"]
        assert dr["steps_to_target"] == sweep["steps_to_target"][grid.index(dr["lr"])]
    assert rep.agrees == all(measured["verdicts"].values())
    effect = measured["imbalance_effect"]
    assert effect["free"]["dr"]["max_feature_change"] < 1e-10
    assert effect["free_wd"]["ce"]["max_feature_change"] < 1e-10
    assert max(effect["shared"][loss]["max_feature_change"] for loss in ("dr", "ce")) > 1e-2
    assert [row["variant"] for row in rep.table][::2] == ["free_wd (control)", "free", "shared"]
    assert set(rep.curves) == {f"{v}/{d}" for v in ("free_wd", "free", "shared")
                               for d in ("balanced", "imbalanced")}  # fmt: skip


def test_dr_vs_ce_is_deterministic_for_a_seed() -> None:
    small = {**DR_VS_CE_QUICK, "steps": 20}
    first, second = dr_vs_ce(**small), dr_vs_ce(**small)
    assert first.measured == second.measured and first.curves == second.curves
    other = dr_vs_ce(**small, seed=1)
    assert other.measured["sweeps"] != first.measured["sweeps"]


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
         "steps=40", "lrs=[0.3, 3, 30]", "hidden=16", "--out", str(tmp_path)]
    )  # fmt: skip
    assert ufm_command.run(args) == 0
    payload = _check_outputs(tmp_path, "dr-vs-ce")
    assert list(payload)[:4] == ["expected", "measured", "agrees", "scope"]
    assert isinstance(payload["agrees"], bool)
    assert payload["settings"]["lrs"] == [0.3, 3.0, 30.0]
    out = capsys.readouterr().out
    assert "dr_steps" in out and "verdicts: free/balanced=" in out and "scope: " in out


def test_cli_dr_vs_ce_end_to_end(tmp_path) -> None:
    out = tmp_path / "dr"
    overrides = [f"{k}={json.dumps(list(v) if isinstance(v, tuple) else v)}"
                 for k, v in DR_VS_CE_QUICK.items()]  # fmt: skip
    assert main(["ufm", "dr-vs-ce", *overrides, "constraint=sphere", "--out", str(out)]) == 0
    payload = _check_outputs(out, "dr-vs-ce")
    assert payload["settings"]["constraint"] == "sphere"
    assert {"verdicts", "cells", "imbalance_effect", "sweeps", "lr_grid"} <= set(
        payload["measured"]
    )
    for cell in payload["measured"]["cells"].values():
        for loss in ("dr", "ce"):
            assert {"lr", "steps_to_target", "final_nc1"} <= set(cell[loss])


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
        (["ufm", "dr-vs-ce", "lrs=[]"], "lrs must hold at least one learning rate"),
        (["ufm", "dr-vs-ce", "lrs=[1, -1]"], "lrs must be > 0.0"),
        (["ufm", "dr-vs-ce", "constraint=cube"], "constraint: expected one of"),
        (["ufm", "dr-vs-ce", "n_max=5", "imbalance_ratio=10"], "dr-vs-ce: "),
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
