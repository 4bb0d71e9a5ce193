"""The connection string, parsed once by libpq: the target logs name, Prisma's parameters, and no secret in errors."""

from __future__ import annotations

import pytest

from bootstrap import redact
from bootstrap.errors import ConfigError, ExitCode
from bootstrap.pg.conninfo import parse_conninfo
from bootstrap.settings import load_settings

SENTINEL = "S3ntinel-Pa55word"


def _parse(dsn: str, **env: str):  # type: ignore[no-untyped-def]
    return parse_conninfo(load_settings({}, {"DATABASE_URL": dsn, **env}))


@pytest.mark.parametrize(
    ("dsn", "env", "expected"),
    [
        (f"postgresql://app:{SENTINEL}@db.internal:6432/orders", {}, ("db.internal", "6432", "orders", "app")),
        (f"host=h port=7 dbname=d user=u password={SENTINEL}", {}, ("h", "7", "d", "u")),
        ("host=pg", {"PGUSER": "me"}, ("pg", "5432", "me", "me")),
        ("postgresql://[::1]:5433/x?user=v", {}, ("::1", "5433", "x", "v")),
        (f"postgresql://u:p?q{SENTINEL}@db/x", {}, ("db", "5432", "x", "u")),
    ],
    ids=["url", "key-value", "pg-variables", "ipv6-query-user", "question-mark-in-password"],
)
def test_target_is_what_libpq_parsed(dsn: str, env: dict[str, str], expected: tuple[str, ...]) -> None:
    """Logs name host, port, database and user as libpq resolves them; never the password."""
    target = _parse(dsn, **env).target
    assert expected == (target.host, target.port, target.dbname, target.user)
    assert SENTINEL not in repr(target)


def test_the_parsed_password_is_masked_everywhere() -> None:
    """The password libpq found is masked wherever it appears, even decoded from percent-encoding."""
    _parse("postgresql://app:P%40ss-" + SENTINEL + "@db/x")
    assert "driver said: *** is wrong" == redact.redact(f"driver said: P@ss-{SENTINEL} is wrong")


def test_prisma_parameters_are_accepted_and_dropped() -> None:
    """Prisma's own URL parameters are removed before libpq reads the URL; libpq's own stay."""
    info = _parse("postgresql://u:pw@db:5432/app?schema=public&connection_limit=5&sslmode=disable"
                  "&pool_timeout=10&pgbouncer=true")
    assert ("schema", "connection_limit", "pool_timeout", "pgbouncer") == info.ignored
    assert "disable" == info.params["sslmode"]
    assert "schema" not in info.dsn


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://app:P1@{SENTINEL}@db.internal/app",
        f"postgresql://u:s3cr3t/{SENTINEL}@db.internal/app",
        f"postgresql://u:{SENTINEL}/x@db.internal/app",
    ],
    ids=["second-at", "slash-then-secret", "secret-then-slash"],
)
def test_an_unencoded_character_in_the_password_is_refused_without_showing_it(dsn: str) -> None:
    """'@' or '/' in a URL's password is a configuration error saying to percent-encode, quoting nothing of it."""
    with pytest.raises(ConfigError) as caught:
        _parse(dsn)
    assert ExitCode.CONFIG == caught.value.exit_code
    assert "percent-encode" in caught.value.message.lower()
    assert SENTINEL not in caught.value.message
    assert "s3cr3t" not in caught.value.message


def test_an_unquoted_password_with_spaces_shows_no_word_of_it() -> None:
    """key=value with an unquoted password holding spaces: refused, naming the variable, no word of it shown."""
    with pytest.raises(ConfigError) as caught:
        _parse("host=db password=correct horse battery staple")
    message = caught.value.message
    assert "DATABASE_URL" in message
    assert not any(word in message for word in ("correct", "horse", "battery", "staple"))


def test_an_unknown_url_parameter_names_itself_and_the_way_out() -> None:
    """A URL parameter neither libpq's nor Prisma's is named, with BOOTSTRAP_DATABASE_URL as the way out."""
    with pytest.raises(ConfigError) as caught:
        _parse("postgresql://u:pw@db/app?frobnicate=1")
    assert "frobnicate" in caught.value.message
    assert "BOOTSTRAP_DATABASE_URL" in caught.value.message
