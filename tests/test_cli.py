"""The ``neuralcollapse`` command line: lazy commands, overrides and error handling."""

from __future__ import annotations

import argparse
import errno
import subprocess
import sys

import pytest

from neuralcollapse import cli
from neuralcollapse.cli import COMMANDS, main
from neuralcollapse.commands import ufm as ufm_command
from neuralcollapse.errors import ConfigError, RunFailed, UsageError


def _fresh_python(code: str) -> str:
    """stdout of ``code`` run in a new interpreter (nothing imported beforehand)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


# --------------------------------------------------------------------------- lazy loading

_IMPORTED = (
    "import sys\n"
    "from neuralcollapse.cli import main\n"
    "try:\n"
    "    main({argv!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('MODULES', sorted(m for m in sys.modules if m == 'torch' or "
    "m.startswith('neuralcollapse.commands.') or m == 'matplotlib'))\n"
)


def _modules_after(argv: list[str]) -> tuple[str, list[str]]:
    out = _fresh_python(_IMPORTED.format(argv=argv))
    text, _, modules = out.rpartition("MODULES ")
    return text, eval(modules)  # a printed list of module names


def test_version_imports_no_torch_and_no_command() -> None:
    text, modules = _modules_after(["--version"])
    assert text.strip().startswith("neuralcollapse ")
    assert modules == []


def test_help_lists_every_command_without_importing_any() -> None:
    text, modules = _modules_after(["--help"])
    assert modules == []
    for name, help_text, _ in COMMANDS:
        assert name in text and help_text in text


def test_only_the_chosen_command_is_imported() -> None:
    _, modules = _modules_after(["ufm", "--help"])
    assert modules == ["neuralcollapse.commands.ufm"]


# What a help page must not pull in: the numerical stack, plotting, images, the trainer.
_HEAVY = ("torch", "numpy", "yaml", "matplotlib", "PIL", "neuralcollapse.train.trainer")

_HEAVY_IMPORTED = (
    "import sys\n"
    "from neuralcollapse.cli import main\n"
    "try:\n"
    "    main({argv!r})\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('HEAVY', sorted(m for m in {heavy!r} if m in sys.modules))\n"
)


def _heavy_after(argv: list[str]) -> list[str]:
    out = _fresh_python(_HEAVY_IMPORTED.format(argv=argv, heavy=_HEAVY))
    return eval(out.rpartition("HEAVY ")[2])  # a printed list of module names


@pytest.mark.parametrize("argv", [["--version"], ["--help"]])
def test_version_and_help_import_nothing_heavy(argv) -> None:
    assert _heavy_after(argv) == []


@pytest.mark.parametrize(
    ("command", "allowed"),
    [
        ("train", ()),
        ("eval", ()),
        ("export", ()),
        ("compare", ()),
        ("metrics", ()),
        ("ufm", ("yaml",)),  # its help lists the config keys
        ("report", ("numpy", "yaml")),  # the image formats come from the report package
        ("frame", ()),  # frame kinds, conventions: neuralcollapse._internal.names
        ("reproduce", ("numpy", "yaml")),  # the claim table, through the run directory module
    ],
)
def test_command_help_imports_only_what_it_shows(command, allowed) -> None:
    heavy = _heavy_after([command, "--help"])
    assert [m for m in heavy if m not in allowed] == []
    assert "matplotlib" not in heavy and "neuralcollapse.train.trainer" not in heavy


def test_python_dash_m_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "neuralcollapse", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.startswith("neuralcollapse ")


def test_every_command_module_declares_the_name_of_its_table_entry() -> None:
    import importlib

    for name, help_text, module_name in COMMANDS:
        assert help_text and "\n" not in help_text
        module = importlib.import_module(module_name)
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers()
        module.add_parser(subparsers)
        assert list(subparsers.choices) == [name]
        assert callable(module.run)


# --------------------------------------------------------------------------- overrides


@pytest.fixture
def captured(monkeypatch) -> list[argparse.Namespace]:
    """Replace ``ufm``'s run with one that records its arguments."""
    calls: list[argparse.Namespace] = []

    def record(args: argparse.Namespace) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(ufm_command, "run", record)
    return calls


