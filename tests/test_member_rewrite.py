"""In-place member rewrite: zimage computes same-length records, the mover writes them into the
volume image, Hercules dasdcat / dasdpdsu read the new text; anything else is refused unwritten."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from datamover.dataset import list_datasets, read_member
from datamover.errors import MoverError
from datamover.rewrite import RewriteRefused, rewrite_member
from tests.support.pds import Dataset, add_members, card, cards, load_volume
from zimage.ebcdic import ibm1047_encode
from zimage.ieasym import RenderError
from zimage.member_symbols import member_text, set_symbols_in_place
from zimage.symbols import Member, check_ieasym

pytestmark = pytest.mark.skipif(
    None in (shutil.which("dasdcat"), shutil.which("dasdpdsu")),
    reason="Hercules dasdcat/dasdpdsu are not installed (Debian hercules)",
)

IEASYM = """SYSDEF   SYSCLONE(01)
         SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')   /* home address */
         SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')
         SYMDEF(&NAMESERVERADDR1.='172.26.1.1')
SYSDEF   LPARNAME(PROD1)
         SYMDEF(&HOMEIPADDRESS1.='10.0.0.9')"""
NETWORK = {"HOMEIPADDRESS1": "10.1.1.2", "DEFAULTROUTEADDR": "10.1.1.1", "NAMESERVERADDR1": "10.1.1.1"}
# column 71 is the last of the statement field: a longer value has no room on this record
FULL = "         SYMDEF(&HOMEIPADDRESS1.='1.2.3.4') /* home, to column 71... */"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dasdcat(volume: Path, member: str) -> bytes:
    result = subprocess.run(
        ["dasdcat", "-i", str(volume), f"SYS1.PARMLIB/{member}"], capture_output=True, stdin=subprocess.DEVNULL
    )
    assert b"E " not in result.stderr.replace(b"HHCDT", b""), result.stderr
    return result.stdout


def _volume(tmp_path: Path, ieasym: list[bytes]) -> Path:
    path = load_volume(tmp_path / "ZRES01.ckd", "ZRES01", [Dataset("SYS1.PARMLIB", tracks=15)])
    add_members(
        path,
        "SYS1.PARMLIB",
        {"AAAFIRST": cards("BEFORE\n" * 100), "IEASYM00": ieasym, "ZZZLAST": cards("AFTER\n" * 100)},
    )
    return path


def test_network_symbols_set_in_place_read_by_hercules(tmp_path: Path) -> None:
    volume = _volume(tmp_path, cards(IEASYM, numbered=True))
    original = volume.read_bytes()
    listed_before = [
        (d["name"], d["dsorg"], d["recfm"], d["lrecl"], d["blksize"]) for d in list_datasets(str(volume))[1]
    ]
    records = read_member(str(volume), "SYS1.PARMLIB", "IEASYM00")
    new = set_symbols_in_place(records, NETWORK)
    assert [len(r) for r in new] == [len(r) for r in records]
    before, after = rewrite_member(str(volume), "SYS1.PARMLIB", "IEASYM00", new)

    assert before == hashlib.sha256(original).hexdigest() and after == _sha(volume) and before != after
    assert _dasdcat(volume, "IEASYM00") == b"".join(new)
    text = member_text(read_member(str(volume), "SYS1.PARMLIB", "IEASYM00"))
    lines = text.split("\n")
    assert lines[1][:72].rstrip() == "         SYMDEF(&HOMEIPADDRESS1.='10.1.1.2')   /* home address */"
    assert lines[5][:72].rstrip() == "         SYMDEF(&HOMEIPADDRESS1.='10.1.1.2')"  # every definition of the name
    assert [line[72:] for line in lines] == [f"{(i + 1) * 100:08d}" for i in range(6)]  # sequence numbers kept
    assert not [f for f in check_ieasym(Member(name="IEASYM00", text=text)) if f.severity == "error"]
    # only the member's bytes changed: the neighbours and everything else are as they were
    changed = [i for i, (a, b) in enumerate(zip(original, volume.read_bytes(), strict=True)) if a != b]
    assert changed and changed[-1] - changed[0] < 6 * 80 + 64
    for member in ("AAAFIRST", "ZZZLAST"):
        assert [r.decode("cp037").strip() for r in read_member(str(volume), "SYS1.PARMLIB", member)] == [
            member[3:].replace("FIRST", "BEFORE").replace("LAST", "AFTER")
        ] * 100
    unload = tmp_path / "unload"
    unload.mkdir()
    subprocess.run(
        ["dasdpdsu", str(volume), "SYS1.PARMLIB", "ascii"], cwd=unload, capture_output=True, stdin=subprocess.DEVNULL
    )
    assert (unload / "ieasym00.mac").read_text().splitlines() == [line[:72].rstrip() for line in lines]
    # the data sets as dasdls lists them are those zimage lists, as before the rewrite
    listed = subprocess.run(["dasdls", "-info", str(volume)], capture_output=True, text=True).stdout.splitlines()[1:]
    ours = [(d["name"], d["dsorg"], d["recfm"], d["lrecl"], d["blksize"]) for d in list_datasets(str(volume))[1]]
    assert (
        ours == [(f[0], f[2], f[3], int(f[4]), int(f[5])) for f in (line.split() for line in listed)] == listed_before
    )


def test_a_value_that_does_not_fit_in_columns_1_to_71_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    assert len(FULL) == 71
    records = [
        card("SYSDEF   SYSCLONE(01)"),
        card(FULL),
        card("         SYMDEF(&DEFAULTROUTEADDR.='1.1.1.1')"),
        card("         SYMDEF(&NAMESERVERADDR1.='1.1.1.1')"),
    ]
    volume = _volume(tmp_path, records)
    sha = _sha(volume)
    with pytest.raises(RenderError, match="does not fit in columns 1-71"):
        set_symbols_in_place(read_member(str(volume), "SYS1.PARMLIB", "IEASYM00"), NETWORK)
    assert _sha(volume) == sha


def test_a_missing_symdef_is_refused_because_no_record_can_be_added(tmp_path: Path) -> None:
    records = cards("SYSDEF   SYSCLONE(01)\n         SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')")
    with pytest.raises(RenderError) as info:
        set_symbols_in_place(records, NETWORK)
    assert "&DEFAULTROUTEADDR has no SYMDEF in a SYSDEF without filters" in str(info.value)
    assert "&NAMESERVERADDR1 has no SYMDEF" in str(info.value)
    only_filtered = cards("SYSDEF   LPARNAME(PROD1)\n         SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')")
    with pytest.raises(RenderError, match="&HOMEIPADDRESS1 has no SYMDEF in a SYSDEF without filters"):
        set_symbols_in_place(only_filtered, {"HOMEIPADDRESS1": "10.1.1.2"})
    with pytest.raises(RenderError, match="not an IPv4 address"):
        set_symbols_in_place(cards(IEASYM), {"HOMEIPADDRESS1": "10.1.1"})


def test_the_mover_refuses_other_record_counts_lengths_and_gzip_volumes(tmp_path: Path) -> None:
    volume = _volume(tmp_path, cards(IEASYM))
    sha = _sha(volume)
    records = read_member(str(volume), "SYS1.PARMLIB", "IEASYM00")
    with pytest.raises(RewriteRefused, match="5 new record"):
        rewrite_member(str(volume), "SYS1.PARMLIB", "IEASYM00", records[:-1])
    with pytest.raises(RewriteRefused, match="new record 2 is 79 bytes"):
        rewrite_member(str(volume), "SYS1.PARMLIB", "IEASYM00", [records[0], records[1][:79], *records[2:]])
    assert _sha(volume) == sha
    packed = tmp_path / "ZRES01.gz"
    packed.write_bytes(gzip.compress(volume.read_bytes(), 1))
    with pytest.raises(RewriteRefused, match="gzip'd"):
        rewrite_member(str(packed), "SYS1.PARMLIB", "IEASYM00", records)
    with pytest.raises(MoverError, match="no such member"):
        rewrite_member(str(volume), "SYS1.PARMLIB", "IEASYM01", records)


def test_the_shared_good_ieasym_fixture_takes_new_values_in_place() -> None:
    fixture = Path("/work/shared/fixtures/parmlib/good/IEASYM00")
    if not fixture.is_file():
        pytest.skip(f"shared fixture {fixture} not found")
    cards80 = fixture.read_text().splitlines()  # 80-column records, one a line
    records = [ibm1047_encode(line) for line in cards80]
    values = {"HOMEIPADDRESS1": "192.168.100.210", "DEFAULTROUTEADDR": "10.1.1.1", "NAMESERVERADDR1": "10.1.1.53"}
    new = set_symbols_in_place(records, values)
    assert [len(r) for r in new] == [80] * len(records)
    changed = [i for i, (a, b) in enumerate(zip(records, new, strict=True)) if a != b]
    assert changed == [2, 3, 4]  # the three SYMDEF records, nothing else
    lines = member_text(new).split("\n")
    assert lines[2][:72].rstrip() == "          SYMDEF(&HOMEIPADDRESS1.='192.168.100.210')"
    assert [line[72:] for line in lines] == [line[72:] for line in cards80]
    assert not [f for f in check_ieasym(Member(name="IEASYM00", text=member_text(new))) if f.severity == "error"]
