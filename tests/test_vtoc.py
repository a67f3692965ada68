"""Data sets on CKD volume images: the mover reads what Hercules dasdls / dasdcat / dasdpdsu read,
on volumes made by dasdload with members added by the tests' PDS writer; plain and gzip'd."""

from __future__ import annotations

import base64
import gzip
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from datamover import dscb
from datamover.dataset import list_datasets, member_names, read_dataset, read_member
from datamover.errors import MoverError
from datamover.lookup import answer
from datamover.volume import VolumeImage
from datamover.vtoc import label, read_vtoc
from tests.support.pds import Dataset, add_members, cards, load_volume, set_smsfg, split_extents

DASDLS, DASDCAT, DASDPDSU = (shutil.which(t) for t in ("dasdls", "dasdcat", "dasdpdsu"))
needs_hercules = pytest.mark.skipif(
    None in (DASDLS, DASDCAT, DASDPDSU), reason="Hercules dasdls/dasdcat/dasdpdsu are not installed (Debian hercules)"
)

IEASYM = """SYSDEF   SYSCLONE(01)
         SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')   /* home */
         SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')
         SYMDEF(&NAMESERVERADDR1.='172.26.1.1')"""
LONG = "\n".join(f"MEMBER LINE {i:04d} {'X' * (i % 50)}" for i in range(400))  # several tracks


def _tool(*argv: str, cwd: Path | None = None) -> bytes:
    """stdout of a Hercules utility; dasdcat exits 1 even when it succeeds, so its messages tell."""
    result = subprocess.run(list(argv), capture_output=True, cwd=cwd, stdin=subprocess.DEVNULL)
    errors = [
        line for line in result.stderr.decode(errors="replace").splitlines() if line[:3] == "HHC" and line[8:9] == "E"
    ]
    assert not errors and result.returncode in (0, 1), f"{argv}: exit {result.returncode}: {result.stderr!r}"
    return result.stdout


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    path = load_volume(
        tmp_path / "ZRES01.ckd",
        "ZRES01",
        [
            Dataset("SYS1.PARMLIB", tracks=15, directory_blocks=10),
            Dataset("SYS0.IPLPARM", tracks=3, directory_blocks=2),
            Dataset("SYS1.NOTES", dsorg="PS", blksize=800, tracks=1, text="first note\nsecond note\n"),
            Dataset("SYS1.EMPTY", dsorg="PS", blksize=800, tracks=1),
        ],
    )
    add_members(path, "SYS1.PARMLIB", {"IEASYM00": cards(IEASYM, numbered=True), "LONG": cards(LONG)})
    add_members(path, "SYS1.PARMLIB", {"ABC": cards("ONE LINE")})  # a second pass: after what is there
    add_members(path, "SYS0.IPLPARM", {"LOAD82": cards("IODF     99 SYS1")})
    return path


def _dasdls(path: Path) -> dict[str, tuple[str, str, int, int, int]]:
    out = {}
    for line in _tool(DASDLS, "-info", str(path)).decode().splitlines()[1:]:
        fields = line.split()
        out[fields[0]] = (fields[2], fields[3], int(fields[4]), int(fields[5]), int(fields[7]))
    return out


@needs_hercules
def test_data_sets_and_attributes_are_what_dasdls_lists(volume: Path) -> None:
    volser, datasets = list_datasets(str(volume))
    assert volser == "ZRES01"
    ours = {d["name"]: (d["dsorg"], d["recfm"], d["lrecl"], d["blksize"], d["tracks"]) for d in datasets}
    assert ours == _dasdls(volume)
    assert set(ours) == {"SYS1.PARMLIB", "SYS0.IPLPARM", "SYS1.NOTES", "SYS1.EMPTY"}


