"""Benchmark: the export mover's volume pass against a plain gzip + sha256 export, one run.

Baseline (what `gzip -c VOL | tee >(sha256sum) | upload; sha256sum VOL` amounts to in Python):
gzip.GzipFile at gzip's default level 6 through shutil.copyfileobj, then the uncompressed file
hashed in a second pass. zimage: datamover.export.export_volume, one pass reading the volume once,
hashing both forms, deflating at level 1 with the fastest module there is (zlib-ng, ISA-L, zlib;
each that imports is measured, zlib first), and sending 64 MiB parts to presigned URLs (a local HTTP server
that counts and drops the bytes).

Volumes: synthetic, 64 KiB blocks of which --random-share are random and the rest runs of one byte
(free space), sized --mb. Each pass runs --repeat times, the fastest counts. Peak memory
(tracemalloc) of export_volume is measured at --mb and at 4 x --mb with 5 MiB parts: flat (bounded
by the part size, whatever the volume size) means the ratio stays near 1.

Run from the repository root: python -m bench.export [--mb 64] [--random-share 0.1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import os
import random
import shutil
import tempfile
import threading
import time
import tracemalloc
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from datamover.export import Device, export_volume
from datamover.moverconfig import PresignedMultipart
from datamover.progress import Progress
from zimage.export import MIN_PART, PART_SIZE, part_plan

MB = 1e6


def synthetic(path: Path, size: int, random_share: float, seed: int = 1) -> Path:
    rng = random.Random(seed)
    block = 64 * 1024
    with path.open("wb") as out:
        for _ in range(size // block):
            out.write(rng.randbytes(block) if rng.random() < random_share else bytes([rng.randrange(256)]) * block)
    return path


class _Sink(BaseHTTPRequestHandler):
    received = 0

    def _drain(self) -> None:
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            left -= len(self.rfile.read(min(left, 1 << 20)))
        type(self).received += int(self.headers.get("Content-Length") or 0)

    def do_PUT(self) -> None:
        self._drain()
        self.send_response(200)
        self.send_header("ETag", '"bench"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self._drain()
        body = b"<CompleteMultipartUploadResult></CompleteMultipartUploadResult>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_DELETE = do_PUT

    def log_message(self, format: str, *args: object) -> None:
        return


def baseline(path: Path) -> float:
    started = time.perf_counter()
    gz_sha = hashlib.sha256()

    class Hashing:
        def write(self, data: bytes) -> int:
            gz_sha.update(data)
            return len(data)

    with path.open("rb") as src, gzip.GzipFile(fileobj=Hashing(), mode="wb", compresslevel=6) as out:  # type: ignore[arg-type]
        shutil.copyfileobj(src, out, 1 << 20)
    raw_sha = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(1 << 20):
            raw_sha.update(block)
    return time.perf_counter() - started


def zimage_pass(path: Path, url: str, module: object, part_size: int = PART_SIZE) -> float:
    size = path.stat().st_size
    part, count = part_plan(size, part_size)
    spec = PresignedMultipart(part, tuple(f"{url}/part/{n}" for n in range(1, count + 1)), f"{url}/complete")
    dev = Device("BENCH1", "0A80", "3390", "3990", "/volumes/BENCH1", str(path), size, None, "")
    progress = Progress()
    progress.add_volume(dev.volser, size, size)
    started = time.perf_counter()
    export_volume(dev, spec, module, progress, threading.Event())
    return time.perf_counter() - started


def peak_memory(path: Path, url: str, module: object) -> int:
    """With the smallest parts S3 allows, so that both volumes span several parts."""
    tracemalloc.start()
    try:
        zimage_pass(path, url, module, MIN_PART)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=64, help="size of the measured volume in MB (default 64)")
    parser.add_argument("--random-share", type=float, default=0.1, help="share of random 64 KiB blocks")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts (shared machines)")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="zimage-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        size = args.mb * 1_000_000 // 65536 * 65536
        small = synthetic(work / "small.raw", size, args.random_share)
        large = synthetic(work / "large.raw", 4 * size, args.random_share, seed=2)
        base = min(baseline(small) for _ in range(args.repeat))
        print(f"volume {size / MB:,.0f} MB, {args.random_share:.0%} random blocks")
        print(f"baseline gzip -6 + second sha256 pass: {base:.2f} s, {size / MB / base:,.1f} MB/s")
        modules = []
        # zlib first: after ISA-L has run in a process, zlib measures about half as fast there
        for name, module in (("zlib", "zlib"), ("zlib-ng", "zlib_ng.zlib_ng"), ("isal", "isal.isal_zlib")):
            try:
                modules.append((name, importlib.import_module(module)))
            except ImportError:
                print(f"{name}: not importable, not measured")
        for name, module in modules:
            seconds = min(zimage_pass(small, url, module) for _ in range(args.repeat))
            print(
                f"zimage export_volume ({name}, level 1, parts to HTTP): {seconds:.2f} s, "
                f"{size / MB / seconds:,.1f} MB/s, ratio {base / seconds:.2f}x"
            )
        name, module = modules[-1]
        low, high = peak_memory(small, url, module), peak_memory(large, url, module)
        print(
            f"peak memory ({name}): {low / MB:,.1f} MB at {size / MB:,.0f} MB, {high / MB:,.1f} MB at "
            f"{4 * size / MB:,.0f} MB: ratio {high / low:.2f} (flat is about 1)"
        )
    finally:
        server.shutdown()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
