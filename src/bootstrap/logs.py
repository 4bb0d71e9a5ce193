"""
Logging: structlog to stderr, console on a TTY, JSON lines otherwise, never a secret.

`command.run_command` configures it as a command starts (from the flags and
variables as given), then again once the settings are validated.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from . import redact

SECRET_KEYS = frozenset(
    {"password", "sslpassword", "passwd", "dsn", "conninfo", "database_url", "url", "secret", "pgpassword"}
)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact.redact(value)
    if isinstance(value, Mapping):
        return {k: (redact.MASK if str(k).lower() in SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def scrub_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Processor: drop secret-named keys and mask passwords in every value."""
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = redact.MASK
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def scrub_rendered(_logger: Any, _method: str, rendered: Any) -> Any:
    """Last processor: mask anything password-shaped left in the rendered line."""
    return redact.redact(rendered) if isinstance(rendered, str) else rendered


class LiveLine:
    """One line on a terminal that each update rewrites (progress while waiting), masked like every line."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def update(self, text: str) -> None:
        """Show `text` in place of what the line said: one line, cut to the terminal's width (a wrapped or
        multi-line text could not be rewritten in place)."""
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns or 80  # 0: a terminal that did not say
        except (OSError, ValueError, AttributeError):
            width = 80
        line = " ".join(redact.redact(text).split())
        self.stream.write("\r\x1b[K" + (line if len(line) < width else line[:max(width - 2, 1)] + "…"))
        self.stream.flush()
        self.shown = True

    def end(self) -> None:
        """Clear the line, so the next log line starts on a clean one."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


_live_stream: TextIO | None = None  # logs go to a terminal, for people: progress may use one updating line


def live_line() -> LiveLine | None:
    """A line to update in place, when logs go to a terminal in console format; else None (say it in log lines)."""
    return LiveLine(_live_stream) if _live_stream is not None else None


def resolve_format(fmt: str, stream: TextIO) -> str:
    """`auto` is console on a TTY and JSON otherwise."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """
    Configure structlog for this process.

    Args:
        fmt: auto, json or console.
        level: debug, info, warning or error.
        stream: where lines go (stderr by default; stdout is the app's).
    """
    global _live_stream
    stream = stream or sys.stderr
    console = resolve_format(fmt, stream) == "console"
    _live_stream = stream if console and bool(getattr(stream, "isatty", lambda: False)()) else None
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any]
    if resolve_format(fmt, stream) == "json":
        renderer = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            scrub_secrets,
            structlog.processors.JSONRenderer(),
        ]
    else:
        colors = bool(getattr(stream, "isatty", lambda: False)())
        renderer = [
            scrub_secrets,
            structlog.dev.ConsoleRenderer(
                colors=colors, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    structlog.configure(
        processors=[*shared, *renderer, scrub_rendered],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """A bound logger with `context` attached to every line."""
    return structlog.get_logger().bind(**context)
