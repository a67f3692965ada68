"""Benchmark: the IPL-chain check and `volume ls` on a large gzip'd volume, against `gzip -dc` of the
same file, in one process.

One volume made by Hercules dasdload (--cylinders, 1,113 by default: a 3390-1, 0.95 GB; 10017 for a
3390-9, 8.5 GB) holding a whole small system: SYS1.NUCLEUS, SYS0.IPLPARM(LOADCS), SYS1.IODF99,
CATALOG.MASTER, SYS1.PARMLIB(IEASYM00), TCPIP.PROFILE and TCPIP.TCPPARMS, members added by the tests'
PDS writer; every 4th track of the rest of the volume holds a data record (half text, half random),
so the gzip stream has real work. Two layouts:
  front: the data sets and the VTOC in the first cylinders (the usual sysres layout);
  end:   a filler data set first, so the VTOC lies in the last cylinders: listing it is a pass over
         the whole volume.
Measured: `gzip -dc FILE > /dev/null` (the baseline), the IPL check (bytes of the file read, seconds),
`volume ls` (seconds); ratios printed: share of the file the check read (front), and gzip -dc time /
our time (>= 1: at least as fast), with the inflater zimage picks and with plain zlib.

Times are the best of --repeat runs. Run from the repository root:
    python -m bench.ipl_check [--cylinders N] [--workdir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datamover.codec import inflate_module
from datamover.dataset import list_datasets
from infra.volume_lookup import VolumeFile, VolumeLookup, check_ipl_chain
from tests.support.ipl_system import IEASYM00, IEASYM01, PROFILE, TCPDATA, loadxx
from tests.support.pds import Dataset, add_members, cards, load_volume
from zimage import ckd, devices
from zimage.config import Storage
from zimage.ipl_chain import ChainInput

VOLSER = "BIGRES"
LOCAL = Storage(host="localhost", username="zimage", root="/", transport="local")
SYSTEM = [
    Dataset("SYS1.NUCLEUS", tracks=2, directory_blocks=2),
    Dataset("SYS0.IPLPARM", tracks=2, directory_blocks=2),
    Dataset("SYS1.IODF99", dsorg="PS", blksize=4096, lrecl=4096, recfm="F", tracks=2),
    Dataset("CATALOG.MASTER", dsorg="PS", blksize=4096, lrecl=4096, recfm="F", tracks=2),
    Dataset("SYS1.PARMLIB", tracks=5, directory_blocks=5),
    Dataset("USER.PARMLIB", tracks=2, directory_blocks=2),
    Dataset("TCPIP.PROFILE", tracks=2, directory_blocks=2),
    Dataset("TCPIP.TCPPARMS", tracks=2, directory_blocks=2),
]


def build(directory: Path, layout: str, cylinders: int) -> Path:
    plain = directory / f"{layout}.ckd"
    packed = directory / f"{layout}.gz"
    if packed.exists():
        return packed
    filler = [Dataset("SYS1.FILLER", dsorg="PS", recfm="FB", blksize=800, tracks=(cylinders - 3) * 15)]
    datasets = filler + SYSTEM if layout == "end" else SYSTEM
    load_volume(plain, VOLSER, datasets, cylinders=cylinders, vtoc_tracks=5)
    load = loadxx(parmlib_volser=VOLSER).replace("MN25T1", VOLSER)
    add_members(plain, "SYS0.IPLPARM", {"LOADCS": cards(load)})
    add_members(plain, "SYS1.PARMLIB", {"IEASYM00": cards(IEASYM00, numbered=True)})
    add_members(plain, "USER.PARMLIB", {"IEASYM01": cards(IEASYM01)})
    add_members(plain, "TCPIP.PROFILE", {"PROFILE": cards(PROFILE)})
    add_members(plain, "TCPIP.TCPPARMS", {"TCPDATA": cards(TCPDATA)})
    _fill(plain, cylinders, first=3 if layout == "front" else 0, last=cylinders if layout == "front" else cylinders - 3)
    subprocess.run(["gzip", "-1", "-f", str(plain)], check=True)
    plain.with_suffix(".ckd.gz").rename(packed)
    return packed


def _fill(path: Path, cylinders: int, first: int, last: int) -> None:
    """Every 4th track of cylinders [first, last) holds a data record, as a used volume would."""
    with path.open("r+b") as out:
        for number in range(max(first * 15, 1), last * devices.TRACKS_PER_CYLINDER, 4):
            cyl, head = divmod(number, devices.TRACKS_PER_CYLINDER)
            out.seek(ckd.DEVICE_HEADER + number * ckd.TRACK_SIZE)
            out.write(ckd.data_track(cyl, head, ckd.payload(VOLSER, cyl, head, 8192)))


def timed(call, repeat: int):  # type: ignore[no-untyped-def]
    """(best seconds of `repeat` runs, the value): the machine is shared, the best run is the least disturbed."""
    best, value = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        value = call()
        best = min(best, time.perf_counter() - started)
    return best, value


def gzip_dc(path: Path, repeat: int) -> float:
    run = ["gzip", "-dc", str(path)]
    seconds, _ = timed(lambda: subprocess.run(run, stdout=subprocess.DEVNULL, check=True), repeat)
    return seconds


def chain() -> ChainInput:
    members = {"tcpip_profile": "TCPIP.PROFILE(PROFILE)", "tcpdata": "TCPIP.TCPPARMS(TCPDATA)"}
    return ChainInput(image="bench", ipl_device="0A80", loadparm="0A80CS", volumes={"0A80": VOLSER}, tcpip=members)


def ipl_check(path: Path, repeat: int) -> tuple[float, int, int]:
    with VolumeLookup(LOCAL) as lookup:
        files = [VolumeFile(VOLSER, str(path), None)]
        seconds, result = timed(lambda: check_ipl_chain(lookup, chain(), files), repeat)
    bad = [f.text() for f in result.evaluation.findings if f.severity == "error"]
    if bad:
        raise SystemExit(f"the benchmark volume's chain has errors: {bad}")
    return seconds, result.stats[0].read_bytes, result.rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cylinders", type=int, default=1113, help="volume size (10017: a 3390-9)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the volumes are made (kept)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best counts")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)
    if shutil.which("dasdload") is None or shutil.which("gzip") is None:
        print("needs Hercules dasdload and gzip", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="zimage-bench-ipl-"))
    workdir.mkdir(parents=True, exist_ok=True)
    size = ckd.volume_size(args.cylinders)
    print(f"volume: {args.cylinders} cylinders, {size / 1e9:.2f} GB uncompressed; inflater {inflate_module()[0]}")
    for layout in ("front", "end"):
        packed = build(workdir, layout, args.cylinders)
        gz_size = packed.stat().st_size
        baseline = gzip_dc(packed, repeat)
        check_s, read, rounds = ipl_check(packed, repeat)
        ls_s, (_volser, datasets) = timed(lambda p=packed: list_datasets(str(p)), repeat)
        os.environ["ZIMAGE_INFLATE"] = "zlib"
        try:
            ls_zlib, _ = timed(lambda p=packed: list_datasets(str(p)), repeat)
        finally:
            del os.environ["ZIMAGE_INFLATE"]
        print(f"\n[{layout}] {packed.name}: {gz_size / 1e6:.1f} MB gzip'd, {len(datasets)} data sets")
        print(f"  gzip -dc (baseline)      {baseline:7.2f} s  {size / baseline / 1e6:7.0f} MB/s")
        print(
            f"  ipl check ({rounds} rounds)     {check_s:7.2f} s  read {read / 1e6:.2f} MB = "
            f"{read / gz_size:.2%} of the file"
        )
        print(f"  volume ls                {ls_s:7.2f} s  ratio gzip -dc / ls = {baseline / ls_s:.2f}")
        print(f"  volume ls (plain zlib)   {ls_zlib:7.2f} s  ratio gzip -dc / ls = {baseline / ls_zlib:.2f}")
        if layout == "front":
            print(f"  ratio gzip -dc / ipl check = {baseline / check_s:.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process, building the volumes included: {peak:.0f} MB ({size / 1e6:.0f} MB volumes)")
    print(f"volumes kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
