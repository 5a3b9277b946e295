"""Every code block of README.md runs, or says why it does not.

README.md is parsed into its code blocks (fenced ```python, ```bash, ```yaml and plain
```, and indented ones), each with its line and the heading it sits under. A block is
run by kind, section by section in README order, each section in a fresh temporary
folder (the working directory) and a fresh Python namespace:

* ``python``: executed as written, the blocks of one section in one namespace that starts
  with ``nc`` and ``torch`` (what "Quick start (Python)" imports) plus what the section
  takes as given (:data:`GIVEN_NAMES`: features, a model, loaders ... small stand-ins).
* ``bash`` (and indented command lines): every command that starts with
  ``neuralcollapse`` (or ``python -m neuralcollapse``) runs in this process through
  ``neuralcollapse.cli.main`` (``shlex``-split, comments stripped, ``\\`` continuations
  joined) and must exit 0, or the status its comment gives (``# exits 2``). Commands that
  train for more than a few seconds as written are shortened by appending arguments that
  keep their meaning (:func:`shortened`: one epoch, two seeds, fewer UFM steps); every
  other command (make, pip, git, torchrun ...) must be marked.
* ``yaml``: read with the project's loader (``neuralcollapse.config.load_yaml``); with
  the ``config`` marker also resolved as a config file (``load_config``).

Files a block reads but does not write (saved features, a class tree, a trained run at
the path README names) are made in the section's folder first (:data:`GIVEN_FILES`,
:data:`EXAMPLE_RUNS`); ``configs`` links to the checkout's recipes, as in a clone.

Markers: an HTML comment on the lines right before a block (blank lines may separate
them from an indented block), one per line:

* ``<!-- readme-test: skip REASON -->``: not run (a GPU, a data set that is not here, the
  network, installing software, or a test that already runs it: name it);
* ``<!-- readme-test: skip-line "TEXT" REASON -->``: the block runs except its commands
  containing TEXT; such a ``neuralcollapse train`` command still resolves its config
  (it runs with ``--print-config``, which reads no data);
* ``<!-- readme-test: output -->``: the block shows output or a listing, not code;
* ``<!-- readme-test: config -->``: a YAML block that is a config (resolved as well);
* ``<!-- readme-test: file NAME -->``: a Python block that is the file NAME (written into
  the section's folder, which is put on ``sys.path``), not code to execute.

Skipped blocks are reported as skipped tests with their reason; a meta-test checks that
no block is left without a verdict.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LIST_ITEM = re.compile(r"^\s*([-*+]|\d+[.)])\s")
KINDS = ("python", "bash", "yaml", "text")
ACTIONS = ("skip", "skip-line", "output", "config", "file")


# --------------------------------------------------------------------------- parsing
@dataclass(frozen=True)
class Block:
    """One code block of README.md."""

    line: int  # README line of the block's first code line (1-based)
    kind: str  # python, bash, yaml or text (plain fence or indented)
    code: str
    section: str  # the heading it sits under
    section_line: int
    markers: tuple[tuple[str, str], ...] = ()  # (action, argument)

    @property
    def id(self) -> str:
        return f"L{self.line}-{self.kind}"

    def marked(self, action: str) -> list[str]:
        return [argument for name, argument in self.markers if name == action]


def _markers_above(lines: list[str], index: int) -> tuple[tuple[str, str], ...]:
    """The readme-test markers on the lines right above ``lines[index]``."""
    found = []
    i = index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    while i >= 0 and MARKER.match(lines[i]):
        text = MARKER.match(lines[i]).group(1)
        action, _, argument = text.partition(" ")
        found.append((action, argument.strip()))
        i -= 1
    return tuple(reversed(found))


def _indented_block_starts(lines: list[str], i: int) -> bool:
    """An indented code block starts at ``lines[i]``: four spaces after a blank line, and
    the text above is not a list (whose continuation lines are indented too)."""
    if not lines[i].startswith("    ") or not lines[i].strip() or i == 0:
        return False
    if lines[i - 1].strip():
        return False
    j = i - 1
    while j >= 0 and (not lines[j].strip() or MARKER.match(lines[j])):
        j -= 1
    above = lines[j] if j >= 0 else ""
    return not above.startswith((" ", "\t")) and not LIST_ITEM.match(above)


def parse_readme(text: str) -> list[Block]:
    """Every code block of a Markdown text, in order."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section, section_line = "(top)", 0
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            start = i + 1
            end = start
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            assert end < len(lines), f"README.md:{i + 1}: code fence never closed"
            language = fence.group(1).lower()
            kind = {"py": "python", "sh": "bash", "shell": "bash", "console": "bash"}.get(
                language, language or "text"
            )
            kind = {"yml": "yaml"}.get(kind, kind)
            code = "\n".join(lines[start:end]) + "\n"
            markers = _markers_above(lines, i)
            blocks.append(Block(start + 1, kind, code, section, section_line, markers))
            i = end + 1
            continue
        heading = HEADING.match(line)
        if heading:
            section, section_line = heading.group(2), i + 1
        elif _indented_block_starts(lines, i):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            while not lines[end - 1].strip():
                end -= 1
            code = "\n".join(row[4:] for row in lines[i:end]) + "\n"
            markers = _markers_above(lines, i)
            # An indented block holds commands or output; a command marks it as bash.
            kind = "bash" if code.lstrip().startswith(("neuralcollapse ", "$ ")) else "text"
            blocks.append(Block(i + 1, kind, code, section, section_line, markers))
            i = end
            continue
        i += 1
    return blocks