@needs_hercules
def test_member_names_and_bytes_are_what_dasdcat_reads(volume: Path) -> None:
    names = member_names(str(volume), "SYS1.PARMLIB")
    assert names == ["ABC", "IEASYM00", "LONG"]
    listed = _tool(DASDCAT, "-i", str(volume), "SYS1.PARMLIB/?").decode().split()
    assert [n.upper() for n in listed] == names
    for member in names:
        raw = _tool(DASDCAT, "-i", str(volume), f"SYS1.PARMLIB/{member}")
        assert b"".join(read_member(str(volume), "SYS1.PARMLIB", member)) == raw
    long_records = read_member(str(volume), "SYS1.PARMLIB", "LONG")
    assert len(long_records) == 400 and all(len(r) == 80 for r in long_records)


@needs_hercules
def test_member_text_is_what_dasdpdsu_unloads(volume: Path, tmp_path: Path) -> None:
    out = tmp_path / "unload"
    out.mkdir()
    _tool(DASDPDSU, str(volume), "SYS1.PARMLIB", "ascii", cwd=out)
    records = read_member(str(volume), "SYS1.PARMLIB", "IEASYM00")
    ours = [r.decode("cp037")[:72].rstrip() for r in records]
    assert ours == (out / "ieasym00.mac").read_text().splitlines()
    assert ours == IEASYM.splitlines()


@needs_hercules
def test_sequential_data_sets(volume: Path) -> None:
    notes = read_dataset(str(volume), "SYS1.NOTES")
    assert [r.decode("cp037").rstrip() for r in notes] == ["first note", "second note"]
    assert read_dataset(str(volume), "sys1.empty") == []


