#!/bin/sh
# Runs once, as the postgres superuser, when the database volume is first created
# (the official image's /docker-entrypoint-initdb.d). Passwords come from secrets.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname gateway \
    -v migrator_password="$(cat /run/secrets/migrator_password)" \
    -v app_password="$(cat /run/secrets/app_password)" <<'SQL'
CREATE ROLE migrator LOGIN PASSWORD :'migrator_password';
CREATE ROLE gateway_app LOGIN PASSWORD :'app_password';
GRANT CONNECT, CREATE ON DATABASE gateway TO migrator;
GRANT CONNECT ON DATABASE gateway TO gateway_app;
-- Whatever the migrator creates later, the app may use (rows only, never DDL).
ALTER DEFAULT PRIVILEGES FOR ROLE migrator GRANT USAGE ON SCHEMAS TO gateway_app;
ALTER DEFAULT PRIVILEGES FOR ROLE migrator GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gateway_app;
ALTER DEFAULT PRIVILEGES FOR ROLE migrator GRANT USAGE, SELECT ON SEQUENCES TO gateway_app;
SQL
