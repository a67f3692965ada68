"""A real `prefect server start` (SQLite, loopback, temporary PREFECT_HOME) for deployment tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class PrefectServer:
    url: str
    home: Path
    log: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            **extra,
        }
        return env

    def prefect(self, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["prefect", *args], cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=timeout
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with running_server(tmp_path_factory.mktemp("prefect-home")) as server:
        yield server


@contextmanager
def running_server(home: Path, **server_env: str) -> Iterator[PrefectServer]:
    """`prefect server start` on a free loopback port; `server_env` only for the server's process
    (e.g. PREFECT_API_DATABASE_CONNECTION_URL)."""
    port = _free_port()
    server = PrefectServer(url=f"http://127.0.0.1:{port}/api", home=home, log=home / "server.log")
    with server.log.open("wb") as log:
        proc = subprocess.Popen(
            ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**server.env(), **server_env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prefect server did not start:\n{server.log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield server
    finally:
        stop(proc)
