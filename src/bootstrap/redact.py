"""
Keep secrets out of every line bootstrap writes.

Two layers, like dbmate's `redactLogString`:

1. Patterns: the password part of any `scheme://user:password@` URL and any
   `password=...` conninfo pair is masked wherever it appears.
2. Known values: the password libpq parsed out of the connection string
   (`bootstrap.pg.connection.parse_conninfo`, the one parse), whole connection
   strings, PGPASSWORD and other secret values are registered here and masked
   verbatim wherever they appear.

This module imports nothing from the package.
"""

from __future__ import annotations

import re
import threading

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")
# Looser: "user:password@" even in a malformed URL ("postgresql//u:pw@db").
_USERINFO = re.compile(r"(?P<head>(?:^|[/\s\"'])[^\s:/@\"']*:)(?P<pw>[^@\s/\"']+)(?P<at>@)")
# `password=` and `sslpassword=` (the client key's passphrase), in conninfo strings
# and URL query strings. An unquoted value ends at a space, a quote, `&` or a
# backslash that is not itself escaped: the pattern also runs over rendered JSON
# lines, where the `\` of an escaped quote after the value must survive.
_KV_PASSWORD = re.compile(
    r"(?P<head>\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|(?:[^\s'\"\\&]|\\\\)+)", re.IGNORECASE
)
# Shorter values would mask ordinary words; a password that short is no secret.
_MIN_SECRET_LEN = 3

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """
    Remember a value that must never be printed.

    Args:
        value: a password or a whole connection string; empty values are ignored.
    """
    global _pattern
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a URL is masked whole before its password is.
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_secrets() -> None:
    """Forget every registered value (tests start from a clean slate)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def redact(text: str) -> str:
    """
    Mask every known secret and every password-shaped part of `text`.

    Args:
        text: any string about to be printed.

    Returns:
        The same text with secrets replaced by `***`.
    """
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + m.group("at"), text)
        text = _USERINFO.sub(lambda m: m.group("head") + MASK + m.group("at"), text)
    if "assword" in text or "ASSWORD" in text:
        text = _KV_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    return text
