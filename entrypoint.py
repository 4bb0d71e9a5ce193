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
verify, then exec the app with the same PID.
"""

from __future__ import annotations

import os
import sys

COMMANDS = frozenset(
    {"wait-db", "migrate", "run", "status", "verify", "rollback", "baseline", "repair", "new", "adopt"}
)
TOP_LEVEL_OPTIONS = frozenset({"-h", "--help", "-V", "--version"})


def dispatch(args: list[str]) -> list[str]:
    """
    Turn the container's arguments into bootstrap's.

    Args:
        args: what follows the ENTRYPOINT (the image's CMD, or `docker run` arguments).

    Returns:
        The argument list for the bootstrap CLI:
        `migrate ...` -> as is; `--help`/`--version` -> as is;
        `-- CMD ...` -> `run -- CMD ...`; `--no-migrate CMD ...` -> `run --no-migrate CMD ...`;
        `CMD ...` -> `run -- CMD ...`; nothing -> `run` (a usage error: no app to run).
    """
    if not args:
        return ["run"]
    first = args[0]
    if first in COMMANDS or first in TOP_LEVEL_OPTIONS:
        return args
    if first == "--":
        return ["run", *args]
    if first.startswith("-"):
        # Flags first: for the bootstrap command that follows them, if one does
        # (every flag is accepted after the command's name), else run's, then the app.
        command_at = _after_flags(args)
        if command_at < len(args) and args[command_at] in COMMANDS:
            return [args[command_at], *args[:command_at], *args[command_at + 1 :]]
        return ["run", *args]
    return ["run", "--", *args]


def _after_flags(args: list[str]) -> int:
    """Index of the first argument that is neither a flag nor a flag's value."""
    from bootstrap.settings import OPTIONS

    takes_value = {o.flag for o in OPTIONS if o.kind != "bool"}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if args[i] in takes_value else 1
    return i


def main() -> None:
    """Dispatch and run bootstrap in this process (so `run` execs over this PID)."""
    try:
        import bootstrap  # noqa: F401 - installed, or else:
    except ModuleNotFoundError:  # running from a checkout: use its src/
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    args = dispatch(sys.argv[1:])
    from bootstrap.cli import main as bootstrap_main

    bootstrap_main(args)


if __name__ == "__main__":
    main()
