"""The IPL chain on real volumes (dasdload + the tests' PDS writer), gzip'd as staged and read by the
data mover's lookup: a good chain passes; each break in the chain is its own clear finding."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from infra.volume_lookup import ChainResult, VolumeFile, VolumeLookup, check_ipl_chain
from tests.support.ipl_system import IEASYM00, PROFILE, System, build_system, loadxx
from tests.support.pds import DASDLOAD, Dataset, set_smsfg
from zimage.config import Storage
from zimage.findings import Finding

pytestmark = pytest.mark.skipif(DASDLOAD is None, reason="Hercules dasdload is not installed (Debian hercules)")
LOCAL = Storage(host="localhost", username="zimage", root="/", transport="local")


def run(
    system: System, tmp_path: Path, loadparm: str = "0A82CS", files: list[VolumeFile] | None = None, tcpip: bool = True
) -> ChainResult:
    staged = files if files is not None else system.stage(tmp_path / "staged")
    with VolumeLookup(LOCAL) as lookup:
        return check_ipl_chain(lookup, system.chain(loadparm, tcpip), staged)


def errors(result: ChainResult) -> list[str]:
    return [f.text() for f in result.evaluation.findings if f.severity == "error"]


def only(result: ChainResult, severity: str = "error") -> Finding:
    found = [f for f in result.evaluation.findings if f.severity == severity]
    assert len(found) == 1, [f.text() for f in result.evaluation.findings]
    return found[0]


def test_a_good_chain_passes_reading_the_members_on_the_volumes(tmp_path: Path) -> None:
    result = run(build_system(tmp_path / "sys"), tmp_path)
    assert result.evaluation.findings == []
    assert not result.evaluation.unreadable
    assert result.evaluation.steps == [
        "LOADCS: MN25T1:SYS0.IPLPARM(LOADCS) (IODF device 0A82)",
        "IODF: MN25T1:SYS1.IODF99",
        "SYSCAT: MN25T1:CATALOG.MASTER",
        "parmlib: MN25U1:USER.PARMLIB, MN25S2:SYS1.PARMLIB",
        "IEASYM: MN25S2:SYS1.PARMLIB(IEASYM00), MN25U1:USER.PARMLIB(IEASYM01)",
    ]
    assert result.rounds == 2  # listing with LOADxx and the TCP/IP members, then the parmlib members


def test_loadxx_missing_on_the_iodf_device(tmp_path: Path) -> None:
    finding = only(run(build_system(tmp_path / "sys"), tmp_path, loadparm="0A82ZZ"))
    assert finding.file == "MN25T1:SYS0.IPLPARM(LOADZZ)"
    assert "LOADZZ is missing" in finding.message and "on the IODF volume MN25T1 (device 0A82)" in finding.message
    assert "SYS1.PARMLIB on the IPL volume MN25S2" in finding.message


def test_loadparm_naming_a_device_that_is_not_in_the_image(tmp_path: Path) -> None:
    finding = only(run(build_system(tmp_path / "sys"), tmp_path, loadparm="0B99CS"))
    assert finding.text().startswith("zos25-dev:LOADPARM 0B99CS:1: error: positions 1-4 name IODF device 0B99")
    assert "0A80 (MN25S2), 0A81 (MN25U1), 0A82 (MN25T1)" in finding.message


def test_iodf_data_set_absent(tmp_path: Path) -> None:
    finding = only(run(build_system(tmp_path / "sys", load=loadxx(iodf="77")), tmp_path))
    assert finding.text() == (
        "MN25T1:SYS0.IPLPARM(LOADCS):2: error: IODF 77 SYS1: data set SYS1.IODF77 is absent from the IODF volume MN25T1"
    )


def test_parmlib_data_set_on_a_volume_the_image_does_not_contain(tmp_path: Path) -> None:
    result = run(build_system(tmp_path / "sys", load=loadxx(parmlib_volser="OTHER1")), tmp_path)
    first, *rest = errors(result)
    assert first == (
        "MN25T1:SYS0.IPLPARM(LOADCS):4: error: PARMLIB USER.PARMLIB is on volume OTHER1, which the image "
        "does not contain (its volumes: MN25S2, MN25U1, MN25T1)"
    )
    # what USER.PARMLIB would have given (IEASYM01: the name server) is then missing too
    assert len(rest) == 2 and "member IEASYM01 is in none of the parmlib data sets MN25S2:SYS1.PARMLIB" in rest[0]
    assert "&NAMESERVERADDR1 is not defined" in rest[1]


def test_ieasym_suffix_naming_a_missing_member(tmp_path: Path) -> None:
    finding = only(run(build_system(tmp_path / "sys", load=loadxx(ieasym="(00,01,05)")), tmp_path))
    assert finding.text() == (
        "MN25T1:SYS0.IPLPARM(LOADCS):6: error: IEASYM suffix 05: member IEASYM05 is in none "
        "of the parmlib data sets MN25U1:USER.PARMLIB, MN25S2:SYS1.PARMLIB"
    )


def test_symbols_defined_only_under_an_lparname_filter(tmp_path: Path) -> None:
    filtered = IEASYM00.replace("SYSDEF    SYSCLONE(01)", "SYSDEF    LPARNAME(PROD1)")
    result = run(build_system(tmp_path / "sys", ieasym00=filtered), tmp_path)
    warnings = [f for f in result.evaluation.findings if f.severity == "warning"]
    assert {f.symbol for f in warnings} == {"HOMEIPADDRESS1", "DEFAULTROUTEADDR"}
    assert all(f.file == "MN25S2:SYS1.PARMLIB(IEASYM00)" for f in warnings)
    assert "is defined only under SYSDEF LPARNAME(PROD1)" in warnings[0].message
    assert errors(result) == []


def test_a_pdse_where_a_pds_is_needed(tmp_path: Path) -> None:
    system = build_system(tmp_path / "sys")
    set_smsfg(system.plain["MN25T1"], "SYS0.IPLPARM", 0x08)
    result = run(system, tmp_path)
    pdse = [f for f in result.evaluation.findings if "PDSE" in f.message]
    assert [f.text() for f in pdse] == [
        "MN25T1:SYS0.IPLPARM:1: error: SYS0.IPLPARM is a PDSE where a PDS is needed: the IPL reads LOADCS only "
        "from a PDS (and its members cannot be read from a volume image)"
    ]
    assert any("LOADCS is missing" in e for e in errors(result))  # and nothing else holds LOADCS


def test_a_volume_that_is_not_ckd(tmp_path: Path) -> None:
    system = build_system(tmp_path / "sys")
    system.plain["MN25U1"].write_bytes(random.Random(5).randbytes(200_000))
    result = run(system, tmp_path)
    assert result.evaluation.unreadable
    bad = [f for f in result.evaluation.findings if f.file == "MN25U1:VTOC"]
    assert len(bad) == 1 and "not a CKD volume image (no CKD_P370 device header)" in bad[0].message
    # what lies on that volume is not guessed: the symbol it would define is missing, TCP/IP not checked
    assert [e.split(": error: ")[0] for e in errors(result)] == [
        "MN25U1:VTOC:1",
        "MN25T1:SYS0.IPLPARM(LOADCS):6",
        "MN25S2:SYS1.PARMLIB(IEASYM00):2",
    ]
    assert {f.file for f in result.evaluation.findings if f.severity == "warning"} == {
        "MN25S2:TCPIP.PROFILE(PROFILE)",
        "MN25S2:TCPIP.TCPPARMS(TCPDATA)",
    }


def test_a_truncated_gzip_volume(tmp_path: Path) -> None:
    system = build_system(tmp_path / "sys")
    files = system.stage(tmp_path / "staged")
    victim = Path(files[1].path)
    data = victim.read_bytes()
    victim.write_bytes(data[:100])  # ends long before the VTOC
    result = run(system, tmp_path, files=[*files[:1], VolumeFile(files[1].volser, files[1].path, None), files[2]])
    assert result.evaluation.unreadable
    bad = [f for f in result.evaluation.findings if f.file == "MN25U1:VTOC"]
    assert len(bad) == 1 and "truncated" in bad[0].message


def test_a_staged_file_shorter_than_its_manifest_says(tmp_path: Path) -> None:
    system = build_system(tmp_path / "sys")
    files = system.stage(tmp_path / "staged")
    victim = Path(files[0].path)
    victim.write_bytes(victim.read_bytes()[:-10])
    result = run(system, tmp_path, files=files)
    bad = [f for f in result.evaluation.findings if f.file == "MN25S2:VTOC"]
    assert len(bad) == 1 and "the extraction recorded" in bad[0].message and "truncated or changed" in bad[0].message


def test_tcpip_members_found_on_the_volumes_are_checked(tmp_path: Path) -> None:
    literal = PROFILE.replace("&HOMEIPADDRESS1", "10.9.9.9       ")
    result = run(build_system(tmp_path / "sys", profile=literal), tmp_path)
    finding = only(result)
    assert finding.file == "MN25U1:TCPIP.PROFILE(PROFILE)" and finding.line == 5
    assert "literal address 10.9.9.9" in finding.message


def test_a_symbol_missing_from_every_ieasym_member(tmp_path: Path) -> None:
    result = run(build_system(tmp_path / "sys", ieasym01="SYSDEF    SYSCLONE(01)"), tmp_path)
    finding = only(result)
    assert finding.file == "MN25S2:SYS1.PARMLIB(IEASYM00)"  # said once, in the first member
    assert finding.symbol == "NAMESERVERADDR1" and "is not defined" in finding.message


def test_only_the_front_of_each_gzip_volume_is_read(tmp_path: Path) -> None:
    system = build_system(tmp_path / "sys")
    tail = random.Random(9).randbytes(8 << 20)  # the rest of a volume: data nobody needs
    for path in system.plain.values():
        with path.open("ab") as f:
            f.write(tail)
    result = run(system, tmp_path)
    assert result.evaluation.findings == []
    for stats in result.stats:
        assert stats.read_bytes < stats.file_size / 4, stats


def test_loadxx_statements_under_a_filter_are_named_and_not_followed(tmp_path: Path) -> None:
    load = loadxx(extra="LPARNAME PROD1\nIEASYM   07\nHWNAME   CPU2\nPARMLIB  SYS9.NOPE")
    result = run(build_system(tmp_path / "sys", load=load), tmp_path)
    assert errors(result) == []
    assert [f.text() for f in result.evaluation.findings] == [
        "MN25T1:SYS0.IPLPARM(LOADCS):8: warning: IEASYM applies only under LPARNAME(PROD1); the target's names "
        "may not match, so it is not followed here",
        "MN25T1:SYS0.IPLPARM(LOADCS):10: warning: PARMLIB applies only under HWNAME(CPU2); the target's names "
        "may not match, so it is not followed here",
    ]


def test_a_loadxx_statement_out_of_its_columns(tmp_path: Path) -> None:
    result = run(build_system(tmp_path / "sys", load=loadxx().replace("IODF     99", "IODF 99   ")), tmp_path)
    assert errors(result)[0].startswith(
        "MN25T1:SYS0.IPLPARM(LOADCS):2: error: 'IODF 99    SYS1': a LOADxx keyword starts in column 1 and its "
        "value in column 10"
    )


def test_a_volume_whose_label_is_not_the_volser_the_image_names(tmp_path: Path) -> None:
    system = build_system(tmp_path / "sys")
    files = system.stage(tmp_path / "staged")
    swapped = [VolumeFile("MN25U1", files[2].path, files[2].gz_bytes) if f.volser == "MN25U1" else f for f in files]
    result = run(system, tmp_path, files=swapped)
    assert "MN25U1:VTOC:1: error: the VOL1 label names MN25T1, the image names MN25U1" in errors(result)


def test_a_parmlib_data_set_on_several_volumes_is_a_warning_naming_the_one_checked(tmp_path: Path) -> None:
    load = loadxx().replace("PARMLIB  USER.PARMLIB".ljust(54) + "MN25U1", "PARMLIB  USER.PARMLIB")
    system = build_system(tmp_path / "sys", load=load, extra={"MN25T1": [Dataset("USER.PARMLIB", tracks=1)]})
    result = run(system, tmp_path)
    assert [f.text() for f in result.evaluation.findings] == [
        "MN25T1:SYS0.IPLPARM(LOADCS):4: warning: PARMLIB USER.PARMLIB is on volumes MN25U1, MN25T1: the master "
        "catalog decides which one the IPL uses (not read here); MN25U1 was checked, name the volume in LOADxx "
        "(columns 55-60) to be sure"
    ]


def test_no_ieasym_statement_and_no_ieasym00(tmp_path: Path) -> None:
    load = "\n".join(line for line in loadxx().split("\n") if not line.startswith("IEASYM"))
    result = run(build_system(tmp_path / "sys", load=load, ieasym00="SYSDEF    SYSCLONE(01)"), tmp_path)
    texts = [f.text() for f in result.evaluation.findings]
    # IEASYM00 is there (no symbols in it): the missing symbols are named once, in it
    assert [t.split(": ")[0] for t in texts] == ["MN25S2:SYS1.PARMLIB(IEASYM00):1"] * 3
    result = run(build_system(tmp_path / "sys2", load=load, ieasym00=None), tmp_path / "b")
    assert [f.text() for f in result.evaluation.findings] == [
        "MN25T1:SYS0.IPLPARM(LOADCS):1: error: no IEASYMxx member is in use, so the symbols Wazi aaS sets are not "
        "defined: &HOMEIPADDRESS1, &DEFAULTROUTEADDR, &NAMESERVERADDR1",
        "MN25T1:SYS0.IPLPARM(LOADCS):1: warning: LOADxx has no IEASYM statement and IEASYM00 is in none of the "
        "parmlib data sets MN25U1:USER.PARMLIB, MN25S2:SYS1.PARMLIB",
    ]
