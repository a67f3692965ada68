"""A real PostgreSQL (Debian package `postgresql`) for the scale tests: a new cluster in a temporary
directory, on a free loopback port, run by an unprivileged user (the `postgres` account when the tests
run as root: PostgreSQL refuses to run as root), with a `prefect` role and database."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.sshd import free_port


def _bindir() -> Path | None:
    # Debian keeps the server tools out of PATH, per major version
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


@dataclass
class Postgres:
    directory: Path  # data directory, log and socket
    port: int
    password: str
    run_as: list[str]  # command prefix running a tool as the cluster's owner
    bindir: Path

    @property
    def url(self) -> str:
        """PREFECT_API_DATABASE_CONNECTION_URL for the `prefect` role and database."""
        return f"postgresql+asyncpg://prefect:{self.password}@127.0.0.1:{self.port}/prefect"

    def tool(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.run_as, str(self.bindir / name), *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"  # not the arguments: a password
        return done

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser over the cluster's socket; its rows as psql -At prints them."""
        socket = str(self.directory)
        return self.tool("psql", "-h", socket, "-p", str(self.port), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-At", "-c", statement).stdout

    def running(self) -> bool:
        done = subprocess.run([*self.run_as, str(self.bindir / "pg_ctl"), "status", "-D", str(self.directory / "data")],
                              capture_output=True, text=True, check=False)
        return done.returncode == 0


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; .ci/setup installs it)")
    run_as: list[str] = []
    # not under pytest's tmp_path: the cluster's owner must be able to reach it
    directory = Path(tempfile.mkdtemp(prefix="zimage-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    server = Postgres(directory, free_port(), secrets.token_hex(16), run_as, bindir)
    try:
        server.tool("initdb", "-D", str(directory / "data"), "-U", "postgres", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "-E", "UTF8")
        options = f"-p {server.port} -k {directory} -c listen_addresses=127.0.0.1"
        server.tool("pg_ctl", "start", "-w", "-D", str(directory / "data"), "-o", options,
                    "-l", str(directory / "postgres.log"))
        server.sql(f"CREATE ROLE prefect LOGIN PASSWORD '{server.password}'")
        server.sql("CREATE DATABASE prefect OWNER prefect")
        yield server
    finally:
        if (directory / "data" / "postmaster.pid").exists():
            server.tool("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(directory / "data"))
        shutil.rmtree(directory, ignore_errors=True)
