"""The pure parts of deploy-host: the hosts: config section, set names, devmap and ipl file, the plan
(transfer or reuse, free space, keep), the network symbols for the IEASYMxx members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from zimage import host_set
from zimage.build import build_image
from zimage.config import Config, ConfigError, NoTarget, parse_config
from zimage.ebcdic import ibm1047_encode
from zimage.host_symbols import plan_symbols
from zimage.ipl_chain import MemberRead, MemberRef
from zimage.manifests import ComponentManifest, StagedVolume

GEN = "2024-06-01_10_00_00"


def _config(**host: Any) -> dict[str, Any]:
    return {
        "storage": {"host": "10.0.0.5", "username": "ftp", "private_key_file": "/k", "root": "/stage"},
        "sources": [{"name": "SYSZ25A", "host": "z", "username": "u", "private_key_file": "/k",
                     "extraction": {"command": "x {volser} {target}"}}],
        "components": [{"name": "sysres", "source": "SYSZ25A", "type": "sysres",
                        "volumes": [{"volser": "RES001", "devnum": "0A80", "devtype": "3390-1"},
                                    {"volser": "RES002", "devnum": "0A81", "devtype": "3390-1"}]}],
        "images": [{"name": "zdev", "components": ["sysres"], "ipl": {"device": "0A80", "loadparm": "0A82CSM1"}}],
        "hosts": [{"name": "zdt-lab1", "host": "10.0.0.20", "username": "ibmsys1", "private_key_file": "/k",
                   "known_hosts_file": "/kh", "root": "/z/zimage", "owner": "ibmsys1", **host}],
    }  # fmt: skip


def _parse(document: dict[str, Any]) -> Config:
    return parse_config(yaml.safe_dump(document))


def test_a_config_with_hosts_and_no_target_is_valid_and_the_cloud_flows_say_what_is_missing() -> None:
    cfg = _parse(_config(keep=3, network={"HOMEIPADDRESS1": "10.1.1.2"}, devmap={"system": {"memory": "8g"}}))
    host = cfg.host("zdt-lab1")
    assert (host.root, host.owner, host.keep, host.python, host.data_path) == ("/z/zimage", "ibmsys1", 3, "python3",
                                                                               "auto")  # fmt: skip
    assert cfg.target is None
    with pytest.raises(NoTarget, match="this config has no target: section"):
        cfg.cloud  # noqa: B018


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"root": "z/zimage"}, "hosts[0].root", "must be absolute"),
        ({"owner": "Not A User"}, "hosts[0].owner", "expected a user name"),
        ({"keep": 0}, "hosts[0].keep", "greater than or equal to 1"),
        ({"name": "Lab_1"}, "hosts[0].name", ""),
        ({"colour": "red"}, "hosts[0].colour", "unknown key 'colour'"),
        ({"network": {"HOMEIPADDRESS1": "10.1.1.300"}}, "hosts[0].network.HOMEIPADDRESS1", "not a dotted IPv4"),
        ({"python": "python3; rm -rf /"}, "hosts[0].python", "not a command name"),
        ({"data_path": "carrier-pigeon"}, "hosts[0].data_path", ""),
        ({"private_key_file": None}, "hosts[0]", "private_key_file or private_key_block"),
    ],
)
def test_every_host_field_is_checked_with_its_path(change: dict[str, Any], path: str, message: str) -> None:
    document = _config(**change)
    document["hosts"][0] = {k: v for k, v in document["hosts"][0].items() if v is not None}
    with pytest.raises(ConfigError) as err:
        _parse(document)
    assert any(i.path == path and message in i.message for i in err.value.issues), err.value


def test_two_hosts_of_one_name_are_refused() -> None:
    document = _config()
    document["hosts"].append(dict(document["hosts"][0]))
    with pytest.raises(ConfigError, match=r"hosts\[1\]\.name: duplicate name"):
        _parse(document)


def _built(cfg: Any, sha: str = "a" * 64) -> Any:
    volumes = [
        StagedVolume(volser=v, devnum=d, devtype="3390-1", file_name=f"{v}_{GEN}.gz", bytes=size, gz_bytes=size // 10,
                     sha256=sha if v == "RES001" else "b" * 64, gz_sha256="c" * 64, started=datetime.now(UTC),
                     finished=datetime.now(UTC))
        for v, d, size in (("RES001", "0A80", 1000), ("RES002", "0A81", 2000))
    ]  # fmt: skip
    manifest = ComponentManifest(component="sysres", system="SYSZ25A", type="sysres", generation=GEN,
                                 created=datetime.now(UTC), volumes=volumes)  # fmt: skip
    return build_image(cfg, "zdev", {"sysres": manifest})


def test_devmap_points_under_current_and_the_ipl_file_names_device_and_loadparm() -> None:
    cfg = _parse(_config(devmap={"system": {"memory": "8g", "processors": 3}}))
    host, image = cfg.host("zdt-lab1"), cfg.image("zdev")
    text = host_set.host_devmap(host, image, _built(cfg))
    assert "memory 8g\n" in text and "processors 3\n" in text
    assert "device 0A80 3390 3990 /z/zimage/zdev/current/RES001\n" in text
    assert "device 0A81 3390 3990 /z/zimage/zdev/current/RES002\n" in text
    assert host_set.ipl_command(image) == "ipl 0a80 parm 0a82csm1\n"


def test_a_set_name_is_the_same_for_the_same_inputs_and_changes_with_any_of_them() -> None:
    cfg = _parse(_config())
    host, image = cfg.host("zdt-lab1"), cfg.image("zdev")
    built = _built(cfg)
    devmap = host_set.host_devmap(host, image, built)
    first = host_set.new_set(host, image, built, devmap, "written: x").set
    assert first == host_set.new_set(host, image, built, devmap, "written: x").set
    assert first.startswith(f"{GEN}-")
    assert first != host_set.new_set(host, image, _built(cfg, "d" * 64), devmap, "written: x").set
    assert first != host_set.new_set(host, image, built, devmap, "NOT written: y").set
    other = _parse(_config(network={"HOMEIPADDRESS1": "10.9.9.9"})).host("zdt-lab1")
    assert first != host_set.new_set(other, image, built, devmap, "written: x").set


def _state(cfg: Any, current: host_set.DeployedSet | None, **extra: Any) -> host_set.HostState:
    return host_set.HostState(python="3.11.7", user="ibmsys1", owner_uid=1000, owner_gid=1000, free_bytes=10**7,
                              current=current.set if current else None, current_set=current, **extra)  # fmt: skip


def test_the_plan_reuses_volumes_of_the_same_extraction_and_counts_the_space() -> None:
    cfg = _parse(_config())
    host, image = cfg.host("zdt-lab1"), cfg.image("zdev")
    old = _built(cfg)
    deployed = host_set.new_set(host, image, old, "", "NOT written: y")
    for vol in deployed.volumes:
        vol.deployed_sha256 = vol.extracted_sha256
    new = _built(cfg, "e" * 64)  # RES001 changed, RES002 did not
    document = host_set.new_set(host, image, new, "", "NOT written: y")
    plan = host_set.plan(host, new, document, _state(cfg, deployed, allocated={"RES002": 512}))
    assert [(v.volser, v.action) for v in plan.volumes] == [("RES001", "transfer"), ("RES002", "reuse")]
    assert plan.free_needed == 1000 + 512 + host_set.FREE_MARGIN
    assert plan.transfer_bytes == 100 and plan.reuse_bytes == 2000
    assert not plan.already_current and plan.fits
    text = plan.text()
    assert "RES001   transfer" in text and "RES002   reuse" in text and "available" in text
    tight = host_set.plan(host, new, document, _state(cfg, deployed).model_copy(update={"free_bytes": 10}))
    assert not tight.fits and "NOT ENOUGH" in tight.text()


def test_keep_removes_the_oldest_sets_but_never_one_with_open_files() -> None:
    now = datetime.now(UTC)

    def s(name: str, age: int, complete: bool = True, open_by: list[int] | None = None) -> host_set.HostSet:
        return host_set.HostSet(name=name, complete=complete, created=now - timedelta(days=age), open_by=open_by or [])

    sets = [s("a", 5), s("b", 4, open_by=[4242]), s("c", 3), s("cur", 2), s("partial", 1, complete=False)]
    kept, removed, busy = host_set.prune_order(sets, "cur", "new", keep=2)
    assert kept == ["new", "cur"] and sorted(removed) == ["a", "c", "partial"] and busy == ["b"]
    kept, removed, busy = host_set.prune_order(sets, "cur", "new", keep=3)
    assert kept == ["new", "cur", "c"] and busy == ["b"]
    kept, removed, _ = host_set.prune_order(sets, "cur", "new", keep=1)
    assert kept == ["new"] and "cur" in removed


def _member(volser: str, dsn: str, name: str, text: str) -> MemberRead:
    records = [ibm1047_encode(line.ljust(80)) for line in text.splitlines()]
    return MemberRead(ref=MemberRef(volser=volser, dsn=dsn, member=name), status="found", records=records)


IEASYM00 = """SYSDEF    SYSCLONE(01)
          SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')
          SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')"""


