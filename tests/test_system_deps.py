""".ci/system-deps.sh turns psqlODBC's logging off in the PostgreSQL driver sections only.

Debian's odbc-postgresql registers its drivers with `CommLog = 1`, which leaves a
/tmp/psqlodbc_*.log behind every process that connects. The script's `quiet_psqlodbc` is run
alone (the script sourced) on a copy of that file, so no package is installed and the machine's
own /etc/odbcinst.ini is not touched.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / ".ci" / "system-deps.sh"

# /usr/share/psqlodbc/odbcinst.ini.template (Debian 12), as odbcinst writes it out, followed by
# the MariaDB driver's section, which keeps a CommLog of its own to show it is left alone
DEBIAN_ODBCINST_INI = """\
[PostgreSQL ANSI]
Description\t= PostgreSQL ODBC driver (ANSI version)
Driver\t\t= psqlodbca.so
Setup\t\t= libodbcpsqlS.so
Debug\t\t= 0
CommLog\t\t= 1

[PostgreSQL Unicode]
Description=PostgreSQL ODBC driver (Unicode version)
Driver=psqlodbcw.so
Setup=libodbcpsqlS.so
Debug=1
CommLog=1
UsageCount=1

[MariaDB Unicode]
Driver=libmaodbc.so
CommLog=1
"""


def quiet_psqlodbc(ini: Path) -> str:
    result = subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}" && quiet_psqlodbc'],
        env={"PATH": "/usr/bin:/bin", "ODBCINST_INI": str(ini)},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout + result.stderr


def test_logging_is_turned_off_in_the_postgresql_sections_only(tmp_path: Path) -> None:
    ini = tmp_path / "odbcinst.ini"
    ini.write_text(DEBIAN_ODBCINST_INI)

    said = quiet_psqlodbc(ini)

    assert said == (
        "system-deps: psqlODBC logging turned off (CommLog=0, Debug=0) in"
        f" [PostgreSQL Unicode], [PostgreSQL ANSI] of {ini}\n"
    )
    assert ini.read_text() == (
        DEBIAN_ODBCINST_INI.replace("CommLog\t\t= 1", "CommLog\t\t= 0").replace(
            "Debug=1\nCommLog=1", "Debug=0\nCommLog=0"
        )
    )
    assert ini.read_text().endswith("[MariaDB Unicode]\nDriver=libmaodbc.so\nCommLog=1\n")


def test_a_second_run_changes_nothing_and_says_so(tmp_path: Path) -> None:
    ini = tmp_path / "odbcinst.ini"
    ini.write_text(DEBIAN_ODBCINST_INI)
    quiet_psqlodbc(ini)
    once = ini.read_text()

    said = quiet_psqlodbc(ini)

    assert said.startswith("system-deps: psqlODBC logging already off")
    assert ini.read_text() == once
