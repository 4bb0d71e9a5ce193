"""The command line through click's CliRunner: exit codes, usage, exec injection, help."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bootstrap import cli
from bootstrap._entry import run_cli as run_cli_main
from bootstrap.errors import ExitCode
from tests.helpers import write

COMMANDS = ["wait-db", "migrate", "status", "verify", "rollback", "run"]


def invoke(args: list[str], env: dict[str, str] | None = None, obj: dict | None = None):
    """Invoke the CLI in-process with a clean environment."""
    runner = CliRunner()
    base = {k: None for k in ("DATABASE_URL", "BOOTSTRAP_DATABASE_URL", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE")}
    base.update(env or {})
    return runner.invoke(cli.cli, args, env=base, obj=obj, catch_exceptions=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command: str) -> None:
    """`bootstrap CMD --help` explains the command, shows an example and names each flag's variable."""
    result = invoke([command, "--help"])
    assert ExitCode.OK == result.exit_code
    assert "Example:" in result.stdout
    flat = " ".join(result.stdout.split())
    assert "[env: BOOTSTRAP_LOG_LEVEL; default: info]" in flat
    assert ("[env: BOOTSTRAP_SQL_DIR; default: ./sql]" in flat) == (command != "wait-db")


@pytest.mark.parametrize(
    ("command", "expected"),
    [("wait-db", ExitCode.UNAVAILABLE), ("migrate", ExitCode.CONFIG), ("status", ExitCode.CONFIG),
     ("verify", ExitCode.CONFIG), ("rollback", ExitCode.CONFIG), ("run", ExitCode.CONFIG)],
)
def test_flags_are_accepted_after_the_command(command: str, expected: ExitCode, tmp_path: Path) -> None:
    """Every flag parses after the command's name; here a missing directory or a closed port is reported."""
    from pgcluster import free_port

    args = [command, "--sql-dir", str(tmp_path / "absent"), "--log-level", "debug", "--log-format", "json",
            "--database-url", f"postgresql://postgres@127.0.0.1:{free_port()}/x", "--timeout", "0.2",
            "--lock-timeout", "1", "--schemas", "a,b", "--ledger-table", "ops.ledger",
            "--ddl-lock-timeout", "2s", "--statement-timeout", "1min"]
    if command == "run":
        args += ["--", "true"]
    if command == "rollback":
        args += ["--steps", "1"]
    result = invoke(args)
    assert expected == result.exit_code, result.stderr
    assert ("absent" if expected == ExitCode.CONFIG else "Connection refused") in result.stderr


def test_bad_flag_value_is_a_usage_error() -> None:
    """A malformed flag is a usage error (exit 2) naming the flag."""
    result = invoke(["wait-db", "--timeout", "soon"])
    assert ExitCode.USAGE == result.exit_code
    assert "--timeout" in result.stderr


def test_bad_variable_is_a_config_error() -> None:
    """A malformed variable is a configuration error (exit 3) naming the variable."""
    result = invoke(["wait-db"], {"BOOTSTRAP_WAIT_TIMEOUT": "soon"})
    assert ExitCode.CONFIG == result.exit_code
    assert "BOOTSTRAP_WAIT_TIMEOUT: 'soon' is not a duration" in result.stderr


def test_unknown_command_is_a_usage_error() -> None:
    """An unknown command exits 2."""
    assert ExitCode.USAGE == invoke(["migrat"]).exit_code


def test_run_without_command_is_a_usage_error() -> None:
    """`run` with no command exits 2."""
    result = invoke(["run"])
    assert ExitCode.USAGE == result.exit_code
    assert "missing command" in result.stderr


def test_run_execs_through_the_injected_function(fresh_url: str, sql_dir: Path) -> None:
    """`run` hands argv and the app's environment to exec, without the migrator's variables."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    calls = []
    env = {"DATABASE_URL": "postgresql://app@elsewhere/x", "BOOTSTRAP_DATABASE_URL": fresh_url,
           "BOOTSTRAP_SQL_DIR": str(sql_dir)}
    # The app must exist (a missing one exits 127 first): this Python stands in for it.
    result = invoke(["run", "--", sys.executable, "server.py", "--port", "3000"], env,
                    obj={"exec": lambda argv, environ: calls.append((argv, dict(environ)))})
    assert ExitCode.OK == result.exit_code, result.stderr
    [(argv, environ)] = calls
    assert [sys.executable, "server.py", "--port", "3000"] == argv
    assert "postgresql://app@elsewhere/x" == environ["DATABASE_URL"]
    assert "BOOTSTRAP_DATABASE_URL" not in environ


def test_status_exit_code(fresh_url: str, sql_dir: Path) -> None:
    """status exits 0 with pending files, 8 with --exit-code."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    env = {"DATABASE_URL": fresh_url, "BOOTSTRAP_SQL_DIR": str(sql_dir)}
    assert ExitCode.OK == invoke(["status"], env).exit_code
    result = invoke(["status", "--exit-code"], env)
    assert ExitCode.NOT_UP_TO_DATE == result.exit_code
    assert "1_t.sql" in result.stdout and "pending" in result.stdout


def test_version() -> None:
    """--version prints the name and version."""
    from bootstrap import __version__

    assert f"bootstrap {__version__}\n" == invoke(["--version"]).stdout


