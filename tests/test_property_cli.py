"""Property tests of the command line's error contract: whatever strings and numbers a user
types as ``train`` overrides, and whatever arrays or bytes a ``metrics`` input holds, the
command exits 0 or 2, and a failure is exactly one stderr line, never a traceback.

Deterministic: the suite's hypothesis profile (tests/conftest.py) derandomizes every
example; the example counts bound the run time to seconds. The command line runs
in-process through :func:`neuralcollapse.cli.main`.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralcollapse.cli import main
from neuralcollapse.train.config import config_to_dict, load_config
from neuralcollapse.train.recipes import resolve_config_path


def _run(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with its exit code (argparse's SystemExit included) and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def _assert_contract(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


def _keys(values: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, value in values.items():
        key = f"{prefix}{name}"
        keys.append(key)
        if isinstance(value, dict):
            keys += _keys(value, f"{key}.")
    return keys


KNOWN_KEYS = sorted(_keys(config_to_dict(load_config(resolve_config_path("digits_lt")))))

# What users type, and what YAML makes of it: numbers of every size, words YAML 1.1 reads
# as booleans, flow collections (closed or not), anchors, tags and plain text.
YAML_WORDS = st.sampled_from(
    [
        "",
        "null",
        "~",
        "yes",
        "off",
        "1e-3",
        "1e400",
        "-.inf",
        ".nan",
        "0x10",
        "0o7",
        "1_000",
        "[1, 2]",
        "[",
        "{a: 1}",
        "{",
        "}",
        "&a [*a]",
        "!!python/object/apply:os.system ['true']",
        "!!binary aGk=",
        "2**70",
        "- a",
        "a: b: c",
        "'quoted'",
        '"unclosed',
        "%YAML 1.2",
        "\t",
        "../../x",
        "/etc/passwd",
        "digits_lt",
        "timm:",
    ]
)
VALUES = st.one_of(
    YAML_WORDS,
    st.integers().map(str),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
    st.lists(st.integers(-3, 300), max_size=4).map(str),
)
# Mostly real keys (their values are what is checked), some near misses and noise.
KEYS = st.one_of(
    st.sampled_from(KNOWN_KEYS),
    st.sampled_from(KNOWN_KEYS),
    st.sampled_from(KNOWN_KEYS),
    st.sampled_from(KNOWN_KEYS).map(lambda key: key + ".x"),
    st.text(alphabet="abcxyz._-0", min_size=1, max_size=10),
)


@settings(max_examples=250)
@given(st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3))
def test_train_overrides_exit_0_or_2_with_one_line(pairs):
    overrides = [f"{key}={value}" for key, value in pairs]
    code, out, err = _run(["train", "--print-config", *overrides])
    _assert_contract(code, err)
    if code == 0:
        assert out and err == ""


@settings(max_examples=60)
@given(
    st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=2),
    st.sampled_from([None, "missing.yaml", "digits_lt", "nosuch_recipe"]),
)
def test_train_config_and_overrides_exit_0_or_2(pairs, config):
    args = ["train", "--print-config"]
    if config is not None:
        args += ["--config", config]
    code, _, err = _run([*args, *(f"{k}={v}" for k, v in pairs)])
    _assert_contract(code, err)


DTYPES = st.sampled_from(
    ["float64", "float32", "float16", "int64", "int8", "uint8", "bool", "complex64", "<U2", "S1"]
)


@st.composite
def arrays(draw, rows: int | None = None) -> np.ndarray:
    """Arrays of any small shape and dtype, with extreme or non-finite values sometimes."""
    ndim = draw(st.integers(0, 3))
    shape = [draw(st.integers(0, 6)) for _ in range(ndim)]
    if rows is not None and ndim:
        shape[0] = rows
    dtype = np.dtype(draw(DTYPES))
    size = int(np.prod(shape)) if shape else 1
    if dtype.kind in "US":
        values = np.array(draw(st.lists(st.text("ab", max_size=2), min_size=size, max_size=size)))
    else:
        numbers = st.one_of(
            st.integers(-(2**7), 2**7),
            st.floats(allow_nan=True, allow_infinity=True, width=16),
            st.sampled_from([0.0, 1e30, -1e30]),
        )
        raw = np.array(draw(st.lists(numbers, min_size=size, max_size=size)), dtype=np.float64)
        with np.errstate(all="ignore"):
            values = np.nan_to_num(raw) if dtype.kind in "biu" else raw
            values = values.astype(dtype)
    return values.reshape(shape)


@st.composite
def metrics_inputs(draw) -> dict:
    """Valid features and labels with, mostly, one thing made wrong."""
    rows, dim = draw(st.integers(0, 40)), draw(st.integers(1, 6))
    classes = draw(st.integers(1, 5))
    # The values themselves from a drawn seed: hypothesis would shrink drawn floats to zeros.
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    features = rng.normal(size=(rows, dim)).astype(draw(st.sampled_from(["float32", "float64"])))
    labels = rng.integers(0, classes, size=rows)
    fault = draw(
        st.sampled_from(
            ["none", "none", "features", "labels", "nan", "big label", "drop", "bytes", "wide"]
        )
    )
    if fault == "features":
        features = draw(arrays(rows))
    elif fault == "labels":
        labels = draw(arrays(rows))
    elif fault == "nan" and features.size:
        features.flat[draw(st.integers(0, features.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 3e38])
        )
    elif fault == "big label" and rows:
        labels = labels.astype(np.int64)
        labels[0] = draw(st.sampled_from([-1, 2**31, 2**62, 999_999_999]))
    elif fault == "wide":
        features = np.ones((rows, 50_000), dtype=np.float16)  # d far above the rows
    entries = {"features": features, "labels": labels}
    if fault == "drop":
        del entries[draw(st.sampled_from(["features", "labels"]))]
    classifier = draw(
        st.one_of(
            st.none(),
            st.none(),
            arrays(),
            st.binary(max_size=20),
            st.just(np.eye(max(classes, 2), dim, dtype=np.float32)),
        )
    )
    return {
        "entries": entries,
        "suffix": draw(st.sampled_from([".npz", ".npz", ".npz", ".pt", ".pt", ".pt", ".npy"])),
        "raw": draw(st.binary(max_size=40)) if fault == "bytes" else None,
        "classifier": classifier,
        "num_classes": draw(
            st.one_of(st.none(), st.none(), st.integers(-2, 8).map(str), st.just(str(2**40)))
        ),
        "global_mean": draw(st.sampled_from(["weighted", "balanced"])),
    }


def _write(path: Path, entries: dict[str, np.ndarray]) -> None:
    if path.suffix == ".pt":
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in entries.items()}, path)
    elif path.suffix == ".npy":
        np.save(path, next(iter(entries.values())))
    else:
        np.savez(path, **entries)


@settings(max_examples=150)
@given(metrics_inputs())
def test_metrics_inputs_exit_0_or_2_with_one_line(case):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"f{case['suffix']}"
        entries = case["entries"]
        if case["raw"] is not None or not entries:
            path.write_bytes(case["raw"] or b"")
        elif path.suffix == ".pt" and any(v.dtype.kind in "USO" for v in entries.values()):
            path.write_bytes(b"text is no tensor")
        else:
            _write(path, entries)
        argv = ["metrics", str(path), "--global-mean", case["global_mean"]]
        classifier = case["classifier"]
        if classifier is not None:
            target = Path(folder) / "w.npy"
            if isinstance(classifier, bytes):
                target.write_bytes(classifier)
            else:
                np.save(target, classifier)
            argv += ["--classifier", str(target)]
        if case["num_classes"] is not None:
            argv += ["--num-classes", case["num_classes"]]
        code, _, err = _run(argv)
        _assert_contract(code, err)


def test_usage_errors_fold_typed_line_breaks_into_one_line():
    # argparse echoes unrecognised arguments as typed; str.splitlines breaks on \x1e and
    # \n alike (found by the property test above on a clean clone)
    for argv in (["train", "-=\x1e"], ["train", "--bogus\nflag"], ["train", "-x\u2028y"]):
        code, _, err = _run(argv)
        assert code == 2
        assert len(err.strip().splitlines()) == 1, err
        assert err.startswith("neuralcollapse train: error: ")
