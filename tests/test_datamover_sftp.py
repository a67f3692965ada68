"""The mover's own SFTP client (datamover.sftp) against OpenSSH's sftp-server, spoken to over pipes
as `ssh -s host sftp` would: whole files back byte for byte whatever the read sizes, sizes by stat,
and the server's own error for a missing file."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from datamover.sftp import REQUEST, SftpConnection, SftpError

SERVER = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server") if os.path.exists(p)),
              None)  # fmt: skip
pytestmark = pytest.mark.skipif(SERVER is None, reason="OpenSSH's sftp-server is not installed")


@pytest.fixture
def conn() -> Iterator[SftpConnection]:
    connection = SftpConnection([str(SERVER)], "sftp-server")
    yield connection
    connection.close()


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = random.Random(size).randbytes(size)
    path = tmp_path / f"f{size}"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("chunk", [1000, REQUEST, 256 << 10, 5 << 20])
def test_a_file_reads_back_whole_in_any_read_size(conn: SftpConnection, tmp_path: Path, chunk: int) -> None:
    path, data = _file(tmp_path, 3 * REQUEST * 7 + 12345)
    assert conn.size(str(path)) == len(data)
    reader = conn.open(str(path))
    parts = []
    while part := reader.read(chunk):
        assert 0 < len(part) <= min(chunk, REQUEST)  # at most what one reply holds
        parts.append(part)
    reader.close()
    assert b"".join(parts) == data


def test_empty_files_and_several_files_on_one_connection(conn: SftpConnection, tmp_path: Path) -> None:
    for size in (0, 1, REQUEST, REQUEST + 1):
        path, data = _file(tmp_path, size)
        reader = conn.open(str(path))
        got = b""
        while part := reader.read(1 << 20):
            got += part
        assert got == data
        reader.close()


def test_a_missing_file_is_the_servers_error(conn: SftpConnection, tmp_path: Path) -> None:
    with pytest.raises(SftpError, match=r"sftp-server: open .*/nope: No such file"):
        conn.open(str(tmp_path / "nope"))
    with pytest.raises(SftpError, match=r"sftp-server: stat .*/nope: No such file"):
        conn.size(str(tmp_path / "nope"))
