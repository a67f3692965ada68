"""Benchmark: staging a volume file into COS against just reading it.

Makes a file of random bytes (ZIMAGE_BENCH_MB, default 512), then measures
  - the plain read of the file: over sftp from a bench-local sshd on loopback when OpenSSH's
    sshd is installed (one stream, and as many streams as the copier has workers), else the
    local file;
  - the copy of the same file from the local disk into an S3 server (moto, in its own process
    like a remote COS) through infra.cos + infra.transfer: what the upload side alone allows;
  - the copy over sftp into the S3 server (storage.stage_path relay: read here, uploaded from here);
  - the data-local copy (storage.stage_path direct): the storage server uploads the file itself with
    presigned part URLs, against OpenSSH `sftp` reading the same file (`get FILE /dev/null`): the
    target is >= 0.8x of that read.
Reading and uploading overlap, so the sftp copy should run at >= 0.8x the slower of the two sides
(the plain read and the upload side); with paramiko's reads being the slow side, as they were
before pipelining, that is 0.8x the read.
The copy is timed twice: until every part is uploaded (the transfer itself), and until the object
is complete. moto completes a multipart upload by concatenating the parts and computing a CRC64
of the whole object in Python (about 1 s per 100 MB here); COS assembles server-side, so the first
figure is the one that predicts COS. Reads and copies alternate; the best of each is kept.
Prints MB/s, the CPU seconds each process spent (this one, sshd, the S3 server) and how many cores
were busy — on a small machine the S3 server and sshd compete with the copier for the same cores,
which a remote COS does not — and the ratios. Run: python -m bench.stage_to_cos (from the repository root).

Environment: ZIMAGE_BENCH_MB (size), ZIMAGE_BENCH_WORKERS (copier workers, default 4),
ZIMAGE_BENCH_REPEAT (best of N runs, default 2), ZIMAGE_BENCH_LOCAL=1 (skip sftp).
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from infra.cos import CosStore, HmacCredentials, make_client
from infra.secrets import Secret
from infra.sftp_source import open_source
from infra.storage_upload import upload_from_storage
from infra.transfer import LocalFileSource, MiB, RangeSource, TransferConfig, choose_part_size, plan_parts
from zimage.config import Storage

BUCKET = "zimage-bench"
REGION = "jp-tok"
TICKS = os.sysconf("SC_CLK_TCK")


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * MiB))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_s3_server(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=(directory / "moto.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the S3 server did not start; see {directory / 'moto.log'}")


def read_all(source: RangeSource, streams: int, part_size: int) -> None:
    """Read every byte once with `streams` readers in parallel and discard it."""
    parts = plan_parts(source.size(), part_size)

    def read_share(share: int) -> None:
        reader = source.open()
        try:
            for part in parts[share::streams]:
                reader.read(part.offset, part.length)
        finally:
            reader.close()

    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(read_share, range(streams)))


def process_cpu(pid: int) -> float:
    """CPU seconds of a process and of its children it has reaped (sshd's ended sessions)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    seconds: float  # until the work was done (for a copy: every part uploaded)
    cpu: dict[str, float]  # CPU seconds by process: this one, sshd, the S3 server
    total_seconds: float = 0.0  # a copy: until the object was complete


class Meter:
    def __init__(self, pids: dict[str, int]):
        self.pids = pids

    def _cpu(self) -> dict[str, float]:
        return {"self": own_cpu(), **{name: process_cpu(pid) for name, pid in self.pids.items()}}

    def measure(self, work: Callable[[], float | None]) -> Run:
        before, start = self._cpu(), time.monotonic()
        done = work()
        total = time.monotonic() - start
        time.sleep(0.5)  # ended sshd sessions are reaped, so their CPU time is counted
        after = self._cpu()
        return Run(done or total, {k: after[k] - before[k] for k in after}, total)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    size = int(os.environ.get("ZIMAGE_BENCH_MB", "512")) * MiB
    workers = int(os.environ.get("ZIMAGE_BENCH_WORKERS", "4"))
    runs = int(os.environ.get("ZIMAGE_BENCH_REPEAT", "2"))
    use_sftp = os.environ.get("ZIMAGE_BENCH_LOCAL") != "1" and shutil.which("sshd") is not None
    work = Path(tempfile.mkdtemp(prefix="zimage-bench-"))
    sshd = s3 = None
    try:
        stage = work / "stage"
        stage.mkdir()
        path = stage / "BENCH1_2024-01-01_00_00_00.gz"
        digest = make_file(path, size)
        pids: dict[str, int] = {}
        if use_sftp:
            from tests.support.sshd import Sshd

            sshd = Sshd.start(work / "sshd")
            pids["sshd"] = sshd.process.pid
            storage = Storage(**sshd.endpoint(root=str(stage)))
            source = open_source(storage, str(path))
        else:
            source = LocalFileSource(path)
        s3, endpoint = start_s3_server(work)
        pids["s3"] = s3.pid
        creds = HmacCredentials(Secret("b" * 32, "bench"), Secret("c" * 48, "bench"))
        client = make_client(endpoint, REGION, creds)
        client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        store = CosStore(client, BUCKET)
        config = TransferConfig(workers=workers)
        part_size = choose_part_size(size, workers)
        meter = Meter(pids)

        def copy(origin: RangeSource) -> float:
            """Seconds until every part is uploaded (the object is complete when this returns)."""
            store.delete("bench/volume.gz")
            start = time.monotonic()
            moved = [0.0]

            def progress(done: int, total: int, rate: float) -> None:
                if done == size:
                    moved[0] = time.monotonic() - start

            result = store.upload_stream("bench/volume.gz", origin, digest, config=config, progress=progress)
            assert not result.skipped and result.sha256 == digest
            return moved[0]

        kind = "sftp" if use_sftp else "local"
        load = os.getloadavg()[0]
        print(
            f"file: {size / MiB:.0f} MiB via {kind}; copier: {workers} workers, {part_size // MiB} MiB parts; "
            f"{os.cpu_count()} CPUs, load average {load:.1f} before the run"
        )
        def openssh_sftp() -> None:
            batch = work / "batch"
            batch.write_text(f"get {path} /dev/null\n")
            assert sshd is not None
            subprocess.run(
                ["sftp", "-q", "-b", str(batch), "-i", str(sshd.client_key), "-P", str(sshd.port),
                 "-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                 f"{sshd.user}@{sshd.host}"],
                check=True, capture_output=True,
            )  # fmt: skip

        def direct() -> float:
            """Seconds until the storage server has uploaded every part (then this machine completes)."""
            store.delete("bench/volume.gz")
            start, sent = time.monotonic(), [0.0]

            def on_line(line: str) -> None:
                if " part(s), " in line:  # the mover's last line: every part is in
                    sent[0] = time.monotonic() - start

            result = upload_from_storage(storage, store, "bench/volume.gz", str(path), size, digest, "application/gzip",
                                         {}, on_line, config)  # fmt: skip
            assert not result.skipped and result.parts_uploaded == result.parts
            return sent[0]

        results: dict[str, list[Run]] = {"read1": [], "readn": [], "upload": [], "copy": []}
        if use_sftp:
            results |= {"sftp": [], "direct": []}
        for _ in range(runs):  # alternate, so that other load on the machine hits all alike
            results["read1"].append(meter.measure(lambda: read_all(source, 1, part_size)))
            results["readn"].append(meter.measure(lambda: read_all(source, workers, part_size)))
            results["upload"].append(meter.measure(lambda: copy(LocalFileSource(path))))
            results["copy"].append(meter.measure(lambda: copy(source)))
            if use_sftp:
                results["sftp"].append(meter.measure(openssh_sftp))
                results["direct"].append(meter.measure(direct))
        assert store.head("bench/volume.gz") is not None
        best = {name: min(found, key=lambda r: r.seconds) for name, found in results.items()}
        mb = size / 1e6

        def line(label: str, run: Run, seconds: float | None = None) -> None:
            spent = seconds or run.seconds
            cpu = ", ".join(f"{k} {v:.1f}" for k, v in run.cpu.items())
            busy = sum(run.cpu.values()) / run.total_seconds
            print(f"{label:42s} {mb / spent:7.1f} MB/s   cpu-s: {cpu}; {busy:.1f} cores busy")

        line(f"plain {kind} read, 1 stream", best["read1"])
        line(f"plain {kind} read, {workers} streams", best["readn"])
        line("upload side alone (local file -> COS)", best["upload"])
        line(f"{kind} -> COS copy, all parts uploaded", best["copy"])
        line(f"{kind} -> COS copy, object complete (moto)", best["copy"], best["copy"].total_seconds)
        read = min(best["read1"].seconds, best["readn"].seconds)
        slower = max(read, best["upload"].seconds)
        copied = best["copy"].seconds
        print(f"ratio copy / plain read, 1 stream:         {best['read1'].seconds / copied:7.2f}")
        print(f"ratio copy / best plain read:              {read / copied:7.2f}")
        print(f"ratio copy / slower side (read, upload):   {slower / copied:7.2f}  (target >= 0.80)")
        if use_sftp:
            line("OpenSSH sftp read (get FILE /dev/null)", best["sftp"])
            line("data-local copy, all parts uploaded", best["direct"])
            line("data-local copy, object complete (moto)", best["direct"], best["direct"].total_seconds)
            ratios = [a.seconds / b.seconds for a, b in zip(results["sftp"], results["direct"], strict=True)]
            print(f"ratio data-local copy / OpenSSH sftp read:  {best['sftp'].seconds / best['direct'].seconds:7.2f}"
                  f"  (target >= 0.80; rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
            print(f"ratio data-local copy / upload side alone: {best['upload'].seconds / best['direct'].seconds:7.2f}"
                  "  (what the S3 server here can take in; a remote COS spends none of this machine's CPU)")
    finally:
        if s3 is not None:
            s3.terminate()
            s3.wait(timeout=10)
        if sshd is not None:
            sshd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
