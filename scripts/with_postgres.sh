#!/usr/bin/env bash
# Run a command with HPO_TEST_PG_URL set to a PostgreSQL server the tests may create
# databases on (each test run makes fresh databases there and drops them afterwards).
#
# Where the server comes from, first match wins:
#   1. HPO_TEST_DATABASE_URL, if set (a libpq/SQLAlchemy URL of a database on that server);
#   2. a server already listening on 127.0.0.1:5432 (user postgres, trust auth);
#   3. a throwaway cluster started from the local PostgreSQL binaries, removed afterwards;
#   4. `docker compose up -d db` from this repository's docker-compose.yml;
#   5. otherwise: stop, naming what to install.
set -euo pipefail

cluster_dir=""
cleanup() {
  if [[ -n "$cluster_dir" ]]; then
    $run_as "$pg_bin/pg_ctl" -D "$cluster_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$cluster_dir"
  fi
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_throwaway_cluster() {
  pg_bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)")
  [[ -x "$pg_bin/initdb" ]] || return 1
  run_as=""
  cluster_dir=$(mktemp -d /tmp/hpo-pg.XXXXXX)
  if [[ $(id -u) == 0 ]]; then  # initdb refuses to run as root
    chown postgres "$cluster_dir"
    run_as="runuser -u postgres --"
  fi
  local port=55432
  while port_open "$port"; do port=$((port + 1)); done
  echo "with_postgres: starting a throwaway PostgreSQL cluster ($pg_bin) on port $port" >&2
  $run_as "$pg_bin/initdb" -D "$cluster_dir/data" -A trust -U postgres >/dev/null
  $run_as "$pg_bin/pg_ctl" -D "$cluster_dir/data" -l "$cluster_dir/log" -w \
    -o "-p $port -k $cluster_dir -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
  url="postgresql://postgres@127.0.0.1:$port/postgres"
}

start_compose_db() {
  command -v docker >/dev/null && docker info >/dev/null 2>&1 || return 1
  echo "with_postgres: starting the db service with docker compose" >&2
  docker compose up -d db
  for _ in $(seq 60); do port_open 5432 && break; sleep 1; done
  url="postgresql://postgres:postgres@127.0.0.1:5432/postgres"
}

if [[ -n "${HPO_TEST_DATABASE_URL:-}" ]]; then
  url="$HPO_TEST_DATABASE_URL"
elif port_open 5432; then
  url="postgresql://postgres@127.0.0.1:5432/postgres"
elif start_throwaway_cluster || start_compose_db; then
  :
else
  echo "with_postgres: no PostgreSQL server found. Install PostgreSQL (Debian: apt-get install postgresql)," >&2
  echo "start one on 127.0.0.1:5432, set HPO_TEST_DATABASE_URL, or install Docker for 'docker compose up db'." >&2
  exit 1
fi

export HPO_TEST_PG_URL="$url"
echo "with_postgres: tests use the server at ${url%%\?*}" >&2
"$@"
