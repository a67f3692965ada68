"""How SSH connections fail, as an operator reads it: a host that accepts TCP but never sends a
banner, paramiko's own log records, and hosts that are only an example's."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from infra import ssh
from tests.support.sshd import Sshd
from zimage.config import SshEndpoint
from zimage.examples import is_example_host

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket on loopback that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_a_host_without_a_banner_is_named_with_the_wait(sshd: Sshd, silent_port: int, records: Records) -> None:
    endpoint = SshEndpoint(**sshd.endpoint(port=silent_port))
    started = time.monotonic()
    with pytest.raises(ssh.ConnectError) as info:
        ssh.connect(endpoint, ssh.Timeouts(connect=2))
    assert time.monotonic() - started < 6
    assert str(info.value).startswith(f"no SSH banner from 127.0.0.1:{silent_port} within 2 s")
    assert "No existing session" not in str(info.value)
    assert info.value.retryable  # an overloaded server may answer next time
    noisy = [r for r in records.records if r.name.startswith("paramiko") and r.levelno >= logging.INFO]
    assert not noisy, [r.getMessage() for r in noisy]


def _paramiko_lines(records: Records) -> list[str]:
    return [r.getMessage() for r in list(records.records) if r.name.startswith("paramiko")]


def test_paramiko_tracebacks_stay_available_at_debug(sshd: Sshd, silent_port: int, records: Records) -> None:
    paramiko_log = logging.getLogger("paramiko")
    before = paramiko_log.level
    paramiko_log.setLevel(logging.DEBUG)
    try:
        with pytest.raises(ssh.ConnectError, match="no SSH banner"):
            ssh.connect(SshEndpoint(**sshd.endpoint(port=silent_port)), ssh.Timeouts(connect=1))
        # paramiko's transport thread logs the traceback as it ends, which may be after connect raised
        deadline = time.monotonic() + 10
        while not any("Traceback" in line for line in _paramiko_lines(records)) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        paramiko_log.setLevel(before)
    lines = _paramiko_lines(records)
    assert any("Traceback" in line for line in lines), lines
    assert all(r.levelno == logging.DEBUG for r in records.records if r.name.startswith("paramiko"))


def test_a_reserved_example_host_fails_at_once_saying_the_config_is_the_example(sshd: Sshd) -> None:
    endpoint = SshEndpoint(**sshd.endpoint(host="zos25a.example.com"))
    with pytest.raises(ssh.ConnectError) as info:
        ssh.connect(endpoint, ssh.Timeouts(connect=2))
    assert "zos25a.example.com is a name reserved for examples" in str(info.value)
    assert "point the run at your own config" in str(info.value)
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("host", "example"),
    [
        ("zos25a.example.com", True),
        ("staging.EXAMPLE.org.", True),
        ("zos.test", True),
        ("192.0.2.7", True),
        ("2001:db8::5", True),
        ("example.company.com", False),
        ("10.0.0.5", False),
        ("zos25a.ibm.com", False),
    ],
)
def test_example_hosts_are_the_reserved_ones(host: str, example: bool) -> None:
    assert is_example_host(host) is example
