"""
Creating the database itself, for `--create-database` (dev and CI: dbmate's
`up` creates it too): through the server's maintenance database, with the same
credentials, as `createdb` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from ..errors import ConfigError
from ..typing import Logger
from .conninfo import Conninfo

MAINTENANCE_DATABASES = ("postgres", "template1")
CONNECT_TIMEOUT_S = 5


def create_database(conninfo: Conninfo, log: Logger,
                    connect: Callable[[Conninfo, int], psycopg.Connection[Any]]) -> bool:
    """
    `CREATE DATABASE` the one the connection names; another runner creating it at the same time is fine.

    Args:
        connect: how bootstrap connects (`connection.connect_once`).

    Returns:
        True (it exists now).

    Raises:
        ConfigError: no maintenance database answered, or the role may not create databases.
    """
    name = conninfo.target.dbname
    reason = "no maintenance database answered"
    for maintenance in MAINTENANCE_DATABASES:
        try:
            conn = connect(conninfo.on_database(maintenance), CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else reason
            continue
        with conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (pgerrors.DuplicateDatabase, pgerrors.UniqueViolation):  # the second: a CREATE racing ours
                log.info("database_found", dbname=name, reason="another runner created it meanwhile")
                return True
            except pgerrors.InsufficientPrivilege as exc:
                raise ConfigError(f"--create-database: role {conninfo.target.user} may not create database {name}: "
                                  f"{exc.diag.message_primary or exc}; grant it CREATEDB, or create the database "
                                  "first", dbname=name) from None
            except psycopg.Error as exc:
                raise ConfigError(f"--create-database: cannot create database {name}: "
                                  f"{exc.diag.message_primary or exc}", dbname=name) from None
        log.info("database_created", dbname=name, through=maintenance)
        return True
    raise ConfigError(f"--create-database: cannot reach the server's maintenance database "
                      f"({', '.join(MAINTENANCE_DATABASES)}) to create {name}: {reason}", dbname=name)
