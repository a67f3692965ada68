"""A storage server and an emulator host, each a real OpenSSH sshd on loopback with its own keys,
authorized_keys and directory, and volumes extracted to the storage server over sftp.

Bytes read on the storage server are measured there: the kernel's I/O accounting of the storage
sshd's listener (`rchar` in /proc/PID/io) includes every connection's processes once they are
reaped, so a reading that waits until no session is left counts each byte its sessions read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pds import Dataset, load_volume
from tests.support.sshd import SSHD, Sshd
from tests.support.vsi_emulator import IMAGE, SYSTEM, extract_all, site_config

REPO = Path(__file__).resolve().parents[2]
HOST = "lab1"
OWNER = "daemon"  # exists on Debian; the files must end up owned by it, not by the SSH user
CYLINDERS = 20
RANDOM_BYTES = 3 << 20  # incompressible bytes written past cylinder 0, so each volume's transfer shows
VOLUMES = {
    "zt-sysres": ("sysres", [("ZRES01", "0A80")]),
    "zt-data": ("volumes", [("WORK01", "0A90"), ("WORK02", "0A91")]),
}
FIRST = "2024-06-01_10_00_00"


def fill_random(path: Path, seed: int, length: int = RANDOM_BYTES) -> None:
    """Random bytes from 2 MiB on: past cylinder 0 (VOL1 and VTOC), so dasdls still reads the volume."""
    import random

    with path.open("r+b") as f:
        f.seek(2 << 20)
        f.write(random.Random(seed).randbytes(length))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class HostSite:
    root: Path
    storage: Sshd
    host: Sshd
    config_path: Path
    volumes: dict[str, tuple[str, list[tuple[str, str]]]]
    document: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        self.storage.stop()
        self.host.stop()

    @property
    def host_root(self) -> Path:
        return self.root / "host"

    @property
    def image_dir(self) -> Path:
        return self.host_root / IMAGE

    def source(self, volser: str) -> Path:
        return self.root / "source" / f"{volser}.ckd"

    def config(self, name: str = "deploy.yaml", **host: Any) -> str:
        """The site's config with hosts[0] changed by `host` (None removes a key)."""
        document = yaml.safe_load(self.config_path.read_text())
        entry = {**document["hosts"][0], **host}
        document["hosts"][0] = {k: v for k, v in entry.items() if v is not None}
        path = self.root / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return str(path)

    def storage_rchar(self) -> int:
        """Bytes read by the storage server's sshd and its finished sessions."""
        deadline = time.monotonic() + 20
        while self.storage.session_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        for line in Path(f"/proc/{self.storage.process.pid}/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
        raise AssertionError("no rchar in /proc/PID/io")

    def pull_keys(self) -> list[str]:
        return [
            line
            for line in (self.storage.directory / "authorized_keys").read_text().splitlines()
            if "zimage-pull" in line
        ]

    def extract(self, generation: str, components: list[str] | None = None) -> None:
        from flows.extract_component import extract_component

        for component in components or list(self.volumes):
            extract_component(str(self.config_path), component, generation, retry_delay_seconds=0.0)

    def current(self) -> str:
        return os.readlink(self.image_dir / "current")

    def snapshot(self) -> dict[str, str]:
        """sha256 of every file under the host root (what 'nothing written' compares)."""
        out = {}
        if self.host_root.exists():
            for path in sorted(self.host_root.rglob("*")):
                if path.is_symlink():
                    out[str(path)] = "-> " + os.readlink(path)
                elif path.is_file():
                    out[str(path)] = sha256(path)
                else:
                    out[str(path)] = "dir"
        return out


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )


@dataclass
class Cli:
    """A `zimage` command run in its own session; output to files (a killed command's children, such as
    Prefect's temporary server, would hold pipes open)."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        code = self.proc.wait(timeout)
        return code, self.out.read_text(), self.err.read_text()

    def kill(self) -> None:
        """SIGKILL the command itself (not its children), as a crash would."""
        self.proc.kill()
        self.proc.wait()

    def reap(self) -> None:
        """End what is left of its session (its children); only this test's own processes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_cli(directory: Path, *args: str) -> Cli:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    out, err = directory / f"cli-{time.monotonic_ns()}.out", directory / f"cli-{time.monotonic_ns()}.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO, stdout=o, stderr=e, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    return Cli(proc, out, err)


def dasdls(path: Path) -> str:
    if shutil.which("dasdls") is None:
        pytest.skip("Hercules dasdls is not installed (Debian package hercules)")
    done = subprocess.run(["dasdls", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def start_site(
    root: Path,
    make_volumes: Callable[[Path], None],
    volumes: dict[str, tuple[str, list[tuple[str, str]]]],
    image: dict[str, Any] | None = None,
    cylinders: int = CYLINDERS,
) -> HostSite:
    """Storage and host sshd's; `make_volumes(directory)` writes <VOLSER>.ckd there; extracted once (FIRST)."""
    if not Path(SSHD).exists():
        pytest.skip("OpenSSH sshd is not installed (Debian package openssh-server)")
    storage = Sshd.start(root / "storage-sshd")
    host = Sshd.start(root / "host-sshd")
    try:
        (root / "source").mkdir()
        (root / "staging").mkdir()
        make_volumes(root / "source")
        document = site_config(
            root, target=None, volumes=volumes, cylinders=cylinders,  # type: ignore[arg-type]
            storage=storage.endpoint(root=str(root / "staging"),
                                     authorized_keys_file=str(storage.directory / "authorized_keys")),
            agent_options=f" --identity {storage.client_key} --known-hosts {storage.known_hosts}",
        )  # fmt: skip
        del document["target"]
        document["images"][0].update(image or {})  # type: ignore[index]
        document["hosts"] = [host.endpoint(name=HOST, root=str(root / "host"), owner=OWNER, keep=2)]
        # the orchestrator's known_hosts must know the storage server for the host's pull
        known = root / "known_hosts"
        known.write_text(storage.known_hosts.read_text() + host.known_hosts.read_text())
        document["storage"]["known_hosts_file"] = str(known)  # type: ignore[index]
        document["hosts"][0]["known_hosts_file"] = str(known)
        config = root / "deploy.yaml"
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        site = HostSite(root, storage, host, config, volumes, document)
        site.extract(FIRST)
        return site
    except BaseException:
        storage.stop()
        host.stop()
        raise


def _volumes_with_data(directory: Path) -> None:
    for seed, (_, vols) in enumerate(VOLUMES.values()):
        for volser, _ in vols:
            path = load_volume(
                directory / f"{volser}.ckd", volser, [Dataset(f"ZT.{volser}.DATA", dsorg="PS", tracks=2)],
                cylinders=CYLINDERS,
            )  # fmt: skip
            fill_random(path, seed * 10 + len(volser) + ord(volser[-1]))


@pytest.fixture(scope="module")
def host_site(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[HostSite]:
    """Three dasdload volumes, each with a data set and 3 MB of random data past cylinder 0."""
    site = start_site(tmp_path_factory.mktemp("host-site"), _volumes_with_data, VOLUMES)
    try:
        yield site
    finally:
        site.stop()


__all__ = ["HOST", "IMAGE", "OWNER", "SYSTEM", "HostSite", "dasdls", "extract_all", "run_cli", "start_cli"]
