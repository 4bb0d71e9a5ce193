#!/bin/sh
# Write random passwords and the two connection URLs into ./secrets/ (git-ignored).
set -eu
cd "$(dirname "$0")"
mkdir -p secrets
umask 077
gen() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
for name in postgres_password migrator_password app_password users_password; do
    [ -s "secrets/$name" ] || gen > "secrets/$name"
done
printf 'postgresql://migrator:%s@db:5432/gateway\n' "$(cat secrets/migrator_password)" > secrets/migrator_url
printf 'postgresql://gateway_app:%s@db:5432/gateway\n' "$(cat secrets/app_password)" > secrets/app_url
# The users service's URL in Prisma's form: bootstrap's wait-db accepts Prisma's query parameters.
printf 'postgresql://users_service:%s@db:5432/gateway?schema=public&connection_limit=5\n' \
    "$(cat secrets/users_password)" > secrets/users_url
echo "secrets written to $(pwd)/secrets"
