"""Benchmark: the reference data mover's method against zimage's datamover, same volumes, one run.

The reference decompresses each volume with gzip.GzipFile + shutil.copyfileobj in a pool of 10
processes and writes every byte, zeros included. zimage's mover streams with large chunks, leaves
zero blocks as holes, verifies sha256 / CRC / VOL1, and uses zlib-ng or ISA-L when importable.

Two cases, each made once under the work directory (and reused):
  mostly-empty: a 3390-2 volume from Hercules dasdinit (1.9 GB, an empty volume: track headers and
     zeros, like the free space of real volumes) and two synthetic volumes of 64 KiB blocks mixing
     random bytes, text-like records and zeros (2.3 GB, about 18:1 gzip);
  data-rich: four dasdinit volumes (--rich-mb each, 64 by default; the issue's figure is for 256)
     whose cylinders past the first are filled with that mix (about 3:1 gzip).
Measured:
  1. decompress + verify + write: every volume into an ext2 file system mounted like the VSI's data
     volume (a loop-mounted image; a plain directory when not root), each file fsync'd and the file
     system unmounted (the snapshot needs durable data);
  2. the whole local conversion: objects -> <image>-data.img + <image>.qcow2; zimage runs
     `python -m datamover local` (no root); the reference runs its own method on image files
     (mke2fs, mount, decompress into it, owners, unmount, qemu-img) when root, else decompresses
     into a directory followed by the same mke2fs -d / debugfs / qemu-img steps as zimage; both
     end with the data image on disk (zimage fsyncs it; a loop-mounted image is fsync'd after
     unmounting, which on the VSI's block volume the unmount itself ensures);
  3. peak memory (max RSS) of the mover converting the 2 GB volume alone.
Prints times, MB/s and the ratios (targets: stage >= 3x, whole >= 1.5x, memory < 200 MB).

Run from the repository root: python -m bench.datamover [--case mostly-empty|data-rich|both]
[--rich-mb N] [--workdir DIR] [--repeat N]
With accelerators: PYTHONPATH=<dir with isal / zlib_ng> python -m bench.datamover (each inflater
that imports is measured).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import Pool
from pathlib import Path

from datamover import tools
from datamover.codec import inflate_module
from datamover.convert import Settings
from datamover.engine import Inputs, convert_all, default_jobs, probe_objects
from datamover.errors import MoverError
from datamover.layout import DATA_LABEL, OWNER, data_volume_bytes, write_aux_files
from datamover.manifest import parse_manifest
from datamover.progress import Progress
from datamover.report import Report
from datamover.sources import LocalSource

MB = 1e6
IMAGE = "bench"
REFERENCE_PROCESSES = 10
INFLATERS = (("zlib", "zlib"), ("isal", "isal"), ("zlib-ng", "zlib_ng"))


# --- test data ---


def _records(rng: random.Random, size: int) -> bytes:
    """Text-like 80-byte records (load library listings, JCL): compressible about 5:1."""
    words = [
        b"SYS1.LINKLIB",
        b"IEFBR14",
        b"//STEP01  EXEC PGM=",
        b"DSN=",
        b"DISP=SHR",
        b"SPACE=(CYL,(5,5))",
        b"CATALOG",
        b"VOLSER=",
        b"IPLPARM",
        b"PARMLIB",
        b"MEMBER",
        b"RECFM=FB",
        b"LRECL=80",
    ]
    out = bytearray()
    while len(out) < size:
        line = b" ".join(rng.choice(words) + str(rng.randrange(10**4)).encode() for _ in range(5))
        out += line[:80].ljust(80)
    return bytes(out[:size])


def _synthetic(path: Path, size: int, seed: int, skip: int = 0) -> None:
    """64 KiB blocks: a quarter random, a quarter records, half zeros; from offset `skip` of the file
    (which may exist: what lies before is kept)."""
    rng = random.Random(seed)
    block = 64 * 1024
    with path.open("r+b" if skip else "wb") as handle:
        handle.seek(skip)
        for _ in range((size - skip) // block):
            pick = rng.random()
            if pick < 0.25:
                handle.write(os.urandom(block))
            elif pick < 0.5:
                handle.write(_records(rng, block))
            else:
                handle.write(bytes(block))


def _gzip_file(raw: Path, packed: Path) -> None:
    with raw.open("rb") as src, gzip.GzipFile(packed, "wb", compresslevel=6, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 4 << 20)


CYLINDER = 15 * 56832  # bytes of a 3390 cylinder in a Hercules CKD image (15 tracks)


def case_specs(case: str, rich_mb: int) -> list[tuple[str, str, int]]:
    """(VOLSER, kind, size) of a case's volumes: kind "dasd" (empty dasdinit 3390-2), "rich" (dasdinit
    of `size` bytes rounded to cylinders, filled past cylinder 0) or "synthetic"."""
    if case == "mostly-empty":
        return [("BNCH01", "dasd", 0), ("SYN001", "synthetic", 256 << 20), ("SYN002", "synthetic", 128 << 20)]
    return [(f"RICH0{i}", "rich", rich_mb << 20) for i in range(1, 5)]


def make_objects(work: Path, specs: list[tuple[str, str, int]]) -> Path:
    """The object directory (reused when present): gzip'd volumes, image-metadata.json, devmap."""
    objects = work / "objects"
    if (objects / "image-metadata.json").exists():
        return objects
    shutil.rmtree(work, ignore_errors=True)  # a half-made set from an interrupted run
    raw_dir = work / "raw"
    for d in (objects, raw_dir):
        d.mkdir(parents=True, exist_ok=True)
    volumes = []
    for i, (volser, kind, size) in enumerate(specs):
        raw = raw_dir / volser
        if kind == "dasd":
            subprocess.run(["dasdinit", "-a", str(raw), "3390-2", volser], check=True, capture_output=True)
        elif kind == "rich":
            cylinders = str(max(2, size // CYLINDER))
            subprocess.run(["dasdinit", str(raw), "3390-1", volser, cylinders], check=True, capture_output=True)
            _synthetic(raw, raw.stat().st_size, seed=i, skip=512 + CYLINDER)  # the label's cylinder stays
        else:
            _synthetic(raw, size, seed=i)
        name = f"{volser}_2024-01-01_00_00_00.gz"
        print(f"making {name} ...", flush=True)
        _gzip_file(raw, objects / name)
        volumes.append(
            {
                "name": volser,
                "file-name": name,
                "compression": "gzip",
                "boot": i == 0,
                "devnum": f"0A8{i}",
                "devtype": "3390",
                "size": raw.stat().st_size,
                "sha256": _sha256(raw),
                "gz-sha256": _sha256(objects / name),
            }
        )
        raw.unlink()
    (objects / "devmap").write_text(
        "[system]\nmemory 16g\n\n[manager]\nname awsckd 0001\n"
        + "".join(f"device {v['devnum']} 3390 3990 /volumes/{v['name']}\n" for v in volumes)
    )
    doc = {
        "image": {"name": IMAGE, "size": sum(v["size"] for v in volumes), "boot-size": volumes[0]["size"]},
        "volumes": volumes,
    }
    (objects / "image-metadata.json").write_text(json.dumps(doc, indent=1))
    return objects


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- the reference method ---


def _reference_one(task: tuple[str, str, bool]) -> int:
    src, dst, sync = task
    with gzip.GzipFile(src, "rb") as packed, open(dst, "wb") as out:
        shutil.copyfileobj(packed, out)
        out.flush()
        if sync:
            os.fsync(out.fileno())
        return out.tell()


def reference_stage(objects: Path, dest: Path, sync: bool) -> None:
    manifest = parse_manifest((objects / "image-metadata.json").read_bytes())
    tasks = [(str(objects / v.file_name), str(dest / v.name), sync) for v in manifest.volumes]
    with Pool(REFERENCE_PROCESSES) as pool:
        pool.map(_reference_one, tasks, chunksize=1)


def can_mount(work: Path) -> bool:
    """True when this machine lets us mount image files with -o loop (root)."""
    if os.geteuid() != 0:
        return False
    try:
        with mounted_ext2(work / "probe.img", 64 << 20, None):
            return True
    except (subprocess.CalledProcessError, OSError, MoverError):
        return False
    finally:
        (work / "probe.img").unlink(missing_ok=True)


@contextmanager
def mounted_ext2(image: Path, size: int, label: str | None) -> Iterator[Path]:
    """A fresh ext2 image file mounted with -o loop, as the VSI's volumes are."""
    point = image.with_suffix(".mnt")
    point.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as handle:
        handle.truncate(size)
    tools.mkfs(str(image), "bench", label=label)
    subprocess.run(["mount", "-o", "loop", str(image), str(point)], check=True, capture_output=True)
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], check=True, capture_output=True)
        point.rmdir()
        # on the VSI the file system is on a block volume, so unmounting makes it durable; here it is
        # on a loop device whose backing file is still in the page cache until fsync'd
        with image.open("rb+") as handle:
            os.fsync(handle.fileno())


