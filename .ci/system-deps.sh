#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, only when some are missing (idempotent):
# unixODBC (libodbc, which pyodbc loads), the PostgreSQL and MariaDB ODBC drivers, and Debian's
# chromium with its chromedriver (the morning report's test opens it headless; the console's
# browser test drives it: no browser is downloaded).
# Then turns psqlODBC's logging off: Debian's odbcinst.ini registers the PostgreSQL drivers with
# `CommLog=1`, which makes every process that connects leave a /tmp/psqlodbc_*.log behind; the
# script sets `CommLog=0` and `Debug=0` in the [PostgreSQL Unicode] and [PostgreSQL ANSI]
# sections (ODBCINST_INI names another file than /etc/odbcinst.ini, e.g. for a test).
# Needs root to install or to edit the file; as another user it only checks and says what to run.
set -euo pipefail

packages=(unixodbc odbc-postgresql odbc-mariadb chromium chromium-driver)
odbcinst_ini="${ODBCINST_INI:-/etc/odbcinst.ini}"
postgres_sections=("PostgreSQL Unicode" "PostgreSQL ANSI")

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

install_missing() {
    local missing=() package
    for package in "${packages[@]}"; do
        installed "$package" || missing+=("$package")
    done

    if ((${#missing[@]} == 0)); then
        echo "system-deps: already installed: ${packages[*]}"
        return
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
    local apt_options=(-q -y -o DPkg::Lock::Timeout=300)
    echo "system-deps: apt-get update"
    apt-get "${apt_options[@]}" update
    echo "system-deps: apt-get install ${missing[*]}"
    apt-get "${apt_options[@]}" install --no-install-recommends "${missing[@]}"

    for package in "${missing[@]}"; do
        installed "$package" || { echo "system-deps: error: $package did not install" >&2; exit 1; }
    done
    echo "system-deps: ODBC drivers registered:"
    odbcinst -q -d | sed 's/^/    /'
}

# psqlodbc_logging_lines: the CommLog/Debug lines of the PostgreSQL sections not set to 0.
# A sed range runs from the section's header to the next header; one pass per section, since a
# range that ends on the next section's header would not start again on that same line.
psqlodbc_logging_lines() {
    local section
    for section in "${postgres_sections[@]}"; do
        sed -n -E "/^\[${section}\]/,/^\[/{
            /^[[:space:]]*(CommLog|Debug)[[:space:]]*=[[:space:]]*0[[:space:]]*$/d
            /^[[:space:]]*(CommLog|Debug)[[:space:]]*=/p
        }" "$odbcinst_ini"
    done
}

quiet_psqlodbc() {
    local where
    printf -v where '[%s], ' "${postgres_sections[@]}"
    where="${where%, } of $odbcinst_ini"
    if [[ ! -f "$odbcinst_ini" ]]; then
        echo "system-deps: no $odbcinst_ini: no psqlODBC logging to turn off"
        return
    fi
    if [[ -z "$(psqlodbc_logging_lines)" ]]; then
        echo "system-deps: psqlODBC logging already off (CommLog=0, Debug=0) in $where"
        return
    fi
    if ((EUID != 0)) && [[ ! -w "$odbcinst_ini" ]]; then
        # the tests pass either way: only say what to run
        echo "system-deps: warning: psqlODBC writes a /tmp/psqlodbc_*.log per connection" \
            "(CommLog on in $odbcinst_ini); turn it off as root with: sudo make system-deps" >&2
        return
    fi
    local section
    for section in "${postgres_sections[@]}"; do
        # keeps the line's own spacing (`CommLog = 1` or `CommLog=1`): only the value becomes 0
        sed -i -E "/^\[${section}\]/,/^\[/ s/^([[:space:]]*(CommLog|Debug)[[:space:]]*=[[:space:]]*).*$/\10/" \
            "$odbcinst_ini"
    done
    if [[ -n "$(psqlodbc_logging_lines)" ]]; then
        echo "system-deps: error: could not turn psqlODBC logging off in $odbcinst_ini" >&2
        exit 1
    fi
    echo "system-deps: psqlODBC logging turned off (CommLog=0, Debug=0) in $where"
}

# run, unless sourced (a test calls quiet_psqlodbc alone)
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    install_missing
    quiet_psqlodbc
fi