def commands(block: Block) -> list[tuple[int, str]]:
    """The shell commands of a bash block: (README line, text), continuations joined."""
    found: list[tuple[int, str]] = []
    pending, first = "", 0
    for offset, row in enumerate(block.code.splitlines()):
        if not pending:
            first = block.line + offset
        if row.rstrip().endswith("\\"):
            pending += row.rstrip()[:-1] + " "
            continue
        text = (pending + row).strip()
        pending = ""
        if shlex.split(text, comments=True):
            found.append((first, text))
    return found


def _words(text: str) -> list[str]:
    return shlex.split(text, comments=True)


def _cli_args(words: list[str]) -> list[str] | None:
    """The arguments for ``neuralcollapse.cli.main`` when ``words`` runs the command line."""
    if words and Path(words[0]).name == "neuralcollapse":
        return words[1:]
    python = bool(words) and Path(words[0]).name.startswith("python")
    if python and words[1:3] == ["-m", "neuralcollapse"]:
        return words[3:]
    return None


def _skipped_by_line_marker(block: Block, text: str) -> str | None:
    for argument in block.marked("skip-line"):
        needle, reason = _line_marker(argument)
        if needle in text:
            return reason
    return None


def _line_marker(argument: str) -> tuple[str, str]:
    match = re.fullmatch(r'"([^"]+)"\s+(.+)', argument)
    assert match, f'skip-line marker needs "TEXT" REASON, got {argument!r}'
    return match.group(1), match.group(2)


BLOCKS = parse_readme(README.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- the plan
def verdict(block: Block) -> tuple[str, str]:
    """("run", what) or ("skip", reason) or ("output", reason) for a block."""
    if block.marked("skip"):
        return "skip", block.marked("skip")[0]
    if block.marked("output"):
        return "output", "shows output or a listing, not code"
    return "run", block.kind


SECTIONS: dict[tuple[int, str], list[Block]] = {}
for _block in BLOCKS:
    if verdict(_block)[0] == "run":
        SECTIONS.setdefault((_block.section_line, _block.section), []).append(_block)


def _section_id(key: tuple[int, str]) -> str:
    line, title = key
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:40]
    kinds = [b.kind for b in SECTIONS[key]]
    counts = "+".join(f"{kinds.count(k)}{k[:2]}" for k in KINDS if k in kinds)
    return f"L{line}-{slug}-{counts}"


# --------------------------------------------------------------------------- shortening
# Commands that train for more than a few seconds as written get these arguments appended
# (later values win: argparse keeps the last --seeds, the config the last KEY=VALUE). They
# keep what the command shows (the same configs, variants and outputs) at a smaller scale.
UFM_SHORTER = {
    "etf-optimum": ["seeds=2", "steps=300"],
    "minority-collapse": ["ratios=[1,100]", "steps_learnable=300", "steps_fixed=300"],
    "dr-vs-ce": ["steps=40", "lrs=[1.0,10.0]"],
    "haframe": ["steps=300"],
}


def shortened(args: list[str]) -> list[str]:
    """``neuralcollapse`` arguments made cheap: one training epoch (two on ``--resume``
    of a one-epoch run), two paired seeds for compare and reproduce, fewer UFM steps."""
    if not args or "--help" in args or "-h" in args:
        return args
    command = args[0]
    if command == "train" and "--print-config" not in args:
        return [*args, "train.epochs=2" if "--resume" in args else "train.epochs=1"]
    if command == "compare":
        return [*args, "--seeds", "2", "--set", "train.epochs=1"]
    if command == "reproduce" and "--table" not in args and "--plan" not in args:
        return [*args, "--seeds", "2", "--epochs", "1"]
    if command == "ufm" and len(args) > 1:
        return [*args, *UFM_SHORTER.get(args[1], [])]
    return args


