#!/bin/sh
# Runs once, as the postgres superuser, when the database volume is first created
# (the official image's /docker-entrypoint-initdb.d). Passwords come from secrets.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname gateway \
    -v migrator_password="$(cat /run/secrets/migrator_password)" \
    -v app_password="$(cat /run/secrets/app_password)" \
    -v users_password="$(cat /run/secrets/users_password)" <<'SQL'
CREATE ROLE migrator LOGIN PASSWORD :'migrator_password';
CREATE ROLE gateway_app LOGIN PASSWORD :'app_password';
CREATE ROLE users_service LOGIN PASSWORD :'users_password';
-- The gateway's migrator creates its schemas: financial and bootstrap (the ledger,
-- bootstrap.bootstrap_migrations). It needs nothing in public.
GRANT CONNECT, CREATE ON DATABASE gateway TO migrator;
GRANT CONNECT ON DATABASE gateway TO gateway_app;
-- The users service (Prisma) owns what it creates in public: users, _prisma_migrations.
GRANT CONNECT ON DATABASE gateway TO users_service;
GRANT USAGE, CREATE ON SCHEMA public TO users_service;
-- Whatever the migrator creates later, the app may use (rows only, never DDL).
ALTER DEFAULT PRIVILEGES FOR ROLE migrator GRANT USAGE ON SCHEMAS TO gateway_app;
ALTER DEFAULT PRIVILEGES FOR ROLE migrator GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gateway_app;
ALTER DEFAULT PRIVILEGES FOR ROLE migrator GRANT USAGE, SELECT ON SEQUENCES TO gateway_app;
SQL
