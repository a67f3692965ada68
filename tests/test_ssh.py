"""infra.ssh and infra.sftp_read against a real sshd on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from infra import ssh
from infra.sftp_read import ParallelReader, SftpReadError
from tests.support.sshd import Sshd, keygen
from zimage.config import SshEndpoint

pytestmark = pytest.mark.integration


def endpoint(sshd: Sshd, **extra: object) -> SshEndpoint:
    return SshEndpoint(**sshd.endpoint(**extra))


def test_runs_a_command_and_keeps_status_stdout_and_stderr(sshd: Sshd) -> None:
    with ssh.connect(endpoint(sshd)) as session:
        result = session.run("echo out; echo err >&2; exit 3", timeout=30)
    assert result.status == 3
    assert result.stdout == b"out\n"
    assert result.stderr_text == "err"


def test_unknown_host_is_refused_naming_the_host(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(ssh.HostKeyError, match=r"host key of \[127\.0\.0\.1\]:\d+ .* is not in"):
        ssh.connect(endpoint(sshd, known_hosts_file=str(empty)))


def test_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    wrong = sshd.wrong_known_hosts(tmp_path / "known_hosts")
    with pytest.raises(ssh.HostKeyError, match=r"host key of 127\.0\.0\.1:\d+ does not match"):
        ssh.connect(endpoint(sshd, known_hosts_file=str(wrong)))


def test_missing_known_hosts_file_is_a_host_key_error(sshd: Sshd, tmp_path: Path) -> None:
    with pytest.raises(ssh.HostKeyError, match="does not exist"):
        ssh.connect(endpoint(sshd, known_hosts_file=str(tmp_path / "absent")))


def test_a_key_the_server_does_not_know_fails_authentication(sshd: Sshd, tmp_path: Path) -> None:
    stranger = keygen(tmp_path / "stranger")
    with pytest.raises(ssh.AuthError, match="authentication failed"):
        ssh.connect(endpoint(sshd, private_key_file=str(stranger)))


def test_missing_private_key_file_is_named(sshd: Sshd, tmp_path: Path) -> None:
    with pytest.raises(ssh.KeyFileError, match="absent_key"):
        ssh.connect(endpoint(sshd, private_key_file=str(tmp_path / "absent_key")))


@pytest.mark.usefixtures("prefect_harness")
def test_the_private_key_may_come_from_a_prefect_secret_block(sshd: Sshd) -> None:
    from prefect.blocks.system import Secret

    Secret(value=sshd.client_key.read_text()).save("zimage-test-client-key", overwrite=True)
    with ssh.connect(endpoint(sshd, private_key_file=None, private_key_block="zimage-test-client-key")) as session:
        assert session.run("true", timeout=30).status == 0


def test_nothing_listening_is_a_retryable_connect_error(sshd: Sshd) -> None:
    from tests.support.sshd import free_port

    with pytest.raises(ssh.ConnectError) as info:
        ssh.connect(endpoint(sshd, port=free_port()))
    assert info.value.retryable


def test_a_command_running_too_long_times_out(sshd: Sshd) -> None:
    with ssh.connect(endpoint(sshd)) as session, pytest.raises(ssh.CommandTimeout, match="did not finish"):
        session.run("exec sleep 3", timeout=0.5)


def test_a_dropped_connection_ends_a_running_command(sshd: Sshd, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with ssh.connect(endpoint(sshd)) as session:
        killer = threading.Thread(target=lambda: (_wait_for(marker), sshd.kill_sessions()))
        killer.start()
        with pytest.raises(ssh.ConnectionLost) as info:
            session.run(f"touch {marker}; exec sleep 5", timeout=30)
        killer.join()
    assert info.value.retryable


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


# --- parallel SFTP reads -----------------------------------------------------------------------


@contextmanager
def _client(sshd: Sshd):
    with ssh.connect(endpoint(sshd)) as session:
        sftp = session.open_sftp()
        try:
            yield sftp
        finally:
            sftp.close()


@pytest.fixture(scope="module")
def remote_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sftp") / "data.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 12345))  # not a multiple of any block
    return path


@pytest.mark.parametrize("streams", [1, 3])
def test_parallel_reader_returns_the_file_in_order(sshd: Sshd, remote_file: Path, streams: int) -> None:
    data = remote_file.read_bytes()
    with ParallelReader(lambda: _client(sshd), str(remote_file), len(data), streams=streams,
                        segment=256 * 1024) as reader:
        got = b"".join(reader.chunks())
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_parallel_reader_reads_a_range_as_a_file(sshd: Sshd, remote_file: Path) -> None:
    data = remote_file.read_bytes()
    offset, length = 1_000_001, 700_000
    with ParallelReader(lambda: _client(sshd), str(remote_file), len(data), offset=offset, length=length,
                        segment=100_000) as reader:
        pieces = []
        while piece := reader.read(65_537):
            pieces.append(piece)
    assert b"".join(pieces) == data[offset : offset + length]


def test_parallel_reader_reports_a_missing_file(sshd: Sshd, tmp_path: Path) -> None:
    with ParallelReader(lambda: _client(sshd), str(tmp_path / "absent"), 10) as reader, \
            pytest.raises(SftpReadError, match="absent"):
        reader.read()
