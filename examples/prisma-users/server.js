#!/usr/bin/env node
/*
 * The users service: a tiny HTTP app that owns the table `users` through Prisma
 * Client (no Rust engine: schema.prisma's engineType "client" with the pg driver
 * adapter). What examples/prisma-users/Dockerfile's entrypoint execs once
 * bootstrap has waited for the database and `prisma migrate deploy` has run.
 *
 *   POST /users {"email": "..."} -> 201 {"id", "email", "created_at"}; 409 when the email is taken
 *   GET  /users/ID               -> 200 the user; 404
 *   GET  /healthz                -> 200 once serving
 *
 * DATABASE_URL (or DATABASE_URL_FILE) is its connection; PORT defaults to 8081.
 * SIGTERM and SIGINT close the server and the pool, then exit 0.
 */
"use strict";

const http = require("node:http");
const { PrismaClient, Prisma } = require("@prisma/client");
const { appAdapter } = require("./prisma/driver.cjs");

const prisma = new PrismaClient({ adapter: appAdapter() });

function log(event, fields) {
  process.stderr.write(`${JSON.stringify({ event, ...fields })}\n`);
}

function send(response, status, body) {
  const data = Buffer.from(JSON.stringify(body));
  response.writeHead(status, { "Content-Type": "application/json", "Content-Length": data.length });
  response.end(data);
}

function shown(user) {
  return { id: user.id, email: user.email, created_at: user.createdAt.toISOString() };
}

async function readJson(request) {
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > 65536) {
      throw new SyntaxError("body too large");
    }
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function createUser(request, response) {
  let body;
  try {
    body = await readJson(request);
  } catch {
    send(response, 400, { error: "the body must be a JSON object" });
    return;
  }
  const email = body && typeof body.email === "string" ? body.email.trim() : "";
  if (!/^[^@\s]+@[^@\s]+$/.test(email)) {
    send(response, 400, { error: "email: an address is required" });
    return;
  }
  try {
    const user = await prisma.user.create({ data: { email } });
    log("user_created", { id: user.id });
    send(response, 201, shown(user));
  } catch (error) {
    if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002") {
      send(response, 409, { error: "email: already taken" });
      return;
    }
    throw error;
  }
}

async function getUser(id, response) {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
    send(response, 404, { error: "no such user" });
    return;
  }
  const user = await prisma.user.findUnique({ where: { id: id.toLowerCase() } });
  if (user === null) {
    send(response, 404, { error: "no such user" });
    return;
  }
  send(response, 200, shown(user));
}

const server = http.createServer((request, response) => {
  const url = new URL(request.url, "http://localhost");
  let handled;
  if (request.method === "GET" && url.pathname === "/healthz") {
    handled = Promise.resolve(send(response, 200, { status: "ok" }));
  } else if (request.method === "POST" && url.pathname === "/users") {
    handled = createUser(request, response);
  } else if (request.method === "GET" && url.pathname.startsWith("/users/")) {
    handled = getUser(url.pathname.slice("/users/".length), response);
  } else {
    handled = Promise.resolve(send(response, 404, { error: "not found" }));
  }
  handled.catch((error) => {
    log("request_failed", { error_type: error.code || error.name });
    if (!response.headersSent) {
      send(response, 500, { error: "internal error" });
    }
  });
});

function stop(signal) {
  log("users_service_stopping", { signal });
  server.close(() => {
    prisma.$disconnect().finally(() => process.exit(0));
  });
  server.closeAllConnections();
}

process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

const port = Number(process.env.PORT || 8081);
server.listen(port, () => log("users_service_listening", { port, pid: process.pid }));
