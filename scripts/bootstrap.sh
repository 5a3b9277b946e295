#!/usr/bin/env bash
# Create (if missing) and fill the project's virtual environment.
#
#   scripts/bootstrap.sh [VENV_DIR] [PYTHON]
#
# torch is installed first, and only when the venv has none, so that the editable
# install below never pulls a different build:
#   * TORCH_SPEC set          -> exactly that requirement (e.g. "torch==2.5.1");
#   * an NVIDIA GPU is visible -> the newest torch (CUDA build) from the package index;
#   * otherwise (CPU only)     -> torch==$CPU_TORCH_VERSION (default 2.13.0), the CPU
#                                 build that this project's machines install from disk.
# TORCH_INDEX_URL, when set, is passed to pip as --index-url for that one install
# (use PyTorch's CPU wheel index on CPU-only machines that lack a local CPU wheel).
# EXTRAS (default "all,dev") chooses the optional extras of the editable install.
set -euo pipefail

venv="${1:-.venv}"
python="${2:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    if [ -n "${TORCH_SPEC:-}" ]; then
        spec="$TORCH_SPEC"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        spec="torch"
    else
        spec="torch==${CPU_TORCH_VERSION:-2.13.0}"
    fi
    echo "installing $spec"
    index_args=()
    if [ -n "${TORCH_INDEX_URL:-}" ]; then index_args=(--index-url "$TORCH_INDEX_URL"); fi
    "${pip[@]}" install -q "${index_args[@]}" "$spec"
fi

# The package with every runtime extra (digits data, image files, reports, TensorBoard,
# progress bar: what `make demo` uses) plus, through dev, the W&B, MLflow, Lightning and
# torchmetrics integrations and the test, lint and packaging tools (`make test`, `make
# lint`, `make dist`). torch is already installed here, and no extra asks for a newer one.
# EXTRAS overrides the list, e.g. EXTRAS=all for the command line alone. timm is no extra
# (its torchvision pins one torch release): install a matching torchvision, then timm.
"${pip[@]}" install -q -e ".[${EXTRAS:-all,dev}]"
