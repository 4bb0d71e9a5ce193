"""
Logging: structlog to stderr, console on a TTY, JSON lines otherwise, never a secret.

`command.run_command` configures it as a command starts (from the flags and
variables as given), then again once the settings are validated.
"""

from __future__ import annotations

import logging
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
    stream = stream or sys.stderr
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
