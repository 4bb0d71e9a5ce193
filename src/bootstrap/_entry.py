"""
The process: the console script, the container ENTRYPOINT's dispatch, and the
exit code.

`bootstrap --version` answers before any library is loaded. `dispatch` turns
a container's arguments into bootstrap's (`docker run IMAGE node server.js`
runs the app; `docker run IMAGE migrate` runs a command). `run_cli` runs the
click group, reports usage errors (as JSON lines off a TTY) and exits,
flushing stdio first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import click

COMMANDS = frozenset(
    {"wait-db", "migrate", "run", "status", "verify", "rollback", "baseline", "repair", "new", "adopt",
     "wait-migrated", "lint", "up", "down", "create"}
)
TOP_LEVEL_OPTIONS = frozenset({"-h", "--help", "-V", "--version"})


def main() -> None:
    """`bootstrap` on the command line."""
    _version_fast_path(sys.argv[1:])
    run_cli(fast_exit=True)


def container_main(argv: Sequence[str] | None = None) -> NoReturn:
    """The image's ENTRYPOINT: dispatch, then run in this process (so `run` execs over this PID)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _version_fast_path(args)
    run_cli(dispatch(args), fast_exit=True)


def _version_fast_path(args: Sequence[str]) -> None:
    """`--version` answers before any library is loaded."""
    if list(args) in (["--version"], ["-V"]):
        from . import __version__

        sys.stdout.write(f"bootstrap {__version__}\n")
        sys.stdout.flush()
        os._exit(0)


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
    from .options import OPTIONS

    takes_value = {o.flag for o in OPTIONS if o.kind != "bool"}
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if args[i] in takes_value else 1
    return i


def _report_usage_error(exc: click.ClickException, args: Sequence[str]) -> None:
    """
    Show a usage error: click's text on a console, one `bootstrap_failed`
    JSON line when logs are JSON (so every stderr line stays parseable).
    """
    from .logs import configure_logging, get_logger, resolve_format
    from .options import parse_choice
    from .settings import LOG_FORMATS

    fmt = os.environ.get("BOOTSTRAP_LOG_FORMAT", "auto")
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--log-format" and i + 1 < len(args):
            fmt = args[i + 1]
        elif arg.startswith("--log-format="):
            fmt = arg.split("=", 1)[1]
    try:
        fmt = resolve_format(parse_choice(fmt, LOG_FORMATS), sys.stderr)
    except ValueError:
        fmt = resolve_format("auto", sys.stderr)
    if fmt != "json":
        import io

        from .redact import redact

        shown = io.StringIO()
        exc.show(file=shown)  # usage, hint and message, as click prints them: masked like every other line
        sys.stderr.write(redact(shown.getvalue()))
        return
    configure_logging("json")
    ctx = getattr(exc, "ctx", None)
    usage = ctx.get_usage() if ctx is not None else ""
    get_logger().error("bootstrap_failed", error=exc.format_message(), exit_code=exc.exit_code,
                       usage=usage.replace("\n", " ").strip() or None)


def run_cli(argv: Sequence[str] | None = None, *, fast_exit: bool = False) -> NoReturn:
    """
    Run the CLI and exit with its code.

    Args:
        argv: the arguments (default: the process's).
        fast_exit: end with os._exit once output is flushed and connections are
            closed, skipping the interpreter's teardown of every loaded module
            (~60-80 ms after psycopg, on every container start). The console
            script does; callers embedding the CLI don't.
    """
    import click

    from .cli import cli
    from .errors import ExitCode, SignalReceived
    from .handoff import install_signal_handlers

    install_signal_handlers()
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        rv = cli.main(args=args, prog_name="bootstrap", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        _report_usage_error(exc, args)
        code = exc.exit_code
    except click.exceptions.Abort as exc:
        # click turns a KeyboardInterrupt (SignalReceived is one) raised outside a command's
        # own handling, say while a library loads, into Abort: still 128+N.
        cause = exc.__cause__ or exc.__context__
        code = cause.exit_code if isinstance(cause, SignalReceived) else int(ExitCode.INTERNAL)
    except SignalReceived as exc:
        code = exc.exit_code
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # Reader went away (`bootstrap status | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if fast_exit:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)
    sys.exit(code)
