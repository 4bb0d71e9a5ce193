"""The fleet's tenants, as `--tenants-query` lists them (one text column: schema or database names), read only."""

from __future__ import annotations

import psycopg

from ..errors import ConfigError
from .session import Session

_SOURCE = "--tenants-query (BOOTSTRAP_TENANTS_QUERY)"


def tenant_names(session: Session, query: str) -> list[str]:
    """
    Run the tenants query on bootstrap's session (read-only in intent; its rows are names).

    Returns:
        The names, in the query's order, each once.

    Raises:
        ConfigError: the query failed, returns other than one text column, or a NULL or empty name (exit 3).
    """
    try:
        # The operator's own SQL, as written (a VALUES list works too), in a read-only transaction that is
        # rolled back: a query that would write is refused, never committed.
        with session.conn.transaction(force_rollback=True), session.conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(query.encode())
            if cur.description is None or len(cur.description) != 1:
                raise ConfigError(f"{_SOURCE} must return one column of names; it returns "
                                  f"{0 if cur.description is None else len(cur.description)}", variable=_SOURCE)
            rows = cur.fetchall()
    except psycopg.Error as exc:
        session.rollback_quietly()
        raise ConfigError(f"{_SOURCE} failed: {exc.diag.message_primary or exc}", variable=_SOURCE,
                          sqlstate=exc.sqlstate) from None
    names: dict[str, None] = {}
    for (name,) in rows:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{_SOURCE} returned {name!r}: each row must be a non-empty name (text)",
                              variable=_SOURCE)
        names[name] = None
    return list(names)


def schema_exists(session: Session, name: str) -> bool:
    """Whether the tenant's schema is (still) there."""
    row = session.conn.execute("SELECT pg_catalog.to_regnamespace(pg_catalog.quote_ident(%s)) IS NOT NULL",
                               [name]).fetchone()
    return bool(row and row[0])
