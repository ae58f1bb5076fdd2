"""A real, throwaway PostgreSQL server for the tests: ``initdb`` in a temporary directory, listening on a unix socket
there only (no TCP port to collide with), stopped and deleted at the end of the session.

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the ``postgres`` system user that
the Debian package creates (``runuser``), in a directory that user owns. Without server binaries the tests that need
it skip, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import psycopg
import pytest

PORT = 5432  # only names the socket file inside our private directory


def find_bindir() -> Path | None:
    """Where initdb/pg_ctl live: ``$PG_BINDIR``, the newest Debian ``/usr/lib/postgresql/N/bin``, or ``PATH``."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    initdb = shutil.which("initdb")
    candidates.append(str(Path(initdb).parent) if initdb else "")
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


class PostgresServer:
    """A running server; ``url(schema)`` gives a libpq URL that works in a schema of its own."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="om-pg-", dir="/tmp"))  # short: unix socket paths max ~107 bytes
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        # cwd: the server's own directory, which the postgres user can always enter (the checkout may not be).
        done = subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        options = f"-k {self.root} -p {PORT} -c listen_addresses='' -c fsync=off -c max_connections=60"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                  "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, schema: str | None = None, **options: str) -> str:
        query = {"host": str(self.root), "port": str(PORT), "user": "postgres"}
        settings = [f"-csearch_path={schema}"] if schema else []
        settings += [f"-c{name}={value}" for name, value in options.items()]
        if settings:
            query["options"] = " ".join(settings)
        return "postgresql:///postgres?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())

    def new_schema(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")  # a generated identifier, not input
        return name

    def drop_schema(self, name: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session (skips when no server binaries are installed)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install -y postgresql")
    server = PostgresServer(bindir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture
def postgres_schema(postgres_server: PostgresServer) -> Iterator[str]:
    """An empty schema of its own on the session's server (``postgres_server.url(schema)``), dropped after the test."""
    schema = postgres_server.new_schema()
    yield schema
    postgres_server.drop_schema(schema)
