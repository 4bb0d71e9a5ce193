"""Secrets are masked in URLs, conninfo strings and known values."""

from __future__ import annotations

import pytest

from bootstrap import redact

SENTINEL = "S3ntinel-Pa55word"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"postgresql://app:{SENTINEL}@db/x", "postgresql://app:***@db/x"),
        (f"postgres://:{SENTINEL}@db", "postgres://:***@db"),
        (f"host=db password={SENTINEL} user=u", "host=db password=*** user=u"),
        (f"host=db password = '{SENTINEL} x' user=u", "host=db password = *** user=u"),
        ("postgresql://app@db/x", "postgresql://app@db/x"),
        (f"postgresql://app@db/x?sslpassword={SENTINEL}&sslmode=require",
         "postgresql://app@db/x?sslpassword=***&sslmode=require"),
        (f"host=db sslpassword={SENTINEL}", "host=db sslpassword=***"),
        (f"postgresql://app@db/x?password={SENTINEL}", "postgresql://app@db/x?password=***"),
    ],
)
def test_patterns_are_masked(text: str, expected: str) -> None:
    """URL and conninfo passwords are masked wherever they appear."""
    assert expected == redact.redact(text)


def test_registered_values_are_masked_anywhere() -> None:
    """A registered value (a password echoed back out of context, in a driver error) is masked anywhere."""
    redact.register_secret(SENTINEL)
    assert "error near ***!" == redact.redact(f"error near {SENTINEL}!")


def test_masking_a_rendered_json_line_keeps_it_json() -> None:
    """A password at the end of a quoted URL inside a JSON log line is masked and the line still parses."""
    import json

    line = json.dumps({"event": "bootstrap_failed",
                       "error": f'invalid URL "postgresql://u@[::1/x?password={SENTINEL}"',
                       "other": f"password={SENTINEL}\\tail"})
    masked = redact.redact(line)
    assert SENTINEL not in masked
    parsed = json.loads(masked)
    assert parsed["error"] == 'invalid URL "postgresql://u@[::1/x?password=***"'
    assert parsed["other"] == "password=***"