def expected_status(text: str) -> int:
    """0, or the status the command's comment gives (``# exits 2``)."""
    comment = text.partition(" #")[2]
    match = re.search(r"\bexit(?:s| status| code)?\s+(\d+)", comment)
    return int(match.group(1)) if match else 0


# --------------------------------------------------------------------------- given
K_GIVEN, D_GIVEN, N_GIVEN = 10, 512, 200


def _measuring_given() -> dict[str, Any]:
    """'Measuring neural collapse': features of d = 512 in batches, a classifier, a model
    with a fixed-frame head ``fc`` that returns (logits, h), its loader, counts."""
    import neuralcollapse as nc

    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(N_GIVEN) % K_GIVEN
    means = 4.0 * torch.randn(K_GIVEN, D_GIVEN, generator=gen)
    features = means[labels] + torch.randn(N_GIVEN, D_GIVEN, generator=gen)
    W = torch.randn(K_GIVEN, D_GIVEN, generator=gen)
    b = torch.zeros(K_GIVEN)
    batches = [(features[i : i + 50], labels[i : i + 50]) for i in range(0, N_GIVEN, 50)]

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU())
            self.fc = nc.heads.FixedFrameHead(32, nc.frames.simplex_etf(K_GIVEN, 64, seed=0))

        def forward(self, x, return_features=False):
            return self.fc(self.backbone(x), return_features=return_features)

    model = Net()
    x = torch.randn(N_GIVEN, 20, generator=gen)
    loader = [(x[i : i + 50], labels[i : i + 50]) for i in range(0, N_GIVEN, 50)]
    return {
        "features": features,
        "labels": labels,
        "logits": features @ W.T + b,
        "W": W,
        "b": b,
        "batches": batches,
        "model": model,
        "loader": loader,
        "head": model.fc,
        "train_counts": nc.data.class_counts(100, K_GIVEN, imbalance_ratio=10),
    }


def _export_given() -> dict[str, Any]:
    """'Export a trained model': raw test images of the digits, as the data set stores them."""
    import neuralcollapse as nc

    pytest.importorskip("sklearn", reason="the digits need scikit-learn: pip install '.[digits]'")
    return {"raw_images": nc.data.load_digits().test.images[:32]}


# Heading -> what the section's Python blocks take as given.
GIVEN_NAMES: dict[str, Callable[[], dict[str, Any]]] = {
    "Measuring neural collapse (`nc.metrics`)": _measuring_given,
    "Export a trained model": _export_given,
}


def _feature_file(path: Path, classes: int = K_GIVEN, dim: int = 16) -> None:
    gen = torch.Generator().manual_seed(1)
    labels = torch.arange(4 * classes) % classes
    features = 3.0 * torch.randn(classes, dim, generator=gen)[labels]
    features += torch.randn(len(labels), dim, generator=gen)
    if path.suffix == ".npz":
        import numpy as np

        np.savez(path, features=features.numpy(), labels=labels.numpy())
    else:
        torch.save({"features": features, "labels": labels}, path)


def _head_file(path: Path) -> None:
    import neuralcollapse as nc

    head = nc.heads.FixedFrameHead(16, nc.frames.simplex_etf(K_GIVEN, 16, seed=0))
    torch.save(head.state_dict(), path)


def _tree_csv(path: Path) -> None:
    path.write_text("child,parent\nA,root\nB,root\na1,A\na2,A\nb1,B\nb2,B\nb3,B\n")


def _tree_json(path: Path) -> None:
    import json

    def node(name: str, *children: dict) -> dict:
        return {"name": name, "children": list(children)} if children else {"name": name}

    a = node("A", node("a1"), node("a2"))
    path.write_text(json.dumps(node("root", a, node("B", node("b1"), node("b2"), node("b3")))))


# File name -> how to make it; made in a section's folder when the section names it.
GIVEN_FILES: dict[str, Callable[[Path], None]] = {
    "features.pt": _feature_file,
    "feats.pt": _feature_file,
    "feats.npz": lambda p: _feature_file(p, classes=100),
    "W.pt": lambda p: torch.save(torch.randn(K_GIVEN, 16), p),
    "W.npy": lambda p: __import__("numpy").save(p, torch.randn(100, 16).numpy()),
    "b.pt": lambda p: torch.save(torch.zeros(100), p),
    "head.pt": _head_file,
    "tree.csv": _tree_csv,
    "tree.json": _tree_json,
}

