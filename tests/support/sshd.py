"""A real OpenSSH sshd on 127.0.0.1 for tests and benchmarks.

It has its own host key and one key-authenticated user: the current user (root on the test
machines) through an AuthorizedKeysFile in the temporary directory. It plays both the source
system and the storage server. `kill_sessions()` kills the per-connection sshd children, which
drops every open connection as a network failure would, while the listener stays up.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str = "zimage-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


@dataclass
class Sshd:
    directory: Path
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]

    host = "127.0.0.1"

    @classmethod
    def start(cls, directory: Path) -> Sshd:
        directory.mkdir(parents=True, exist_ok=True)
        host_key = keygen(directory / "ssh_host_ed25519_key", "host")
        client_key = keygen(directory / "client_key")
        authorized = directory / "authorized_keys"
        authorized.write_text((directory / "client_key.pub").read_text())
        port = free_port()
        config = directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "MaxStartups 64:30:128",
                    "MaxSessions 64",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "sshd.log", "wb"),  # noqa: SIM115 - kept open for the server's life
        )
        public = (directory / "ssh_host_ed25519_key.pub").read_text().split()
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {public[0]} {public[1]}\n")
        server = cls(directory, port, getpass.getuser(), client_key, known_hosts, process)
        server._wait_listening()
        return server

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "sshd.log").read_text()
                raise RuntimeError(f"sshd exited with status {self.process.returncode}: {log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on port {self.port} within 10 s")

    def _processes(self) -> dict[int, tuple[int, str]]:
        """pid -> (parent pid, command name) of every process."""
        table = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat.split("(", 1)[1].rsplit(")", 1)
            table[int(entry.name)] = (int(rest.split()[1]), name)
        return table

    def session_processes(self) -> list[int]:
        """The sshd processes serving connections: the listener's sshd descendants (with privilege
        separation each connection has a monitor and a session process, both holding the socket)."""
        table = self._processes()
        found: list[int] = []
        parents = {self.process.pid}
        while True:
            new = [pid for pid, (ppid, name) in table.items() if ppid in parents and pid not in found
                   and name.startswith("sshd")]
            if not new:
                return found
            found += new
            parents = set(new)

    def kill_sessions(self) -> int:
        """Kill every connection's sshd processes: all open connections drop, as when the network
        fails; commands they ran lose their connection. Returns how many processes were killed."""
        killed = 0
        for pid in self.session_processes():
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        return killed

    def wrong_known_hosts(self, path: Path) -> Path:
        """A known_hosts file that names another key for this server."""
        other = keygen(self.directory / f"other_host_key_{time.monotonic_ns()}", "impostor")
        public = other.with_suffix(".pub").read_text().split()
        path.write_text(f"[127.0.0.1]:{self.port} {public[0]} {public[1]}\n")
        return path

    def stop(self) -> None:
        self.kill_sessions()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def endpoint(self, **extra: object) -> dict[str, object]:
        """Config keys of an SSH endpoint (storage or source) on this server."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "private_key_file": str(self.client_key),
            "known_hosts_file": str(self.known_hosts),
            **extra,
        }


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    if not Path(SSHD).exists():
        pytest.skip("OpenSSH sshd is not installed (Debian package openssh-server)")
    server = Sshd.start(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        server.stop()
