"""The container ENTRYPOINT's dispatch: which arguments are a bootstrap command, which are the app."""

from __future__ import annotations

from bootstrap._entry import dispatch


def test_entrypoint_dispatch_table() -> None:
    """The container dispatch: bootstrap commands and --help/--version pass through; anything else is the app."""
    assert ["migrate", "--log-level", "debug"] == dispatch(["migrate", "--log-level", "debug"])
    assert ["lint", "--all"] == dispatch(["lint", "--all"])
    assert ["--version"] == dispatch(["--version"])
    assert ["run", "--", "node", "server.js"] == dispatch(["node", "server.js"])
    assert ["run", "--", "node", "server.js"] == dispatch(["--", "node", "server.js"])
    assert ["run", "--no-migrate", "node", "server.js"] == dispatch(["--no-migrate", "node", "server.js"])
    assert ["run"] == dispatch([])
    # Flags before a bootstrap command belong to it; before anything else, to run.
    assert ["migrate", "--log-level", "debug"] == dispatch(["--log-level", "debug", "migrate"])
    assert ["status", "--sql-dir=db", "--json"] == dispatch(["--sql-dir=db", "status", "--json"])
    assert ["run", "--no-migrate", "--timeout", "5", "node", "migrate"] == \
        dispatch(["--no-migrate", "--timeout", "5", "node", "migrate"])
