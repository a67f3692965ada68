"""Storage server → emulator host: deploy-host's direct path against OpenSSH `scp` of the same file
between the same two machines, and the host-side mover's peak memory as the volume grows.

    python -m bench.stage_to_host [--size-mb 128] [--memory-mb 64,256] [--random-share 0.6] [--rounds 3]

Starts two sshd's on 127.0.0.1 (storage and host, as the tests do), writes a volume of which
`--random-share` is incompressible, gzips it onto the storage server, then in each round runs
`scp` of the .gz from storage to the host's disk (the baseline) and the data mover's deploy of that
volume on the host (pull over the host's own ssh + SFTP, gunzip, sha256, VOL1, sparse write, set
switch), each round into an image of its own so that the volume is pulled, never copied on the host.
Prints compressed MB/s of both and the median ratio. With --memory-mb, deploys volumes of
those sizes and prints the mover's peak RSS for each (flat in volume size: the stream is bounded).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra import host as hosts
from tests.support.sshd import Sshd
from zimage.config import Host, Storage

GEN = "2024-06-01_10_00_00"


def make_volume(path: Path, size: int, random_share: float, seed: int) -> str:
    """A volume of `size` bytes, 1 MiB blocks random or zero; returns its sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            block = rng.randbytes(n) if rng.random() < random_share else bytes(n)
            digest.update(block)
            f.write(block)
            left -= n
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def stage(raw: Path, sha: str, staging: Path, volser: str) -> dict[str, Any]:
    staging.mkdir(parents=True, exist_ok=True)
    gz = staging / f"{volser}_{GEN}.gz"
    with raw.open("rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return {
        "volser": volser, "file_name": gz.name, "directory": str(staging), "devnum": "0A80", "devtype": "3390",
        "size": raw.stat().st_size, "sha256": sha, "gz_sha256": file_sha256(gz),
        "gz_size": gz.stat().st_size,
    }  # fmt: skip


def scp(storage: Sshd, source: str, target: Path) -> None:
    subprocess.run(
        ["scp", "-q", "-i", str(storage.client_key), "-o", f"UserKnownHostsFile={storage.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-P", str(storage.port),
         f"{storage.user}@{storage.host}:{source}", str(target)],
        check=True, capture_output=True,
    )  # fmt: skip


def deploy(storage_cfg: Storage, host_cfg: Host, image: str, volume: dict[str, Any], n: int) -> dict[str, Any]:
    set_name = f"{GEN}-{n:08x}"
    document = {
        "image": image, "set": set_name, "host": host_cfg.name, "generations": {"c": GEN}, "ipl": "ipl 0a80",
        "network": {}, "network_symbols": "NOT written: benchmark", "volumes": [
            {"volser": volume["volser"], "devnum": "0A80", "devtype": "3390", "component": "c", "generation": GEN,
             "size": volume["size"], "extracted_sha256": volume["sha256"]}],
    }  # fmt: skip
    job = {
        "action": "deploy", "root": host_cfg.root, "image": image, "owner": host_cfg.owner, "set": set_name,
        "data_path": "direct", "volumes": [volume], "files": {"devmap": "", "ipl": "ipl 0a80\n"},
        "set_document": document, "remove": [], "progress_every": 60.0,
    }  # fmt: skip
    with hosts.pulling_session(host_cfg, storage_cfg, "127.0.0.1", image) as (session, key):
        job["storage"] = {
            "host": storage_cfg.host, "port": storage_cfg.port, "username": storage_cfg.username,
            "private_key": key.private_text, "known_hosts": hosts.storage_known_hosts(storage_cfg),
        }  # fmt: skip
        return hosts.run_mover(session, host_cfg, job, lambda line: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=128)
    parser.add_argument("--memory-mb", default="64,256", help="volume sizes for the peak memory check ('' skips)")
    parser.add_argument("--random-share", type=float, default=0.6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-host-"))
    storage, host = Sshd.start(work / "storage-sshd"), Sshd.start(work / "host-sshd")
    try:
        known = work / "known_hosts"
        known.write_text(storage.known_hosts.read_text() + host.known_hosts.read_text())
        storage_cfg = Storage(**{**storage.endpoint(root=str(work / "staging")), "known_hosts_file": str(known),
                                 "authorized_keys_file": str(storage.directory / "authorized_keys")})  # fmt: skip
        host_cfg = Host(**{**host.endpoint(name="bench", root=str(work / "host"), owner="root"),
                           "known_hosts_file": str(known), "keep": 1})  # fmt: skip
        size = args.size_mb << 20
        raw = work / "BENCH1.raw"
        print(f"volume: {args.size_mb} MiB, {args.random_share:.0%} incompressible", flush=True)
        volume = stage(raw, make_volume(raw, size, args.random_share, seed=1), work / "staging", "BENCH1")
        gz_mb = volume["gz_size"] / 1e6
        source = f"{volume['directory']}/{volume['file_name']}"
        ratios, rates = [], []
        for n in range(args.rounds):
            target = work / "scp-copy.gz"
            began = time.perf_counter()
            scp(storage, source, target)
            base = time.perf_counter() - began
            target.unlink()
            began = time.perf_counter()
            # an image of its own each round: a set already on the host would be copied there, not pulled
            result = deploy(storage_cfg, host_cfg, f"bench{n}", volume, n)
            mine = time.perf_counter() - began
            shutil.rmtree(work / "host" / f"bench{n}")
            assert result["volumes"][0]["origin"] == "transferred", result
            ratios.append(base / mine)
            rates.append((gz_mb / base, gz_mb / mine, result["peak_rss_kb"]))
            cpu = result["cpu_seconds"]
            print(f"  round {n + 1}: scp {base:.2f} s, deploy {mine:.2f} s (host-side CPU: mover {cpu['mover']:.2f} s, "
                  f"its ssh {cpu['ssh']:.2f} s)", flush=True)
        best_base, best_mine = max(r[0] for r in rates), max(r[1] for r in rates)
        print(f"storage -> host, {gz_mb:.0f} MB compressed ({volume['size'] / 1e6:.0f} MB volume):")
        print(f"  OpenSSH scp            {best_base:7.1f} MB/s")
        print(f"  deploy-host direct     {best_mine:7.1f} MB/s (pull, gunzip, sha256, VOL1, sparse write, switch)")
        print(f"  median ratio           {statistics.median(ratios):7.2f}x of scp (rounds: "
              + ", ".join(f"{r:.2f}" for r in ratios) + ")", flush=True)  # fmt: skip
        raw.unlink()
        for i, mb in enumerate(int(x) for x in args.memory_mb.split(",") if x.strip()):
            raw = work / f"MEM{i:03d}.raw"
            vol = stage(raw, make_volume(raw, mb << 20, args.random_share, seed=2 + i), work / "staging", f"MEM{i:03d}")
            raw.unlink()
            result = deploy(storage_cfg, host_cfg, f"mem{i}", vol, 1000 + i)
            shutil.rmtree(work / "host" / f"mem{i}")
            print(f"  peak RSS of the host-side mover, {mb:5d} MiB volume: {result['peak_rss_kb'] / 1024:6.1f} MiB")
        print(f"(workdir {work}; started {datetime.now(UTC):%H:%M:%S} UTC)")
    finally:
        storage.stop()
        host.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
