"""
Process hygiene: signals before exec, and the exec itself.

Until `exec`, SIGTERM/SIGINT/SIGHUP/SIGQUIT stop bootstrap cleanly (the
running query is cancelled, the transaction rolled back, the lock released)
and it exits 128+N. At `exec` the app takes over the PID with default signal
dispositions, an empty signal mask, and the environment minus the migrator's
connection.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from .errors import CommandNotExecutableError, CommandNotFoundError, SignalReceived

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
# Python ignores these at start-up; exec would pass "ignored" on to the app.
PYTHON_IGNORED = tuple(s for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if s)


def _second_signal(signum: int, _frame: Any) -> None:
    # Already stopping: a second signal means "now".
    os._exit(128 + signum)


def _first_signal(signum: int, _frame: Any) -> None:
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, _second_signal)
    raise SignalReceived(signum)


def install_signal_handlers() -> None:
    """Make the first stop signal raise `SignalReceived` in the main thread."""
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, _first_signal)


def restore_signal_defaults() -> None:
    """Give the app what a shell would: default dispositions and no blocked signals."""
    for sig in (*HANDLED_SIGNALS, *PYTHON_IGNORED):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def resolve_command(name: str, environ: Mapping[str, str]) -> str:
    """
    Find the program `name` as a shell would.

    Returns:
        The path to execute.

    Raises:
        CommandNotFoundError: nothing by that name (exit 127).
        CommandNotExecutableError: found but not executable (exit 126).
    """
    if not name:
        raise CommandNotFoundError("command not found: ''", app=name)
    if "/" in name:
        return _check_interpreter(_check_executable(name, name), name)
    denied: str | None = None
    for folder in environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and os.access(candidate, os.X_OK):
            return _check_interpreter(candidate, name)
        denied = denied or candidate
    if denied is not None:
        raise CommandNotExecutableError(f"{name}: permission denied ({denied} is not executable)",
                                        app=name)
    raise CommandNotFoundError(f"{name}: command not found in PATH", app=name)


def _check_executable(path: str, name: str) -> str:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CommandNotFoundError(f"{name}: no such file", app=name) from None
    except OSError as exc:
        raise CommandNotExecutableError(f"{name}: {exc.strerror}", app=name) from None
    if stat.S_ISDIR(info.st_mode):
        raise CommandNotExecutableError(f"{name}: is a directory", app=name)
    if not os.access(path, os.X_OK):
        raise CommandNotExecutableError(f"{name}: permission denied (not executable)", app=name)
    return path


def _check_interpreter(path: str, name: str) -> str:
    """
    A script's `#!` interpreter must exist too: exec would fail after bootstrap said it was done
    (exit 127, as shells report "required file not found").
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return path  # executable but unreadable (a binary with mode 111): exec decides
    if not head.startswith(b"#!"):
        return path
    line = head[2:].split(b"\n", 1)[0].split()
    interpreter = line[0].decode(errors="replace") if line else ""
    if interpreter.startswith("/") and not (os.path.isfile(interpreter) and os.access(interpreter, os.X_OK)):
        raise CommandNotFoundError(f"{name}: its interpreter {interpreter} (its #! line) is not found",
                                   app=name, interpreter=interpreter)
    return path


def exec_app(argv: Sequence[str], environ: Mapping[str, str]) -> NoReturn:
    """
    Replace this process with the app: same PID, its signals, its exit status.

    Args:
        argv: the command and its arguments.
        environ: the app's environment.

    Raises:
        CommandNotFoundError / CommandNotExecutableError: exec refused.
    """
    path = resolve_command(argv[0], environ)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    restore_signal_defaults()
    try:
        try:
            os.execve(path, list(argv), dict(environ))
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
            # An executable text file without "#!": shells run it with sh (POSIX).
            os.execve("/bin/sh", ["/bin/sh", path, *argv[1:]], dict(environ))
    except OSError as exc:
        install_signal_handlers()
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise CommandNotFoundError(f"{argv[0]}: {exc.strerror}", app=argv[0]) from None
        raise CommandNotExecutableError(f"{argv[0]}: {exc.strerror}", app=argv[0]) from None
