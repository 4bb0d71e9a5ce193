#!/usr/bin/env python3
"""
An example api-gateway endpoint: what `bootstrap run` execs in the examples.

    GET /api/integrations/configs[?user_id=UUID|global][&integration_type=TYPE]
        -> 200 {"configs": [...]}: every row, or what applies to one user: their
           rows and the global ones (user_id=UUID), or only the global ones
           (user_id=global), optionally of one integration type. Values of rows marked is_encrypted are never
           returned in clear: config_value is null and value_redacted is true.
    GET /healthz -> 200 once serving (bootstrap only execs the app after migrate + verify)

It connects with the app's DATABASE_URL only (the migrator's connection was
removed from its environment by bootstrap), one short connection per request.
Configuration: DATABASE_URL (or DATABASE_URL_FILE, a file holding it), PORT (default 8080).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg.rows import dict_row

QUERY = """
SELECT id, user_id, integration_type, config_key, config_value, is_encrypted, is_global,
       description, metadata, created_at, updated_at
  FROM financial.integration_configs
 WHERE (%(all_users)s OR user_id IS NULL OR user_id = %(user_id)s::uuid)
   AND (%(integration_type)s::text IS NULL OR integration_type = %(integration_type)s)
 ORDER BY integration_type, config_key, user_id NULLS FIRST
"""


def database_url() -> str:
    """DATABASE_URL, or the content of DATABASE_URL_FILE (as the official images do)."""
    path = os.environ.get("DATABASE_URL_FILE")
    if path:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    return os.environ.get("DATABASE_URL", "")


DATABASE_URL = database_url()


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API shows it: timestamps as ISO 8601, encrypted values withheld."""
    out = dict(row)
    out["user_id"] = str(row["user_id"]) if row["user_id"] else None
    out["created_at"] = row["created_at"].isoformat()
    out["updated_at"] = row["updated_at"].isoformat()
    out["value_redacted"] = bool(row["is_encrypted"])
    if row["is_encrypted"]:
        out["config_value"] = None
    return out


class Handler(BaseHTTPRequestHandler):
    """GET /api/integrations/configs and /healthz."""

    server_version = "example-gateway/1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, {"status": "ok"})
            return
        if url.path != "/api/integrations/configs":
            self._send(404, {"error": "not found"})
            return
        params = parse_qs(url.query)
        user_id = params.get("user_id", [None])[0]
        all_users = user_id is None
        if user_id == "global":
            user_id = None
        elif user_id is not None:
            try:
                user_id = str(uuid.UUID(user_id))
            except ValueError:
                self._send(400, {"error": "user_id must be a UUID or 'global'"})
                return
        integration_type = params.get("integration_type", [None])[0]
        try:
            with psycopg.connect(DATABASE_URL, row_factory=dict_row,
                                 connect_timeout=5) as conn:
                rows = conn.execute(QUERY, {"all_users": all_users, "user_id": user_id, "integration_type": integration_type}).fetchall()
        except psycopg.Error as exc:
            self.log_error("database error: %s", type(exc).__name__)
            self._send(503, {"error": "database unavailable"})
            return
        self._send(200, {"configs": [public_row(r) for r in rows]})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        sys.stderr.write(json.dumps({"event": "http_request", "request": format % args}) + "\n")


def main() -> None:
    """Serve until SIGTERM/SIGINT."""
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)  # noqa: S104
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(json.dumps({"event": "gateway_listening", "port": server.server_port, "pid": os.getpid()}),
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