def reference_whole(objects: Path, out: Path, mount: bool) -> None:
    if mount:  # the reference's own method: into the mounted file systems
        total = json.loads((objects / "image-metadata.json").read_text())["image"]["size"]
        with mounted_ext2(out / f"{IMAGE}-data.img", data_volume_bytes(total), DATA_LABEL) as data:
            reference_stage(objects, data, sync=False)
            created = write_aux_files(str(data), (objects / "devmap").read_bytes(), {})
            for name in [*os.listdir(data), *created]:
                os.chown(data / name, *OWNER)
        with mounted_ext2(out / "boot.img", 10 * 10**9, None) as boot:
            os.chown(boot, *OWNER)
        tools.to_qcow2(str(out / "boot.img"), str(out / f"{IMAGE}.qcow2"))
        return
    work = out / "work"
    data, boot = work / "data", work / "boot"
    data.mkdir(parents=True)
    boot.mkdir()
    reference_stage(objects, data, sync=False)
    created = write_aux_files(str(data), (objects / "devmap").read_bytes(), {})
    total = sum(p.stat().st_size for p in data.iterdir())
    tools.mkfs(
        str(out / f"{IMAGE}-data.img"),
        "data",
        label=DATA_LABEL,
        populate=str(data),
        owner=OWNER,
        size_bytes=data_volume_bytes(total),
    )
    tools.set_owner(str(out / f"{IMAGE}-data.img"), sorted(set(os.listdir(data)) - set(created)) + created, OWNER)
    tools.mkfs(str(work / "boot.img"), "boot", populate=str(boot), owner=OWNER, size_bytes=10 * 10**9)
    tools.to_qcow2(str(work / "boot.img"), str(out / f"{IMAGE}.qcow2"))
    shutil.rmtree(work)


