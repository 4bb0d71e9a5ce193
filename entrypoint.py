#!/usr/bin/env python3
"""
The container ENTRYPOINT.

    docker run IMAGE migrate            -> bootstrap migrate
    docker run IMAGE wait-db            -> bootstrap wait-db
    docker run IMAGE --help             -> bootstrap --help
    docker run IMAGE node server.js     -> bootstrap run -- node server.js
    docker run IMAGE -- node server.js  -> bootstrap run -- node server.js
    docker run IMAGE --no-migrate node server.js -> bootstrap run --no-migrate node server.js
    docker run IMAGE --log-level debug migrate   -> bootstrap migrate --log-level debug

When the first argument is a bootstrap command (or --help/--version), it runs
that; otherwise every argument is the app, started with `run`: wait, migrate,
verify, then exec the app with the same PID. The dispatch itself is
`bootstrap._entry.dispatch`.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Dispatch and run bootstrap in this process (so `run` execs over this PID)."""
    try:
        import bootstrap  # noqa: F401 - installed, or else:
    except ModuleNotFoundError:  # running from a checkout: use its src/
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    from bootstrap._entry import container_main

    container_main()


if __name__ == "__main__":
    main()
