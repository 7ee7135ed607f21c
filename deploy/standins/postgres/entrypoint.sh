#!/bin/sh
# The official image's contract, in short: POSTGRES_USER/PASSWORD/DB create the cluster once,
# network clients log in with scram-sha-256, then postgres runs in the foreground as `postgres`.
set -eu
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s' "$POSTGRES_PASSWORD" > /tmp/pwfile && chown postgres /tmp/pwfile
    su postgres -c "initdb --username='$POSTGRES_USER' --pwfile=/tmp/pwfile --auth-local=trust --auth-host=scram-sha-256 -D '$PGDATA'" >/dev/null
    rm -f /tmp/pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    su postgres -c "pg_ctl -D '$PGDATA' -o \"-c listen_addresses=''\" -w start" >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        su postgres -c "psql -v ON_ERROR_STOP=1 --username='$POSTGRES_USER' --dbname=postgres -c 'CREATE DATABASE \"$POSTGRES_DB\"'" >/dev/null
    fi
    su postgres -c "pg_ctl -D '$PGDATA' -m fast -w stop" >/dev/null
fi
exec su postgres -c "exec postgres -D '$PGDATA' -c listen_addresses='*'"
