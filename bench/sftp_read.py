"""SFTP read throughput of zimage against OpenSSH's sftp client, same file, same sshd, loopback.

    python -m bench.sftp_read [--size-mb 512] [--extract-gb 1] [--workdir DIR]

Starts its own sshd on 127.0.0.1 (as the tests do), writes a file of random bytes, reads it with
`sftp get` (the baseline) and with zimage's ParallelReader in several set-ups, and prints MB/s and
the ratio to the baseline. With --extract-gb it also runs zimage-extract on a volume of that size
over sftp and prints the agent's peak memory (the bound is 200 MB).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko

from infra import ssh
from infra.sftp_read import BLOCK, ParallelReader
from tests.support.sshd import Sshd
from zimage.config import SshEndpoint

REPO = Path(__file__).resolve().parents[1]


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def seconds(run: Callable[[], object]) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def compare(label: str, size: int, run: Callable[[], object], baseline: Callable[[], object],
            rounds: int = 3) -> float:
    """Run the baseline and the candidate back to back `rounds` times and print the median ratio:
    the machine is shared, and pairing keeps both runs under the same load."""
    ratios, rates = [], []
    for _ in range(rounds):
        base = seconds(baseline)
        mine = seconds(run)
        ratios.append(base / mine)
        rates.append((size / 1e6 / base, size / 1e6 / mine))
    ratio = statistics.median(ratios)
    best_base, best_mine = max(r[0] for r in rates), max(r[1] for r in rates)
    print(f"{label:<58} {best_mine:7.1f} MB/s (OpenSSH {best_base:6.1f})  median ratio {ratio:4.2f}x", flush=True)
    return ratio


def openssh_get(server: Sshd, path: Path) -> None:
    subprocess.run(
        ["sftp", "-q", "-b", "-", "-i", str(server.client_key), "-o", f"UserKnownHostsFile={server.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-P", str(server.port),
         f"{server.user}@{server.host}"],
        input=f"get {path} /dev/null\n".encode(), check=True, capture_output=True,
    )


def drain(reader: ParallelReader, expected: str) -> None:
    digest = hashlib.sha256()
    with reader:
        for chunk in reader.chunks():
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise SystemExit("zimage read returned different bytes")


def paramiko_prefetch(endpoint: SshEndpoint, path: Path) -> None:
    with ssh.connect(endpoint) as session:
        sftp = session.open_sftp()
        with sftp.open(str(path), "rb") as f:
            f.prefetch()
            while f.read(1 << 20):
                pass
        sftp.close()


def read_benchmarks(server: Sshd, workdir: Path, size: int) -> None:
    path = workdir / "bench.bin"
    print(f"writing {size / 1e6:.0f} MB of random bytes to {path}", flush=True)
    expected = write_random(path, size)
    endpoint = SshEndpoint(**server.endpoint())

    @contextmanager
    def own_connection() -> Iterator[paramiko.SFTPClient]:
        with ssh.connect(endpoint) as session:
            sftp = session.open_sftp()
            try:
                yield sftp
            finally:
                sftp.close()

    shared = ssh.connect(endpoint)

    @contextmanager
    def channel_on_shared() -> Iterator[paramiko.SFTPClient]:
        sftp = shared.open_sftp()
        try:
            yield sftp
        finally:
            sftp.close()

    openssh_get(server, path)  # warm the page cache
    baseline = lambda: openssh_get(server, path)  # noqa: E731
    compare("paramiko get-style prefetch, 1 client", size, lambda: paramiko_prefetch(endpoint, path), baseline)
    for streams, factory, block, how in (
        (1, own_connection, 32 * 1024, "1 connection, 32 KiB reads"),
        (2, own_connection, 32 * 1024, "2 connections, 32 KiB reads"),
        (1, own_connection, BLOCK, "1 connection"),
        (2, channel_on_shared, BLOCK, "2 SFTP channels on 1 connection"),
        (2, own_connection, BLOCK, "2 connections (zimage default)"),
        (3, own_connection, BLOCK, "3 connections"),
    ):
        compare(f"zimage ParallelReader, {how}", size,
                lambda n=streams, f=factory, b=block: drain(
                    ParallelReader(f, str(path), size, streams=n, block=b), expected),
                baseline)
    shared.close()
    path.unlink()


def extract_memory(server: Sshd, workdir: Path, size: int) -> None:
    volume = workdir / "VOL001.ckd"
    print(f"writing a {size / 1e9:.1f} GB volume (half random, half zero blocks)", flush=True)
    with volume.open("wb") as f:
        zero = bytes(1 << 20)
        for i in range(size >> 20):
            f.write(os.urandom(1 << 20) if i % 2 else zero)
    target = workdir / "VOL001_2024-01-01_00_00_00.gz"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.extract_agent", "--volume", str(volume),
         "--target", f"sftp://{server.user}@{server.host}:{server.port}{target}",
         "--identity", str(server.client_key), "--known-hosts", str(server.known_hosts)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    peak_kb = 0
    while process.poll() is None:
        # VmHWM is the peak resident size of the process since its exec (rusage of a child would
        # also count the pages it shared with this process before the exec).
        try:
            status_lines = Path(f"/proc/{process.pid}/status").read_text().splitlines()
            peak_kb = max(peak_kb, *(int(x.split()[1]) for x in status_lines if x.startswith("VmHWM:")))
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    seconds = time.perf_counter() - began
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"zimage-extract failed: {err.decode()}")
    peak_mb = peak_kb / 1024
    print(f"zimage-extract of {size / 1e9:.1f} GB over sftp: {size / 1e6 / seconds:.1f} MB/s, "
          f"peak memory {peak_mb:.0f} MB (bound 200 MB) {'ok' if peak_mb < 200 else 'OVER'}")
    print(f"  report: {out.decode().strip()}")
    volume.unlink()
    target.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--extract-gb", type=float, default=1.0, help="0 skips the memory measurement")
    parser.add_argument("--workdir", type=Path, help="default: a temporary directory")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="zimage-bench-"))
    server = Sshd.start(workdir / "sshd")
    try:
        read_benchmarks(server, workdir, args.size_mb << 20)
        if args.extract_gb:
            extract_memory(server, workdir, int(args.extract_gb * (1 << 30)))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