def test_main_maps_usage_errors_to_2(capsys: pytest.CaptureFixture[str]) -> None:
    """The console script's main() exits 2 for usage errors, like click standalone."""
    with pytest.raises(SystemExit) as info:
        run_cli_main(["migrate", "--no-such-flag"])
    assert ExitCode.USAGE == info.value.code
    assert "No such option" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["rollback"], ["rollback", "--steps", "1", "--to", "0"],
                                  ["rollback", "--steps", "0"], ["rollback", "--to", "-1"]],
                         ids=["neither", "both", "zero-steps", "negative-to"])
def test_rollback_needs_exactly_one_target(args: list[str]) -> None:
    """rollback takes --steps N (N >= 1) or --to VERSION (>= 0), not both, not neither."""
    assert ExitCode.USAGE == invoke(args).exit_code


def test_rollback_exit_codes(fresh_url: str, sql_dir: Path) -> None:
    """Too many steps exits 2, a missing partner 3, a failing down file 5; each changes nothing."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    write(sql_dir, "1_a.down.sql", "DROP TABLE a;")
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    env = {"DATABASE_URL": fresh_url, "BOOTSTRAP_SQL_DIR": str(sql_dir)}
    assert ExitCode.OK == invoke(["migrate"], env).exit_code
    assert ExitCode.USAGE == invoke(["rollback", "--steps", "3"], env).exit_code
    result = invoke(["rollback", "--to", "0"], env)
    assert ExitCode.CONFIG == result.exit_code
    assert "2_b.sql has no 2_b.down.sql" in result.stderr
    write(sql_dir, "2_b.down.sql", "DROP TABLE nope;")
    result = invoke(["rollback", "--steps", "1"], env)
    assert ExitCode.MIGRATION_FAILED == result.exit_code
    error = json.loads(result.stderr.splitlines()[-1])["error"]
    assert '2_b.down.sql:1:1: table "nope" does not exist' in error
    assert ExitCode.OK == invoke(["status", "--exit-code"], env).exit_code


def test_rollback_then_migrate_restores_repeatables(fresh_url: str, sql_dir: Path) -> None:
    """
    Repeatables have no partners: rollback forgets them, so migrate after
    `rollback --to 0` rebuilds everything, including a view the down file's
    CASCADE dropped; and the emptied ledger accepts a baseline.
    """
    import psycopg

    write(sql_dir, "1_acc.sql", "CREATE TABLE acc (id int);")
    write(sql_dir, "1_acc.down.sql", "DROP TABLE acc CASCADE;")
    write(sql_dir, "R__views.sql", "CREATE OR REPLACE VIEW acc_view AS SELECT id FROM acc;")
    env = {"DATABASE_URL": fresh_url, "BOOTSTRAP_SQL_DIR": str(sql_dir)}
    assert ExitCode.OK == invoke(["migrate"], env).exit_code
    result = invoke(["rollback", "--to", "0"], env)
    assert ExitCode.OK == result.exit_code, result.stderr
    assert "repeatables_reset" in result.stderr
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        assert [] == conn.execute("SELECT name FROM bootstrap.bootstrap_migrations").fetchall()
        assert conn.execute("SELECT to_regclass('acc_view')").fetchone()[0] is None
    assert ExitCode.NOT_UP_TO_DATE == invoke(["status", "--exit-code"], env).exit_code
    assert ExitCode.OK == invoke(["migrate"], env).exit_code
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('acc_view')").fetchone()[0] is not None
    assert ExitCode.OK == invoke(["status", "--exit-code"], env).exit_code
    assert ExitCode.OK == invoke(["rollback", "--to", "0"], env).exit_code
    assert ExitCode.OK == invoke(["baseline", "--version", "1"], env).exit_code


def test_help_lists_only_the_flags_a_command_reads_grouped_once() -> None:
    """`new` needs no database: no connection flags; `migrate` groups the shared flags once, in sections."""
    new = invoke(["new", "--help"]).stdout
    assert "--database-url" not in new and "--timeout" not in new and "--sql-dir" in new
    migrate = invoke(["migrate", "--help"]).stdout
    for section in ("Connection:", "Files, ledger and lock:", "Logging:"):
        assert 1 == migrate.count(section), section
    assert 1 == migrate.count("--database-url, --url URL")
    status = " ".join(invoke(["status", "--help"]).stdout.split())
    assert "Apply" not in status.split("--out-of-order", 1)[1].split("[env:", 1)[0]


def test_help_examples_stay_on_their_own_lines() -> None:
    """rollback's two examples are two lines, not one glued paragraph."""
    lines = [line.strip() for line in invoke(["rollback", "--help"]).stdout.splitlines()]
    assert "bootstrap rollback --steps 1" in lines and "bootstrap rollback --to 0" in lines


def test_aliases_are_hidden_but_answer_help() -> None:
    """`up`, `down` and `create` are not listed in `bootstrap --help` but each answers `--help` as its twin."""
    listed = [line.split()[0] for line in invoke(["--help"]).stdout.split("Commands:", 1)[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    assert "migrate" in listed and "new" in listed
    assert not {"up", "down", "create"} & set(listed)
    assert invoke(["up", "--help"]).stdout.replace("cli up", "cli migrate") == invoke(["migrate", "--help"]).stdout
    assert ExitCode.OK == invoke(["down", "--help"]).exit_code
    assert "DESCRIPTION" in invoke(["create", "--help"]).stdout
