# Sourced by scripts/demo and scripts/test: make .venv with bootstrap and its test tools.
# Re-installs only when pyproject.toml changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

find_python() {
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "bootstrap needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

VENV=.venv
STAMP="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP" ]; then
    PY="$(find_python)"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PY" -m venv "$VENV" || {
            echo "could not create a virtual environment; on Debian/Ubuntu: apt-get install python3-venv" >&2
            exit 1
        }
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
    rm -f "$VENV"/.installed-*
    touch "$STAMP"
fi
export PATH="$PWD/$VENV/bin:$PATH"
