"""A small z/OS system on three dasdload volumes, for the IPL-chain tests: a good chain that each test
breaks in one place.

    MN25S2 (0A80, IPL)   SYS1.NUCLEUS, SYS1.PARMLIB(IEASYM00: the address and the route)
    MN25T1 (0A82, IODF)  SYS0.IPLPARM(LOADCS), SYS1.IODF99, CATALOG.MASTER
    MN25U1 (0A81)        USER.PARMLIB(IEASYM01: the name server), TCPIP.PROFILE(PROFILE),
                         TCPIP.TCPPARMS(TCPDATA)

LOADPARM 0A82CS: IODF device 0A82, LOADCS; PARMLIB USER.PARMLIB on MN25U1, then SYS1.PARMLIB;
IEASYM (00,01,L).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.volume_lookup import VolumeFile
from tests.support.pds import Dataset, add_members, cards, load_volume
from zimage.ebcdic import ibm1047_decode
from zimage.ipl_chain import ChainInput
from zimage.manifests import ComponentManifest, StagedVolume

GEN = "2024-05-01_10_00_00"

IEASYM00 = """/* IEASYM00: the address and the route                        */
SYSDEF    SYSCLONE(01)
          SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')
          SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')"""
IEASYM01 = """SYSDEF    SYMDEF(&NAMESERVERADDR1.='172.26.1.1')"""
PROFILE = """; TCPIP PROFILE
DEVICE  OSA02P0     MPCIPA
LINK    OSALINK     IPAQENET  OSA02P0
HOME
  &HOMEIPADDRESS1   OSALINK
BEGINRoutes
ROUTE DEFAULT &DEFAULTROUTEADDR     OSALINK         MTU 1492
ENDRoutes"""
TCPDATA = """TCPIPJOBNAME TCPIP
NSINTERADDR &NAMESERVERADDR1"""


def loadxx(parmlib_volser: str = "MN25U1", iodf: str = "99", ieasym: str = "(00,01,L)", extra: str = "") -> str:
    return "\n".join([
        "* LOADCS: the development system",
        f"IODF     {iodf} SYS1     ZDEV     01 Y",
        "SYSCAT   MN25T1113 CATALOG.MASTER",
        "PARMLIB  USER.PARMLIB".ljust(54) + parmlib_volser,
        "PARMLIB  SYS1.PARMLIB",
        f"IEASYM   {ieasym}",
        *([extra] if extra else []),
    ])  # fmt: skip