def test_symbols_go_into_the_members_that_define_them_or_none_is_written() -> None:
    cfg = _parse(_config(network={"HOMEIPADDRESS1": "10.1.1.2", "DEFAULTROUTEADDR": "10.1.1.1",
                                  "NAMESERVERADDR1": "10.1.1.9"}))  # fmt: skip
    network = cfg.host("zdt-lab1").network
    assert network is not None
    s00 = _member("RES001", "SYS1.PARMLIB", "IEASYM00", IEASYM00)
    s01 = _member("RES002", "USER.PARMLIB", "IEASYM01", "SYSDEF    SYMDEF(&NAMESERVERADDR1.='172.26.1.1')")
    plan = plan_symbols([s00, s01], network)
    assert plan.written and [r.label for r in plan.rewrites] == ["RES001:SYS1.PARMLIB(IEASYM00)",
                                                                   "RES002:USER.PARMLIB(IEASYM01)"]  # fmt: skip
    assert plan.rewrites[0].symbols == {"HOMEIPADDRESS1": "10.1.1.2", "DEFAULTROUTEADDR": "10.1.1.1"}
    assert all(len(a) == len(b) for a, b in zip(plan.rewrites[0].records, s00.records, strict=True))
    assert plan.status.startswith("written: RES001:SYS1.PARMLIB(IEASYM00): HOMEIPADDRESS1=10.1.1.2")

    missing = plan_symbols([s00], network)
    assert not missing.written and missing.rewrites == []
    assert missing.status.startswith("NOT written: &NAMESERVERADDR1 has no SYMDEF in a SYSDEF without filters")
    assert "NOT written: the IPL chain found no IEASYMxx member" in plan_symbols([], network).status
