"""Configuration: flags over variables over defaults, _FILE secrets, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import ConfigError, ExitCode
from bootstrap.settings import app_environ, load_settings, parse_duration

SENTINEL = "S3ntinel-Pa55word"


def test_defaults() -> None:
    """With nothing set, the contract's defaults apply."""
    s = load_settings({}, {})
    assert (Path("sql"), (), 60.0, 300.0, "bootstrap", "bootstrap_migrations", 5.0, None, "auto", "info") == (
        s.sql_dir, s.schemas, s.wait_timeout, s.lock_timeout, s.ledger_schema, s.ledger_table,
        s.ddl_lock_timeout, s.statement_timeout, s.log_format, s.log_level)
    assert "" == s.database_url


def test_flag_wins_over_variable() -> None:
    """A flag beats its environment variable."""
    env = {"BOOTSTRAP_SQL_DIR": "from-env", "BOOTSTRAP_WAIT_TIMEOUT": "5"}
    assert Path("from-env") == load_settings({}, env).sql_dir
    s = load_settings({"sql_dir": "from-flag", "wait_timeout": 7.0}, env)
    assert (Path("from-flag"), 7.0) == (s.sql_dir, s.wait_timeout)


def test_migrator_url_wins_and_is_hidden_from_the_app() -> None:
    """BOOTSTRAP_DATABASE_URL is bootstrap's connection and is removed before exec."""
    env = {"DATABASE_URL": "postgresql://app@db/x", "BOOTSTRAP_DATABASE_URL": "postgresql://migrator@db/x",
           "BOOTSTRAP_DATABASE_URL_FILE": ""}
    s = load_settings({}, env)
    assert "postgresql://migrator@db/x" == s.database_url
    assert {"DATABASE_URL": "postgresql://app@db/x"} == app_environ(env)


def test_file_variant(tmp_path: Path) -> None:
    """NAME_FILE holds the value, trailing newline stripped."""
    secret = tmp_path / "url"
    secret.write_text(f"postgresql://u:{SENTINEL}@db/x\n")
    s = load_settings({}, {"BOOTSTRAP_DATABASE_URL_FILE": str(secret)})
    assert f"postgresql://u:{SENTINEL}@db/x" == s.database_url
    assert SENTINEL not in repr(s)


def test_both_variable_and_file_is_an_error(tmp_path: Path) -> None:
    """Setting X and X_FILE together is a configuration error naming both."""
    secret = tmp_path / "url"
    secret.write_text("postgresql://db/x")
    with pytest.raises(ConfigError, match="both DATABASE_URL and DATABASE_URL_FILE are set") as info:
        load_settings({}, {"DATABASE_URL": "postgresql://db/x", "DATABASE_URL_FILE": str(secret)})
    assert ExitCode.CONFIG == info.value.exit_code


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    """A _FILE pointing nowhere names the variable and the path."""
    with pytest.raises(ConfigError, match=r"DATABASE_URL_FILE: cannot read .*/nope: No such file"):
        load_settings({}, {"DATABASE_URL_FILE": str(tmp_path / "nope")})


def test_the_flag_wins_without_reading_the_variables(tmp_path: Path) -> None:
    """--database-url is used as given: an unreadable _FILE it overrides is not read; X with X_FILE is still refused."""
    s = load_settings({"database_url": "postgresql://db/flag"}, {"DATABASE_URL_FILE": str(tmp_path / "nope")})
    assert ("postgresql://db/flag", "--database-url") == (s.database_url, s.database_url_source)
    secret = tmp_path / "url"
    secret.write_text("postgresql://db/x")
    with pytest.raises(ConfigError, match="both DATABASE_URL and DATABASE_URL_FILE are set"):
        load_settings({"database_url": "postgresql://db/flag"},
                      {"DATABASE_URL": "postgresql://db/x", "DATABASE_URL_FILE": str(secret)})


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BOOTSTRAP_WAIT_TIMEOUT", "abc", "BOOTSTRAP_WAIT_TIMEOUT: 'abc' is not a duration"),
        ("BOOTSTRAP_LOCK_TIMEOUT", "-5", "BOOTSTRAP_LOCK_TIMEOUT: '-5' is not a duration"),
        ("BOOTSTRAP_DDL_LOCK_TIMEOUT", "5 parsecs", "BOOTSTRAP_DDL_LOCK_TIMEOUT: '5 parsecs' is not a duration"),
        ("BOOTSTRAP_SCHEMAS", "financial,fin ance", "BOOTSTRAP_SCHEMAS: schema name 'fin ance' is not a plain"),
        ("BOOTSTRAP_OUT_OF_ORDER", "maybe", "BOOTSTRAP_OUT_OF_ORDER: 'maybe' is not a boolean"),
        ("BOOTSTRAP_SCHEMAS", "Financial", "BOOTSTRAP_SCHEMAS: schema name 'Financial' is not a plain lowercase identifier"),
        ("BOOTSTRAP_SCHEMAS", "pg_mine", "reserved"),
        ("BOOTSTRAP_SCHEMAS", "a;drop", "not a plain lowercase identifier"),
        ("BOOTSTRAP_LEDGER_TABLE", "a.b.c", "BOOTSTRAP_LEDGER_TABLE: 'a.b.c' is not a table name"),
        ("BOOTSTRAP_LEDGER_TABLE", "bad-name", "table name 'bad-name' is not a plain lowercase identifier"),
        ("BOOTSTRAP_LOG_FORMAT", "xml", "BOOTSTRAP_LOG_FORMAT: 'xml' is not one of auto, json, console"),
        ("BOOTSTRAP_LOG_LEVEL", "loud", "BOOTSTRAP_LOG_LEVEL: 'loud' is not one of"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str) -> None:
    """Each bad value is a configuration error (exit 3) naming its variable."""
    with pytest.raises(ConfigError) as info:
        load_settings({}, {variable: value})
    assert message in str(info.value)
    assert ExitCode.CONFIG == info.value.exit_code


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60", 60.0), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30.0), ("5min", 300.0), ("1h", 3600.0)],
)
def test_durations(text: str, seconds: float) -> None:
    """Durations are seconds, or carry a unit."""
    assert seconds == parse_duration(text)


def test_no_limit_durations() -> None:
    """0, none and off mean no statement timeout."""
    assert [None, None, None] == [parse_duration(v, allow_none=True) for v in ("0", "none", "off")]


def test_schemas_are_parsed_in_order_without_duplicates() -> None:
    """Spaces, empty items and duplicates are ignored."""
    assert ("financial", "audit") == load_settings({}, {"BOOTSTRAP_SCHEMAS": " financial, audit ,financial,,"}).schemas


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("true", True), ("YES", True), ("on", True),
                                                 ("0", False), ("false", False), ("no", False), ("off", False)])
def test_boolean_flags_read_their_variable(value: str, expected: bool) -> None:
    """Boolean flags have variables too (BOOTSTRAP_NO_MIGRATE=1 for replicas)."""
    from bootstrap.settings import command_flags

    assert expected == command_flags("run", {}, {"BOOTSTRAP_NO_MIGRATE": value})["no_migrate"]
    assert command_flags("run", {"no_migrate": True}, {"BOOTSTRAP_NO_MIGRATE": "0"})["no_migrate"] is True