def test_overrides_before_and_after_options_reach_the_command(captured) -> None:
    assert main(["ufm", "simulate", "lr=1e-3", "--out", "x", "steps=5", "loss=dr"]) == 0
    (args,) = captured
    assert args.overrides == ["lr=1e-3", "steps=5", "loss=dr"]
    assert str(args.out) == "x"


def test_option_values_containing_equals_stay_option_values(captured) -> None:
    assert main(["ufm", "simulate", "--out", "a=b", "steps=5"]) == 0
    assert str(captured[0].out) == "a=b" and captured[0].overrides == ["steps=5"]


def test_trailing_overrides_reach_compare_configs(monkeypatch) -> None:
    from neuralcollapse.commands import compare

    calls = []
    monkeypatch.setattr(compare, "run", lambda args: calls.append(args) or 0)
    assert main(["compare", "a.yaml", "optim.lr=0.1", "--seeds", "2", "train.epochs=3"]) == 0
    assert calls[0].configs == ["a.yaml", "optim.lr=0.1", "train.epochs=3"]


def test_compare_help_shows_the_launcher_options(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["compare", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for option in ("--jobs", "--launcher", "--ray-address", "--partition", "--gpus-per-run"):
        assert option in out
    assert "{local,ray,slurm}" in out


def test_unrecognised_words_are_one_line_usage_errors(captured, capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["ufm", "simulate", "--out", "x", "stray"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: stray" in err
    assert err.startswith("neuralcollapse ufm: error:")
    with pytest.raises(SystemExit):
        main(["ufm", "simulate", "--bogus"])
    assert not captured


def test_unknown_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bogus"])
    assert caught.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


# --------------------------------------------------------------------------- errors


def _raising(monkeypatch, exc: BaseException) -> None:
    def run(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(ufm_command, "run", run)


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (UsageError("--out 'x' exists and is not a folder"), 2, "--out 'x' exists"),
        (ConfigError("optim.lr must be > 0, got 0.0"), 2, "optim.lr must be > 0"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/x/y"),
            2,
            "cannot write /x/y: [Errno 28] No space left on device",
        ),
        (
            PermissionError(errno.EACCES, "Permission denied", "/root/z"),
            2,
            "cannot access /root/z: [Errno 13] Permission denied",
        ),
        (
            OSError(errno.EROFS, "Read-only file system", "/ro/f"),
            2,
            "cannot write /ro/f: [Errno 30] Read-only file system",
        ),
        (FileNotFoundError("config file 'a.yaml' does not exist"), 2, "'a.yaml' does not exist"),
        (RunFailed("the loss became NaN at epoch 3; the run directory keeps epoch 2"), 1, "NaN"),
    ],
)
def test_expected_errors_are_one_line(monkeypatch, capsys, exc, code, message) -> None:
    _raising(monkeypatch, exc)
    assert main(["ufm", "simulate"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert err.startswith("neuralcollapse ufm: error: ")


def test_interrupt_exits_130(monkeypatch, capsys) -> None:
    _raising(monkeypatch, KeyboardInterrupt())
    assert main(["ufm", "simulate"]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize("exc", [RuntimeError("a bug"), ValueError("a plain bug"), KeyError("k")])
def test_unexpected_exceptions_keep_their_traceback(monkeypatch, exc) -> None:
    _raising(monkeypatch, exc)
    with pytest.raises(type(exc)) as caught:
        main(["ufm", "simulate"])
    assert caught.value is exc


def test_config_errors_from_a_real_command(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1, 2\n")
    assert main(["ufm", "simulate", "--config", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: not valid YAML at line 2, column 1" in err


def test_describe_os_error_without_a_path() -> None:
    assert cli._describe_os_error(OSError("plain message")) == "plain message"
    renamed = OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b")
    assert cli._describe_os_error(renamed) == (
        "cannot access /a -> /b: [Errno 18] Invalid cross-device link"
    )
