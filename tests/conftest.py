"""Shared fixtures. Real-data tests read ../shared/data and skip with a clear message without it.

PostgreSQL tests use STEELSCAN_TEST_PG_URL (a server URL to an admin database) or start a throwaway
local cluster from the PostgreSQL server binaries; without either they skip, saying so.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STEELSCAN_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(name: str) -> Path:
    """Path of a real data set under ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (tests read ../shared/data; see its README)")
    return path


PG_MISSING = ("set STEELSCAN_TEST_PG_URL=postgresql://USER@HOST:PORT/postgres (a server the tests may create "
              "databases on) or install the server binaries (Debian: apt-get install postgresql)")


def _pg_bindir() -> Path | None:
    """A folder with initdb and pg_ctl: PATH first, then Debian's /usr/lib/postgresql/VERSION/bin (newest)."""
    found = shutil.which("initdb")
    debian = [Path(d) for d in glob.glob("/usr/lib/postgresql/*/bin") if Path(d).parent.name.isdigit()]
    dirs = ([Path(found).resolve().parent] if found else []) + sorted(debian, key=lambda d: -int(d.parent.name))
    return next((d for d in dirs if (d / "initdb").is_file() and (d / "pg_ctl").is_file()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server():
    """Admin URL of a PostgreSQL server: STEELSCAN_TEST_PG_URL, or a throwaway cluster stopped at session end."""
    if os.environ.get("STEELSCAN_TEST_PG_URL"):
        from sqlalchemy.engine import make_url

        # psycopg itself takes only plain postgresql:// URLs.
        yield make_url(os.environ["STEELSCAN_TEST_PG_URL"]).set(drivername="postgresql").render_as_string(False)
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL tests: no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin; {PG_MISSING}")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="steelscan-pg-"))  # not pytest's tmp dir: root-only when run as root
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        try:
            os.chown(base, *pwd.getpwnam("postgres")[2:4])
        except KeyError:
            pass
        if not shutil.which("runuser") or base.stat().st_uid == 0:
            base.rmdir()
            pytest.skip(f"PostgreSQL tests: running as root without runuser or a 'postgres' OS user; {PG_MISSING}")
        as_user = [shutil.which("runuser"), "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def pg(tool: str, *args: str) -> None:
        subprocess.run([*as_user, str(bindir / tool), *args], cwd=base, check=True, capture_output=True, text=True,
                       timeout=120)

    watchdog = None
    try:
        # Trust auth, fsync off: a throwaway cluster listening on loopback and a private socket folder only.
        pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        pg("pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(base / "log"),
           "-o", f"-F -h 127.0.0.1 -p {port} -k {base}")
        # pg_ctl detaches the server; should pytest be killed before teardown, this stops it anyway.
        stop = shlex.join([*as_user, str(bindir / "pg_ctl"), "stop", "-m", "immediate", "-D", str(data)])
        watchdog = subprocess.Popen(["sh", "-c", f"while kill -0 {os.getpid()}; do sleep 1; done 2>/dev/null; "
                                                 f"{stop}; rm -rf {shlex.quote(str(base))}"],
                                    cwd=base, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    except subprocess.CalledProcessError as e:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        raise RuntimeError(f"starting a throwaway PostgreSQL failed: {e.cmd}\n{e.stdout}{e.stderr}{log}") from None
    finally:
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(data)],
                           cwd=base, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server):
    """URL of a fresh, empty database on the test server, dropped after the test: tests cannot see each other's rows."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"steelscan_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE: a test may leave a connection open


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
