/*
 * How this service reaches PostgreSQL, for both the Prisma CLI (prisma.config.ts)
 * and the app (server.js): Prisma's pg driver adapter, @prisma/adapter-pg, over
 * node-postgres. With it, Prisma needs no Rust engine binary: `prisma migrate`
 * runs its schema engine as WebAssembly (prisma.config.ts, engine "js") and the
 * client its query compiler (schema.prisma, engineType "client"), both shipped in
 * the npm packages.
 *
 * DATABASE_URL (or DATABASE_URL_FILE) is the one URL the service and the gateway
 * share, Prisma's query parameters included: `schema` says where Prisma's tables
 * live (default public); connection_limit, pool_timeout and pgbouncer are options
 * of Prisma's Rust engines, which node-postgres ignores.
 *
 * Two workarounds the migrate CLI needs with this adapter in Prisma 6.19, both
 * applied by prisma.config.ts only (the app needs neither):
 *  - adapter-pg cannot read columns of PostgreSQL's `name` type
 *    ("Column type 'name' could not be deserialized from the database",
 *    prisma/orm#27403), which the schema engine's catalog queries return: the
 *    pg client below reports such columns as text, which they are on the wire.
 *  - the WebAssembly schema engine starts a 10 s timer (its advisory lock's
 *    timeout) that it never clears, and idle pool connections keep their own
 *    10 s timer: the CLI would linger 10 s after its work is done. Those timers
 *    are unref'd, so the process ends as soon as nothing else is pending.
 */
"use strict";

const fs = require("node:fs");
const pg = require("pg");
const { PrismaPg } = require("@prisma/adapter-pg");

const NAME_OID = 19;
const TEXT_OID = 25;

/** The connection URL: DATABASE_URL, or the content of the file DATABASE_URL_FILE names. */
function databaseUrl() {
  const file = process.env.DATABASE_URL_FILE;
  if (file) {
    return fs.readFileSync(file, "utf8").replace(/[\r\n]+$/, "");
  }
  return process.env.DATABASE_URL || "";
}

/** The schema Prisma's URL names (`?schema=`), else public. */
function schemaOf(url) {
  try {
    return new URL(url).searchParams.get("schema") || "public";
  } catch {
    return "public";
  }
}

/** The app's adapter: a pool of node-postgres connections. */
function appAdapter(url = databaseUrl()) {
  return new PrismaPg({ connectionString: url, max: 4, connectionTimeoutMillis: 5000 }, { schema: schemaOf(url) });
}

function nameColumnsAsText(result) {
  for (const one of Array.isArray(result) ? result : [result]) {
    for (const field of (one && one.fields) || []) {
      if (field.dataTypeID === NAME_OID) {
        field.dataTypeID = TEXT_OID;
      }
    }
  }
  return result;
}

/** A node-postgres client whose results describe `name` columns as text (prisma/orm#27403). */
class NameAsTextClient extends pg.Client {
  query(...args) {
    const last = args[args.length - 1];
    if (typeof last === "function") {
      args[args.length - 1] = (error, result) => last(error, error ? result : nameColumnsAsText(result));
      return super.query(...args);
    }
    const pending = super.query(...args);
    return pending && typeof pending.then === "function" ? pending.then(nameColumnsAsText) : pending;
  }
}

/** The migrate CLI's adapter: `name` columns read as text; idle connections do not hold the process. */
function migrateAdapter(url = databaseUrl()) {
  const pool = new pg.Pool({ connectionString: url, Client: NameAsTextClient, allowExitOnIdle: true });
  return new PrismaPg(pool, { schema: schemaOf(url), disposeExternalPool: true });
}

const PATCHED = Symbol.for("prisma-users.engine-timers-unref");

/**
 * Timers the WebAssembly engine starts no longer keep the process alive: each is a
 * timeout raced against a query, whose open connection keeps the process alive
 * while it matters. Once the CLI's command is done, nothing else is pending and
 * Node exits at once instead of waiting for the timer.
 */
function unrefEngineTimers() {
  if (globalThis[PATCHED]) {
    return;
  }
  globalThis[PATCHED] = true;
  const original = globalThis.setTimeout;
  const patched = function setTimeout(...args) {
    const timer = original.apply(this, args);
    if (timer && typeof timer.unref === "function" && /\bwasm:\/\//.test(new Error().stack || "")) {
      timer.unref();
    }
    return timer;
  };
  Object.defineProperties(patched, Object.getOwnPropertyDescriptors(original));
  globalThis.setTimeout = patched;
}

module.exports = { appAdapter, databaseUrl, migrateAdapter, unrefEngineTimers };
