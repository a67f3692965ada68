"""export-instance end to end on loopback: a stopped Wazi aaS server in the IBM Cloud fake whose data
volume holds dasdinit volumes and a devmap → snapshot → a volume from it on the emulated export
mover VSI → gzip'd volumes through presigned URLs into the S3 server → a new generation on the
storage server, then build-image from it; nothing temporary left."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.support.export_site import COMPONENT, IMAGE, ExportSite, sha256
from tests.support.sshd import Sshd
from tests.support.vsi_emulator import SYSTEM

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def test_export_lands_a_new_generation_byte_for_byte_and_leaves_nothing(export_site: ExportSite) -> None:
    site = export_site
    summary = site.export()

    site.assert_clean()
    assert site.snapshots() == []  # not kept
    (vsi,) = site.emulator.vsis
    assert vsi.returncode == 0, vsi.mover_log
    gen = summary["generation"]
    manifest = json.loads((site.staging() / f"{COMPONENT}_{gen}.manifest.json").read_text())
    assert manifest["system"] == SYSTEM and manifest["type"] == "sysres"
    assert [(v["volser"], v["devnum"], v["devtype"]) for v in manifest["volumes"]] == [
        ("ZRES01", "0A80", "3390-1"),
        ("WORK01", "0A90", "3390-1"),
    ]
    for vol in manifest["volumes"]:
        original = site.files[vol["volser"]]
        staged = site.staging() / vol["file_name"]
        assert gzip.decompress(staged.read_bytes()) == original.read_bytes()
        assert vol["sha256"] == sha256(original) and vol["gz_sha256"] == sha256(staged)
        assert vol["bytes"] == original.stat().st_size and vol["gz_bytes"] == staged.stat().st_size
    assert summary["component_yaml"] is None and summary["snapshot"]["kept"] is False
    # the mover got presigned URLs and a volume made from the server's snapshot, read-only
    user_data = vsi.view.user_data or ""
    assert " export --workdir" in user_data and site.fake.api_key not in user_data
    assert site.bucket.secret_access_key not in user_data
    (att,) = vsi.view.volume_attachments
    restored = next(r for r in site.fake.recorded("POST", r"^/v1/volumes$") if "source_snapshot" in r.body)
    assert restored.body["name"] == att.volume_name and restored.body["capacity"] == 10
    snap = next(r for r in site.fake.recorded("POST", r"^/v1/snapshots$"))
    assert snap.body["source_volume"] == {"id": site.server.data_volume_id}
    # the server was left as it was: stopped, never started or touched
    assert site.server.status() == "stopped" and site.server.actions() == []

    from flows.build_image import build_image

    built = build_image(site.config(), IMAGE, {COMPONENT: gen}, verify=True)
    assert [v.name for v in built.volumes] == ["ZRES01", "WORK01"]
    assert "device 0A80 3390 3990 /volumes/ZRES01" in built.devmap


def test_a_running_server_is_refused_and_a_kept_snapshot_stays(export_site: ExportSite) -> None:
    site = export_site
    site.fake.set_status("instances", site.server.id, "running")
    with pytest.raises(Exception, match=r"instance zdev-1 is running: .*pass --stop; nothing was created"):
        site.export()
    assert site.server.leftovers() == [] and site.snapshots() == [] and site.emulator.vsis == []

    site.fake.set_status("instances", site.server.id, "stopped")
    summary = site.export(keep_snapshot=True)
    site.assert_clean()
    assert site.snapshots() == [summary["snapshot"]["name"]] and summary["snapshot"]["name"].startswith(
        "zdev-1-export-"
    )


def test_a_component_not_in_the_config_is_printed_as_yaml(export_site: ExportSite) -> None:
    site = export_site
    config = site.config(components={})
    with pytest.raises(Exception, match=r"component 'zt-new' is not in the config: give --system"):
        site.export(config, component="zt-new")
    assert site.server.leftovers() == []

    summary = site.export(config, component="zt-new", system=SYSTEM)
    site.assert_clean()
    text = summary["component_yaml"]
    assert "name: zt-new" in text and f"source: {SYSTEM}" in text and "type: sysres" in text
    assert "volser: ZRES01" in text and "devnum: 0A80" in text and "devtype: 3390-1" in text and "cylinders: 10" in text
    assert (site.staging() / f"zt-new_{summary['generation']}.manifest.json").exists()
    # the YAML makes a valid config with the new component
    import yaml

    from zimage.config import parse_config

    doc = yaml.safe_load(Path(config).read_text())
    doc["components"] += yaml.safe_load(text)["components"]
    assert parse_config(yaml.safe_dump(doc)).component("zt-new").volumes[0].cylinders == 10


def test_stop_shuts_a_running_server_down_first(export_site: ExportSite, tmp_path: Path) -> None:
    site = export_site
    site.fake.set_status("instances", site.server.id, "running")
    zos = Sshd.start(tmp_path / "zos")  # z/OS UNIX of the server: the shutdown stops it
    try:
        command = f"(sleep 1; kill $(cat {zos.directory}/sshd.pid)) >/dev/null 2>&1 </dev/null &"
        summary = site.export(site.config(instance={**zos.endpoint(), "shutdown": {"command": command}}), stop=True)
    finally:
        zos.stop()
    site.assert_clean()
    assert site.server.actions() == ["stop"] and site.server.status() == "stopped"
    assert [v["volser"] for v in summary["volumes"]] == ["ZRES01", "WORK01"]


def test_an_export_landed_over_sftp_deploys_to_an_emulator_host(export_site: ExportSite, tmp_path: Path) -> None:
    from flows.deploy_host import deploy_host
    from tests.support.host_site import OWNER

    site = export_site
    sshd, host = Sshd.start(tmp_path / "storage-sshd"), Sshd.start(tmp_path / "host-sshd")
    try:
        known = tmp_path / "known_hosts"  # the host pulls from the storage server: it must know both
        known.write_text(sshd.known_hosts.read_text() + host.known_hosts.read_text())
        (tmp_path / "staging").mkdir(exist_ok=True)
        storage = sshd.endpoint(
            root=str(tmp_path / "staging"),
            known_hosts_file=str(known),
            authorized_keys_file=str(sshd.directory / "authorized_keys"),
        )
        lab = host.endpoint(name="lab1", root=str(tmp_path / "host"), owner=OWNER, keep=2, known_hosts_file=str(known))
        config = site.config(storage=storage, hosts=[lab])
        summary = site.export(config)
        site.assert_clean()
        deployed = deploy_host(config, IMAGE, "lab1", {COMPONENT: summary["generation"]})
    finally:
        host.stop()
        sshd.stop()
    current = tmp_path / "host" / IMAGE / "current"
    for volser in ("ZRES01", "WORK01"):
        assert sha256(current / volser) == sha256(site.files[volser]), volser
    assert [v["volser"] for v in deployed["volumes"]] == ["ZRES01", "WORK01"]
