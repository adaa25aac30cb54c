# Sourced by scripts/run and scripts/test: a project virtualenv with Python ≥ 3.11.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$candidate"; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "Python 3.11 or newer is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
install_requirements() {
  # Reinstall only when the requirement files changed since the last install.
  local stamp=".venv/.installed-$(cat "$@" requirements.txt | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -r "$1"
    touch "$stamp"
  fi
}
