#!/bin/sh
# The users service's entrypoint, under tini (PID 1, `-g`: a signal reaches every
# process of this group, so a `docker stop` during the migration stops Prisma too):
#   1. bootstrap waits until PostgreSQL answers a real query (DATABASE_URL or
#      DATABASE_URL_FILE; Prisma's query parameters are accepted as they are);
#   2. Prisma applies the service's own migrations (prisma/migrations), under its
#      own advisory lock, to the tables it owns;
#   3. the app (CMD, `node server.js`) replaces this shell: same PID, its signals,
#      its exit status.
# Nothing of the api-gateway's sql/ is here: the gateway migrates its own schema.
set -eu
# The Prisma CLI reads its URL from DATABASE_URL only: a URL given as a file
# (DATABASE_URL_FILE, a Docker secret) is exported as DATABASE_URL (bootstrap refuses
# both set at once, so the _FILE variable goes).
if [ -n "${DATABASE_URL_FILE:-}" ]; then
    DATABASE_URL="$(cat "$DATABASE_URL_FILE")"
    export DATABASE_URL
    unset DATABASE_URL_FILE
fi
/opt/bootstrap/bin/bootstrap wait-db
/app/node_modules/.bin/prisma migrate deploy
exec "$@"