@dataclass
class System:
    """The volumes as plain files (`plain`), edited by a test before `stage()` gzips them."""

    directory: Path
    plain: dict[str, Path] = field(default_factory=dict)
    devnums: dict[str, str] = field(default_factory=lambda: {"0A80": "MN25S2", "0A81": "MN25U1", "0A82": "MN25T1"})

    def chain(self, loadparm: str = "0A82CS", tcpip: bool = True) -> ChainInput:
        members = {"tcpip_profile": "TCPIP.PROFILE(PROFILE)", "tcpdata": "TCPIP.TCPPARMS(TCPDATA)"}
        return ChainInput(
            image="zos25-dev",
            ipl_device="0A80",
            loadparm=loadparm,
            volumes=self.devnums,
            tcpip=members if tcpip else {},
        )

    def stage(self, into: Path, generation: str = "2024-05-01_10_00_00") -> list[VolumeFile]:
        into.mkdir(parents=True, exist_ok=True)
        files = []
        for volser in self.devnums.values():
            target = into / f"{volser}_{generation}.gz"
            with self.plain[volser].open("rb") as src, gzip.open(target, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
            files.append(VolumeFile(volser, str(target), target.stat().st_size))
        return files


def build_system(
    directory: Path,
    load: str | None = None,
    ieasym00: str | None = IEASYM00,
    ieasym01: str = IEASYM01,
    profile: str = PROFILE,
    extra: dict[str, list[Dataset]] | None = None,
) -> System:
    """The three volumes; `extra` adds data sets (empty) to a volume, after its own; `ieasym00` None
    leaves that member out."""
    more = extra or {}
    directory.mkdir(parents=True, exist_ok=True)
    system = System(directory)
    s2 = load_volume(
        directory / "MN25S2.ckd",
        "MN25S2",
        [
            Dataset("SYS1.NUCLEUS", tracks=2, directory_blocks=2),
            Dataset("SYS1.PARMLIB", tracks=5, directory_blocks=5),
            *more.get("MN25S2", []),
        ],
        cylinders=5,
    )
    if ieasym00 is not None:
        add_members(s2, "SYS1.PARMLIB", {"IEASYM00": cards(ieasym00, numbered=True)})
    t1 = load_volume(
        directory / "MN25T1.ckd",
        "MN25T1",
        [
            Dataset("SYS0.IPLPARM", tracks=2, directory_blocks=2),
            Dataset("SYS1.IODF99", dsorg="PS", blksize=4096, lrecl=4096, recfm="F", tracks=2),
            Dataset("CATALOG.MASTER", dsorg="PS", blksize=4096, lrecl=4096, recfm="F", tracks=2),
            *more.get("MN25T1", []),
        ],
        cylinders=5,
    )
    add_members(t1, "SYS0.IPLPARM", {"LOADCS": cards(loadxx() if load is None else load)})
    u1 = load_volume(
        directory / "MN25U1.ckd",
        "MN25U1",
        [
            Dataset("USER.PARMLIB", tracks=2, directory_blocks=2),
            Dataset("TCPIP.PROFILE", tracks=2, directory_blocks=2),
            Dataset("TCPIP.TCPPARMS", tracks=2, directory_blocks=2),
            *more.get("MN25U1", []),
        ],
        cylinders=5,
    )
    add_members(u1, "USER.PARMLIB", {"IEASYM01": cards(ieasym01)})
    add_members(u1, "TCPIP.PROFILE", {"PROFILE": cards(profile)})
    add_members(u1, "TCPIP.TCPPARMS", {"TCPDATA": cards(TCPDATA)})
    system.plain = {"MN25S2": s2, "MN25T1": t1, "MN25U1": u1}
    return system


PARMLIB = {
    "ieasym": "SYS1.PARMLIB(IEASYM00)",
    "tcpip_profile": "TCPIP.PROFILE(PROFILE)",
    "tcpdata": "TCPIP.TCPPARMS(TCPDATA)",
}


def stage(system: System, root: Path, generation: str = GEN) -> None:
    """The volumes gzip'd into the staging layout of source SYSA, with the component's manifest."""
    staged = root / "zos" / "SYSA" / "volumes"
    files = system.stage(staged, generation)
    now = datetime(2024, 5, 1, 10, tzinfo=UTC)
    volumes = []
    for devnum, volser in system.devnums.items():
        f = next(x for x in files if x.volser == volser)
        gz = Path(f.path).read_bytes()
        plain = system.plain[volser].read_bytes()
        volumes.append(
            StagedVolume(
                volser=volser,
                devnum=devnum,
                devtype="3390-1",
                file_name=Path(f.path).name,
                bytes=len(plain),
                gz_bytes=len(gz),
                sha256=hashlib.sha256(plain).hexdigest(),
                gz_sha256=hashlib.sha256(gz).hexdigest(),
                started=now,
                finished=now,
            )
        )
    manifest = ComponentManifest(
        component="zos25-sysres", system="SYSA", type="sysres", generation=generation, created=now, volumes=volumes
    )
    (staged / f"zos25-sysres_{generation}.manifest.json").write_bytes(manifest.to_json())


def config(sshd: Any, tmp: Path, root: Path, loadparm: str = "0A82CS", parmlib: bool = True) -> Path:
    """A config whose storage (and source) is the test sshd, the image those three volumes."""
    doc = {
        "storage": sshd.endpoint(root=str(root)),
        "sources": [
            {
                "name": "SYSA",
                **sshd.endpoint(),
                "extraction": {"command": "true {target}"},
                **({"parmlib": PARMLIB} if parmlib else {}),
            }
        ],
        "target": {
            "region": "jp-tok",
            "zone": 1,
            "cos": {"instance_name": "cos", "bucket": "zimage-test", "region": "jp-tok"},
        },
        "components": [
            {
                "name": "zos25-sysres",
                "source": "SYSA",
                "type": "sysres",
                "volumes": [
                    {"volser": "MN25S2", "devnum": "0A80", "devtype": "3390-1"},
                    {"volser": "MN25U1", "devnum": "0A81", "devtype": "3390-1"},
                    {"volser": "MN25T1", "devnum": "0A82", "devtype": "3390-1"},
                ],
            }
        ],
        "images": [
            {"name": "zos25-dev", "components": ["zos25-sysres"], "ipl": {"device": "0A80", "loadparm": loadparm}}
        ],
    }
    path = tmp / "zimage.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def unload_member(volume: Path, dsn: str, member: str, out: Path) -> str:
    """The member as text, unloaded by Hercules dasdpdsu (its own reading of VTOC, directory, blocks)."""
    if shutil.which("dasdpdsu") is None:
        pytest.skip("Hercules dasdpdsu is not installed")
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["dasdpdsu", str(volume), dsn], cwd=out, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    data = (out / f"{member.lower()}.mac").read_bytes()  # EBCDIC, 80-byte records
    return "\n".join(ibm1047_decode(data[i : i + 80]) for i in range(0, len(data), 80))
