#!/usr/bin/env bash
# Makes sure the two database servers the tests use accept connections (idempotent):
#   PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) and
#   MariaDB on 127.0.0.1:3306 (user root, empty password).
# A server that does not answer is started, then waited for (SERVICES_TIMEOUT seconds, default 60
# each); if it still does not answer, or answers but refuses our user, this fails and says why.
set -euo pipefail

timeout="${SERVICES_TIMEOUT:-60}"

fail() {
    echo "services: error: $*" >&2
    exit 1
}

# wait_for NAME CHECK...: runs CHECK every second until it succeeds or the timeout passes.
wait_for() {
    local name="$1"
    shift
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
    echo "services: $name is accepting connections"
}

# --- PostgreSQL -----------------------------------------------------------------------------
postgres_ready() { pg_isready -q -h 127.0.0.1 -p 5432 -U postgres -t 2; }

start_postgres() {
    command -v pg_ctlcluster >/dev/null || fail "PostgreSQL is down and pg_ctlcluster is missing (install postgresql)"
    # The cluster that listens on 5432 (pg_lsclusters: version, name, port, status, ...).
    local version name
    read -r version name < <(pg_lsclusters --no-header | awk '$3 == 5432 {print $1, $2; exit}') || true
    if [[ -z "${version:-}" ]]; then
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        name=main
    fi
    echo "services: starting PostgreSQL cluster $version/$name"
    # Fails harmlessly when the server is already starting; the wait below decides.
    pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start \
        || echo "services: pg_ctlcluster start returned $?; waiting anyway"
    postgres_log="/var/log/postgresql/postgresql-$version-$name.log"
}

postgres_log=""
if postgres_ready; then
    echo "services: PostgreSQL is accepting connections"
else
    start_postgres
    if ! wait_for PostgreSQL postgres_ready; then
        [[ -n "$postgres_log" && -r "$postgres_log" ]] && tail -n 20 "$postgres_log" >&2
        fail "PostgreSQL did not accept connections on 127.0.0.1:5432 within ${timeout}s (log above: $postgres_log)"
    fi
fi
psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null \
    || fail "PostgreSQL answers but refuses user postgres without a password (trust auth expected in pg_hba.conf)"

# --- MariaDB --------------------------------------------------------------------------------
mariadb_ready() { mariadb-admin ping -h 127.0.0.1 -P 3306 -uroot --connect-timeout=2 >/dev/null 2>&1; }

if mariadb_ready; then
    echo "services: MariaDB is accepting connections"
else
    [[ -x /usr/sbin/mariadbd ]] || fail "MariaDB is down and /usr/sbin/mariadbd is missing (install mariadb-server)"
    echo "services: starting MariaDB"
    # /run is a tmpfs: the socket and pid folder vanish when the machine restarts.
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for MariaDB mariadb_ready \
        || fail "MariaDB did not accept connections on 127.0.0.1:3306 within ${timeout}s (run /usr/sbin/mariadbd in the foreground to see why)"
fi
mariadb -h 127.0.0.1 -P 3306 -uroot -e 'SELECT 1' >/dev/null \
    || fail "MariaDB answers but refuses root with an empty password on 127.0.0.1:3306"
