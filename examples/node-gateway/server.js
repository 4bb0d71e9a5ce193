#!/usr/bin/env node
/*
 * The api-gateway's integration-configs endpoint, as a Node service: what
 * `bootstrap run` execs in examples/node-gateway/Dockerfile. It answers exactly
 * as the Python example (examples/gateway/server.py) does:
 *
 *   GET /api/integrations/configs[?user_id=UUID|global][&integration_type=TYPE]
 *       -> 200 {"configs": [...]}: every row, or what applies to one user: their
 *          rows and the global ones (user_id=UUID), or only the global ones
 *          (user_id=global), optionally of one integration type. A row marked is_encrypted never has its value
 *          in clear: config_value is null and value_redacted is true (the value
 *          is withheld by the query itself, so it never leaves the database).
 *   GET /healthz -> 200 once serving (bootstrap execs the app only after migrate + verify)
 *
 * It connects with the app's own least-privilege role only: DATABASE_URL (or
 * DATABASE_URL_FILE, a file holding it). The migrator's connection was removed
 * from its environment by bootstrap before exec. PORT defaults to 8080.
 */
"use strict";

const fs = require("node:fs");
const http = require("node:http");
const { Pool, types } = require("pg");

// bigint ids as numbers, as JSON (and the Python example) show them, while they are exact.
types.setTypeParser(types.builtins.INT8, (text) => {
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : text;
});

// Timestamps as PostgreSQL writes them in JSON (ISO 8601, microseconds, offset),
// which is what the Python example's datetime.isoformat() gives too.
const QUERY = `
SELECT id, user_id, integration_type, config_key,
       CASE WHEN is_encrypted THEN NULL ELSE config_value END AS config_value,
       is_encrypted, is_global, description, metadata,
       to_json(created_at) #>> '{}' AS created_at,
       to_json(updated_at) #>> '{}' AS updated_at
  FROM financial.integration_configs
 WHERE ($1::boolean OR user_id IS NULL OR user_id = $2::uuid)
   AND ($3::text IS NULL OR integration_type = $3)
 ORDER BY integration_type, config_key, user_id NULLS FIRST`;

function databaseUrl() {
  const path = process.env.DATABASE_URL_FILE;
  if (path) {
    return fs.readFileSync(path, "utf8").replace(/[\r\n]+$/, "");
  }
  return process.env.DATABASE_URL || "";
}

/** A UUID in canonical form, accepting what Python's uuid.UUID() accepts; null if it is not one. */
function canonicalUuid(text) {
  const hex = text.replace(/^urn:/, "").replace(/^uuid:/, "").replace(/^\{|\}$/g, "").replace(/-/g, "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) {
    return null;
  }
  const h = hex.toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function log(event, fields) {
  process.stderr.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function send(response, status, body) {
  const data = Buffer.from(JSON.stringify(body));
  response.writeHead(status, { "Content-Type": "application/json", "Content-Length": data.length });
  response.end(data);
}

const pool = new Pool({ connectionString: databaseUrl(), max: 4, connectionTimeoutMillis: 5000 });
pool.on("error", (error) => log("database_error", { error_type: error.code || error.name }));

async function listConfigs(url, response) {
  // Absent and empty parameters are alike, as in the Python example.
  let userId = url.searchParams.get("user_id") || null;
  const allUsers = userId === null;
  if (userId === "global") {
    userId = null;
  } else if (userId !== null) {
    userId = canonicalUuid(userId);
    if (userId === null) {
      send(response, 400, { error: "user_id must be a UUID or 'global'" });
      return;
    }
  }
  const integrationType = url.searchParams.get("integration_type") || null;
  let rows;
  try {
    ({ rows } = await pool.query(QUERY, [allUsers, userId, integrationType]));
  } catch (error) {
    log("database_error", { error_type: error.code || error.name });
    send(response, 503, { error: "database unavailable" });
    return;
  }
  send(response, 200, { configs: rows.map((row) => ({ ...row, value_redacted: row.is_encrypted })) });
}

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://gateway");
  response.on("finish", () => log("http_request", { method: request.method, path: url.pathname,
    status: response.statusCode }));
  if (request.method !== "GET") {
    send(response, 405, { error: "method not allowed" });
  } else if (url.pathname === "/healthz") {
    send(response, 200, { status: "ok" });
  } else if (url.pathname === "/api/integrations/configs") {
    listConfigs(url, response);
  } else {
    send(response, 404, { error: "not found" });
  }
});

function stop(signal) {
  log("gateway_stopping", { signal });
  server.close(() => pool.end().then(() => process.exit(0), () => process.exit(0)));
  server.closeIdleConnections();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

server.listen(Number(process.env.PORT || 8080), "0.0.0.0", () => {
  log("gateway_listening", { port: server.address().port, pid: process.pid });
});