@needs_hercules
def test_gzip_volume_reads_the_same_and_only_its_front(volume: Path, tmp_path: Path) -> None:
    packed = tmp_path / "ZRES01.gz"
    with volume.open("rb") as src, gzip.open(packed, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
        dst.write(random.Random(1).randbytes(16 << 20))  # more volume behind the data sets, incompressible
    assert read_member(str(packed), "SYS1.PARMLIB", "LONG") == read_member(str(volume), "SYS1.PARMLIB", "LONG")
    with VolumeImage(str(packed)) as image:
        vtoc = read_vtoc(image)
        assert [d.name for d in vtoc.datasets] == [d["name"] for d in list_datasets(str(volume))[1]]
        assert image.read_bytes() < packed.stat().st_size / 4
        assert image.inflated_bytes() < volume.stat().st_size


def test_a_file_that_is_not_a_ckd_image_is_named(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_bytes(b"just some text\n" * 100)
    with pytest.raises(MoverError, match="not a CKD volume image"):
        list_datasets(str(text))
    cckd = tmp_path / "cckd"
    cckd.write_bytes(b"CKD_C370" + bytes(1024))
    with pytest.raises(MoverError, match="compressed CKD image"):
        list_datasets(str(cckd))


@needs_hercules
def test_a_truncated_gzip_volume_is_named(volume: Path, tmp_path: Path) -> None:
    packed = tmp_path / "ZRES01.gz"
    packed.write_bytes(gzip.compress(volume.read_bytes(), 1)[:2000])
    with pytest.raises(MoverError, match="truncated"):
        list_datasets(str(packed))


@needs_hercules
def test_missing_data_set_member_and_wrong_kind_are_named(volume: Path) -> None:
    with pytest.raises(MoverError, match=r"holds no data set SYS1\.NOPE"):
        read_member(str(volume), "SYS1.NOPE", "X")
    with pytest.raises(MoverError, match=r"SYS1.PARMLIB\(NOPE\): no such member"):
        read_member(str(volume), "SYS1.PARMLIB", "NOPE")
    with pytest.raises(MoverError, match="is not partitioned"):
        read_member(str(volume), "SYS1.NOTES", "X")
    with pytest.raises(MoverError, match="not a data set name"):
        read_member(str(volume), "SYS1..PARMLIB", "X")


@needs_hercules
def test_a_pdse_is_reported_out_of_reach(volume: Path) -> None:
    set_smsfg(volume, "SYS1.PARMLIB", 0x08)
    assert {d["name"]: d["dsorg"] for d in list_datasets(str(volume))[1]}["SYS1.PARMLIB"] == "PO-E"
    with pytest.raises(MoverError, match="is a PDSE"):
        read_member(str(volume), "SYS1.PARMLIB", "IEASYM00")


@needs_hercules
def test_extents_in_format1_and_format3_dscbs_are_followed_as_dasdls_and_dasdcat_do(volume: Path) -> None:
    before = read_member(str(volume), "SYS1.PARMLIB", "LONG")
    split_extents(volume, "SYS1.PARMLIB", [1, 1, 1, 1, 1])  # 6 extents: 3 in the Format 1, 3 in a Format 3
    entry = {d["name"]: d for d in list_datasets(str(volume))[1]}["SYS1.PARMLIB"]
    assert len(entry["extents"]) == 6 and entry["tracks"] == 15
    assert _dasdls(volume)["SYS1.PARMLIB"][4] == 15
    fields = _tool(DASDLS, "-info", str(volume)).decode().splitlines()[1].split()
    assert fields[0] == "SYS1.PARMLIB" and fields[9] == "6"  # dasdls' #Ext
    assert read_member(str(volume), "SYS1.PARMLIB", "LONG") == before  # across the extents
    assert b"".join(before) == _tool(DASDCAT, "-i", str(volume), "SYS1.PARMLIB/LONG")


def test_a_listed_data_set_is_read_again_without_the_vtoc(tmp_path: Path) -> None:
    path = load_volume(tmp_path / "V.ckd", "ZRES01", [Dataset("SYS1.PARMLIB", tracks=5, directory_blocks=2)])
    add_members(path, "SYS1.PARMLIB", {"IEASYM00": cards(IEASYM)})
    listed = answer({"list": True, "volumes": [{"volser": "ZRES01", "path": str(path)}], "members": []})
    entry = listed["volumes"][0]["datasets"][0]
    with VolumeImage(str(path)) as image:  # wipe the Format 4 DSCB: the VTOC cannot be read any more
        _volser, (cyl, head, record) = label(image)
        where = (
            image.track_offset(image.track_number(cyl, head))
            + image.record(image.track_number(cyl, head), record).data_offset
        )
    with path.open("r+b") as f:
        f.seek(where)
        f.write(bytes(96))
    want = {"volser": "ZRES01", "dsn": "SYS1.PARMLIB", "member": "IEASYM00"}
    again = answer(
        {"list": False, "volumes": [{"volser": "ZRES01", "path": str(path)}], "members": [{**want, "dataset": entry}]}
    )
    assert again["volumes"][0]["error"] is None
    assert [base64.b64decode(r) for r in again["members"][0]["records"]] == cards(IEASYM)
    without = answer({"list": False, "volumes": [{"volser": "ZRES01", "path": str(path)}], "members": [want]})
    assert "not the Format 4" in without["volumes"][0]["error"]


def test_extents_format3_and_eav_cylinders() -> None:
    # an EAV cylinder: 28 bits, the high 12 in the top of HH
    assert dscb.cchh(dscb.encode_cchh(70_000, 14)) == (70_000, 14)
    assert dscb.cchh(bytes.fromhex("11700015")) == ((0x001 << 16) | 0x1170, 5)
    low, high = dscb.encode_cchh(1_000_000, 0), dscb.encode_cchh(1_000_020, 14)
    ext = dscb.extent(b"\x81\x03" + low + high)
    assert ext is not None and (ext.cyl, ext.end_cyl, ext.sequence) == (1_000_000, 1_000_020, 3)
    assert ext.tracks(15) == 21 * 15
    assert dscb.extent(bytes(10)) is None
    key = b"\x03" * 4 + b"".join(
        b"\x01" + bytes([i]) + dscb.encode_cchh(i * 10, 0) + dscb.encode_cchh(i * 10, 14) for i in range(4)
    )
    data = (
        b"\xf3"
        + b"".join(
            b"\x01" + bytes([i]) + dscb.encode_cchh(i * 10, 0) + dscb.encode_cchh(i * 10 + 1, 14) for i in range(4, 13)
        )
        + struct.pack(">HHB", 0, 1, 7)
    )
    assert len(key) == 44 and len(data) == 96
    extents, pointer = dscb.format3(key, data)
    assert [e.sequence for e in extents] == list(range(13))
    assert extents[12].tracks(15) == 30
    assert pointer == (0, 1, 7)