def staged(action: Callable[[Path], None], out: Path, mount: bool, total: int) -> Callable[[], None]:
    """Run action(directory) into the VSI-like mounted ext2 (or a plain directory)."""

    def run() -> None:
        if not mount:
            action(out)
            return
        with mounted_ext2(out / "data.img", data_volume_bytes(total), DATA_LABEL) as data:
            action(data)

    return run


# --- zimage's mover ---


def zimage_stage(objects: Path, dest: Path, jobs: int) -> None:
    source = LocalSource(str(objects))
    manifest = parse_manifest(source.fetch("image-metadata.json"))
    inputs = Inputs(manifest, b"", {}, {v.name: "data" for v in manifest.volumes})
    report, progress = Report("bench"), Progress()
    probe_objects(inputs, source, progress, report)
    settings = Settings(inflate_module()[1], retries=0, retry_delay=0, sync=True)
    convert_all(inputs, source, {"data": str(dest)}, jobs, settings, progress, report)


def zimage_whole(objects: Path, out: Path, jobs: int) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "datamover",
            "local",
            "--objects",
            str(objects),
            "--out",
            str(out),
            "--jobs",
            str(jobs),
            "--progress-every",
            "60",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise SystemExit(f"datamover failed: {done.stderr}")


def zimage_peak_memory(objects: Path, work: Path) -> float:
    """Max RSS (MB) of the mover process converting the largest volume alone."""
    single = work / "single"
    shutil.rmtree(single, ignore_errors=True)
    single.mkdir()
    doc = json.loads((objects / "image-metadata.json").read_text())
    doc["volumes"] = [max(doc["volumes"], key=lambda v: v["size"])]
    (single / "image-metadata.json").write_text(json.dumps(doc))
    shutil.copy(objects / "devmap", single / "devmap")
    os.link(objects / doc["volumes"][0]["file-name"], single / doc["volumes"][0]["file-name"])
    probe = (
        "import resource, sys\nfrom datamover.cli import main\n"
        f"code = main(['local', '--objects', {str(single)!r}, '--out', {str(work / 'single-out')!r}])\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\nsys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"datamover failed: {done.stderr}")
    shutil.rmtree(work / "single-out")
    shutil.rmtree(single)
    return int(done.stdout.split()[-1]) * 1024 / MB


# --- measuring ---


def _cpu() -> float:
    """CPU seconds of this process and of its reaped children (pool workers, tools)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(action, fresh: list[Path]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run, with empty output directories."""
    for path in fresh:
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    os.sync()  # start each run with no dirty pages of the previous one
    cpu, start = _cpu(), time.perf_counter()
    action()
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    for path in fresh:
        shutil.rmtree(path, ignore_errors=True)
    return seconds, cpu


def _best(repeat: int, action, fresh: list[Path]) -> tuple[float, float]:
    return min(_timed(action, fresh) for _ in range(repeat))


def run_case(case: str, objects: Path, work: Path, args: argparse.Namespace) -> None:
    doc = json.loads((objects / "image-metadata.json").read_text())
    total = sum(v["size"] for v in doc["volumes"])
    packed = sum((objects / v["file-name"]).stat().st_size for v in doc["volumes"])
    print(
        f"\n=== case {case}: {len(doc['volumes'])} volumes, {total / MB:,.0f} MB uncompressed, "
        f"{packed / MB:,.1f} MB gzip ({total / packed:.1f}:1); {os.cpu_count()} CPUs; zimage jobs {args.jobs}, "
        f"reference {REFERENCE_PROCESSES} processes"
    )
    out = work / "run"
    mount = can_mount(work)
    print("writing into: " + ("loop-mounted ext2 images, as on the VSI" if mount else "a directory (not root)"))
    ref_stage = _best(args.repeat, staged(lambda d: reference_stage(objects, d, sync=True), out, mount, total), [out])
    ref_whole = _best(args.repeat, lambda: reference_whole(objects, out, mount), [out])
    rows = [("reference (GzipFile + copyfileobj)", ref_stage, ref_whole)]
    available = [n for n, m in INFLATERS if importlib.util.find_spec(m)]
    for name in available:
        os.environ["ZIMAGE_INFLATE"] = name
        stage = _best(args.repeat, staged(lambda d: zimage_stage(objects, d, args.jobs), out, mount, total), [out])
        whole = _best(args.repeat, lambda: zimage_whole(objects, out, args.jobs), [out])
        rows.append((f"zimage datamover, inflate {name}", stage, whole))
    os.environ.pop("ZIMAGE_INFLATE", None)
    memory = zimage_peak_memory(objects, work)

    print(f"\n{'method':<36} {'decompress+verify+write':>30} {'whole local conversion':>30}")
    for label, (stage, stage_cpu), (whole, whole_cpu) in rows:
        print(
            f"{label:<36} {stage:>7.2f} s {total / MB / stage:>6,.0f} MB/s cpu {stage_cpu:>5.1f} s"
            f" {whole:>7.2f} s {total / MB / whole:>6,.0f} MB/s cpu {whole_cpu:>5.1f} s"
        )
    print()
    for label, stage, whole in rows[1:]:
        print(
            f"ratio [{case}] {label}: stage {ref_stage[0] / stage[0]:.2f}x (target >= 3), "
            f"whole {ref_whole[0] / whole[0]:.2f}x (target >= 1.5)"
        )
    largest = max(v["size"] for v in doc["volumes"])
    print(
        f"peak memory converting the {largest / MB:,.0f} MB volume: {memory:.0f} MB (target < 200 MB), "
        f"inflate {inflate_module()[0]}"
    )
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (other work on the machine skews the times)")
    if "zlib-ng" not in available or "isal" not in available:
        print("note: install isal / zlib-ng (pip) or put them on PYTHONPATH to measure the accelerated inflaters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/zimage-bench-datamover")
    parser.add_argument("--case", choices=("mostly-empty", "data-rich", "both"), default="both")
    parser.add_argument("--rich-mb", type=int, default=64, help="size of each data-rich volume (MB)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs of each measurement")
    parser.add_argument("--jobs", type=int, default=default_jobs())
    args = parser.parse_args()
    cases = ("mostly-empty", "data-rich") if args.case == "both" else (args.case,)
    for case in cases:
        work = Path(args.workdir) / (case if case == "mostly-empty" else f"{case}-{args.rich_mb}")
        run_case(case, make_objects(work, case_specs(case, args.rich_mb)), work, args)


if __name__ == "__main__":
    main()
