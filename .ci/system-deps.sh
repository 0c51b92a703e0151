#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when some are missing (idempotent):
# unixODBC (libodbc, which pyodbc loads) and the PostgreSQL and MariaDB ODBC drivers.
# Needs root to install; as another user it only checks and says what to run.
set -euo pipefail

packages=(unixodbc odbc-postgresql odbc-mariadb)

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done

if ((${#missing[@]} == 0)); then
    echo "system-deps: already installed: ${packages[*]}"
    exit 0
fi

echo "system-deps: missing Debian packages: ${missing[*]}"
if ((EUID != 0)); then
    echo "system-deps: error: installing them needs root. Run:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "system-deps: error: apt-get not found; install ${missing[*]} with this system's tools" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_options=(-q -y -o DPkg::Lock::Timeout=300)
echo "system-deps: apt-get update"
apt-get "${apt_options[@]}" update
echo "system-deps: apt-get install ${missing[*]}"
apt-get "${apt_options[@]}" install --no-install-recommends "${missing[@]}"

for package in "${missing[@]}"; do
    installed "$package" || { echo "system-deps: error: $package did not install" >&2; exit 1; }
done
echo "system-deps: ODBC drivers registered:"
odbcinst -q -d | sed 's/^/    /'