# Run directories README's commands read (copies of one trained run, made once).
EXAMPLE_RUNS = re.compile(r"runs/(digits_lt-\d{8}-\d{6}|a|b|my-run)\b")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared machine: more threads only contend (the trainer's
    ``train.num_threads=auto`` makes the same choice)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, one_thread) -> Path:
    """One epoch of the default job: the run directory README's examples name."""
    pytest.importorskip("sklearn", reason="the default job needs scikit-learn ('[digits]')")
    from neuralcollapse.cli import main

    run_dir = tmp_path_factory.mktemp("readme") / "run"
    status = main(["train", "--run-dir", str(run_dir), "train.epochs=1", "log.report=false"])
    assert status == 0
    return run_dir


def _prepare_folder(folder: Path, blocks: list[Block], request) -> None:
    text = "".join(block.code for block in blocks)
    (folder / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    for name, make in GIVEN_FILES.items():
        if re.search(rf"(?<![\w/.-]){re.escape(name)}\b", text):
            make(folder / name)
    for name in sorted(set(EXAMPLE_RUNS.findall(text))):
        shutil.copytree(request.getfixturevalue("trained_run"), folder / "runs" / name)


# --------------------------------------------------------------------------- running
def _run_bash(block: Block, capsys) -> list[str]:
    """Run the block's commands; returns the ones it ran."""
    from neuralcollapse.cli import main

    ran = []
    for line, text in commands(block):
        words = _words(text)
        args = _cli_args(words)
        reason = _skipped_by_line_marker(block, text)
        if reason is not None:
            if args and args[:1] == ["train"]:
                # The config and overrides still resolve (no data is read).
                assert main([*args, "--print-config"]) == 0, f"README.md:{line}: {text}"
            continue
        assert args is not None, (
            f"README.md:{line}: {text!r} is not a neuralcollapse command: mark the block or "
            f'the line (<!-- readme-test: skip-line "TEXT" REASON -->) with a reason'
        )
        capsys.readouterr()
        try:
            status = main(shortened(args))
        except SystemExit as exc:  # --help and --version exit through argparse
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        assert status == expected_status(text), (
            f"README.md:{line}: {text!r} (run as {shortened(args)}) exited {status}:\n"
            f"{captured.err[-2000:]}"
        )
        ran.append(text)
    return ran


def _run_yaml(block: Block, folder: Path) -> None:
    from neuralcollapse.config import load_yaml
    from neuralcollapse.train import load_config

    value = load_yaml(block.code, source=f"README.md:{block.line}")
    assert isinstance(value, dict) and value, f"README.md:{block.line}: not a YAML mapping"
    if block.marked("config"):
        path = folder / f"readme_L{block.line}.yaml"
        path.write_text(block.code, encoding="utf-8")
        load_config(path)


def _registered() -> dict[str, set[str]]:
    from neuralcollapse import registry

    return {kind: set(getattr(registry, kind).names()) for kind in ("LOSSES", "FRAMES", "DATASETS")}


@pytest.mark.parametrize("key", list(SECTIONS), ids=[_section_id(k) for k in SECTIONS])
def test_readme_section_runs(key, tmp_path, monkeypatch, capsys, request, one_thread):
    import neuralcollapse as nc

    blocks = SECTIONS[key]
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    _prepare_folder(tmp_path, blocks, request)
    namespace: dict[str, Any] = {"__name__": "readme", "nc": nc, "torch": torch}
    if key[1] in GIVEN_NAMES:
        namespace.update(GIVEN_NAMES[key[1]]())
    before = _registered()
    modules = set(sys.modules)
    ran = 0
    try:
        for block in blocks:
            if block.kind == "python" and block.marked("file"):
                (tmp_path / block.marked("file")[0]).write_text(block.code, encoding="utf-8")
                compile(block.code, f"README.md:{block.line}", "exec")
            elif block.kind == "python":
                # Leading newlines: tracebacks give README's own line numbers.
                code = compile("\n" * (block.line - 1) + block.code, str(README), "exec")
                exec(code, namespace)
            elif block.kind == "bash":
                assert _run_bash(block, capsys) or block.marked("skip-line"), block.id
            elif block.kind == "yaml":
                _run_yaml(block, tmp_path)
            else:
                pytest.fail(f"README.md:{block.line}: no way to run a {block.kind!r} block")
            ran += 1
    finally:
        # A file block may register names (a loss from my_losses.py): leave no trace.
        from neuralcollapse import registry

        for kind, names in _registered().items():
            for name in names - before[kind]:
                getattr(registry, kind).unregister(name)
        for name in set(sys.modules) - modules:
            if getattr(sys.modules[name], "__file__", "") and str(tmp_path) in str(
                sys.modules[name].__file__
            ):
                del sys.modules[name]
    assert ran == len(blocks)


SKIPPED = [b for b in BLOCKS if verdict(b)[0] != "run"]


@pytest.mark.parametrize("block", SKIPPED, ids=[b.id for b in SKIPPED])
def test_readme_block_not_run(block):
    kind, reason = verdict(block)
    pytest.skip(f"README.md:{block.line} ({block.section}): {kind}: {reason}")


SKIPPED_LINES = [
    (line, text, reason)
    for block in BLOCKS
    if block.kind == "bash" and verdict(block)[0] == "run"
    for line, text in commands(block)
    if (reason := _skipped_by_line_marker(block, text)) is not None
]


@pytest.mark.parametrize(
    "line, text, reason", SKIPPED_LINES, ids=[f"L{x[0]}" for x in SKIPPED_LINES]
)
def test_readme_command_not_run(line, text, reason):
    pytest.skip(f"README.md:{line}: {text.split('  #')[0].strip()[:60]}: {reason}")


# --------------------------------------------------------------------------- meta
def test_every_block_is_run_or_skipped_with_a_reason():
    assert BLOCKS, "README.md has no code blocks?"
    executed: dict[str, int] = {}
    for block in BLOCKS:
        for action, argument in block.markers:
            assert action in ACTIONS, f"README.md:{block.line}: unknown marker {action!r}"
            if action in ("skip", "skip-line", "file"):
                assert argument, f"README.md:{block.line}: {action} needs a reason / name"
        assert block.kind in KINDS, f"README.md:{block.line}: unknown block kind {block.kind!r}"
        assert block.kind != "text" or verdict(block)[0] != "run", (
            f"README.md:{block.line}: a plain block: give it a language or mark it output"
        )
        kind, reason = verdict(block)
        if kind != "run":
            assert len(reason.split()) >= 3, f"README.md:{block.line}: reason too short"
            for path, names in _named_tests(reason):
                assert (ROOT / path).is_file(), f"README.md:{block.line}: {path} does not exist"
                source = (ROOT / path).read_text(encoding="utf-8")
                for name in names:
                    assert f"def {name}(" in source, f"README.md:{block.line}: {path}::{name}?"
            continue
        executed[block.kind] = executed.get(block.kind, 0) + 1
        if block.kind == "bash":
            lines = commands(block)
            for argument in block.marked("skip-line"):
                needle, reason = _line_marker(argument)
                assert any(needle in text for _, text in lines), (
                    f"README.md:{block.line}: skip-line {needle!r} matches no command"
                )
                assert len(reason.split()) >= 3
            for line, text in lines:
                runs = _cli_args(_words(text)) is not None
                assert runs or _skipped_by_line_marker(block, text), (
                    f"README.md:{line}: {text!r} is neither run nor skipped with a reason"
                )
    print("README blocks run:", executed)
    for kind in ("python", "bash", "yaml"):
        assert executed.get(kind, 0) > 0, f"no {kind} block of README.md is run"


def _named_tests(reason: str) -> list[tuple[str, list[str]]]:
    """The test files a reason names, each with the test functions named after it."""
    found = []
    for match in re.finditer(r"(tests/[\w/]+\.py)((?:[^/]|/(?!\w+\.py))*)", reason):
        found.append((match.group(1), re.findall(r"\b(test_\w+)", match.group(2))))
    return found


def test_parser_finds_fenced_indented_and_marked_blocks():
    text = (
        "# A\n\n<!-- readme-test: skip needs a CUDA GPU -->\n```python\nx = 1\n```\n\n"
        "## B\n\n- a list item\n\n    continued item text\n\nplain text:\n\n"
        "    neuralcollapse --help\n\n```\nlisting\n```\n"
    )
    blocks = parse_readme(text)
    assert [(b.kind, b.section, b.line) for b in blocks] == [
        ("python", "A", 5),
        ("bash", "B", 16),
        ("text", "B", 19),
    ]
    assert blocks[0].marked("skip") == ["needs a CUDA GPU"]
    assert commands(Block(1, "bash", "a \\\n  b  # c\n# only a comment\n", "s", 0)) == [
        (1, "a    b  # c")
    ]
    assert shortened(["compare", "x", "--seeds", "5"])[-4:] == [
        "--seeds",
        "2",
        "--set",
        "train.epochs=1",
    ]
    assert expected_status("neuralcollapse train x=1   # exits 2") == 2
