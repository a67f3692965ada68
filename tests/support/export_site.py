"""An export site: a stopped Wazi aaS server in the IBM Cloud fake whose data volume holds real
dasdinit volumes and a devmap (an ext2 image, as the data mover lays it out), a bucket on the S3
server, a local staging directory, and a config naming them all."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.ledger import LedgerDocument
from tests.fakes.ibmcloud import FakeIbmCloud, s3_object_checker
from tests.support.s3 import S3Bucket
from tests.support.volumes import dasd_volume
from tests.support.vsi_emulator import SYSTEM, VsiEmulator, site_config
from tests.support.wazi_server import WaziServer, make_server

COMPONENT = "zt-all"
IMAGE = "zos-test"
VOLUMES = {COMPONENT: ("sysres", [("ZRES01", "0A80"), ("WORK01", "0A90")])}
FAST = {
    "poll_seconds": 0.02,
    "report_poll_seconds": 0.1,
    "answer_poll_seconds": 0.2,
    "resource_timeout_minutes": 0.25,
    "snapshot_timeout_minutes": 0.25,
    "retry_base_seconds": 0.02,
    "deadline_minutes": 2.0,
    "stale_minutes": 1.0,
}


def data_volume_image(directory: Path, volumes: list[tuple[str, str]], cylinders: int = 10) -> dict[str, Path]:
    """ext2 image labelled zvolumes with the volumes (named by VOLSER) and their devmap; returns
    the image and each original volume file."""
    content = directory / "content"
    content.mkdir(parents=True)
    originals = {}
    lines = ["[system]", "memory 16g", "3270port 3270", "processors 2", "", "[manager]", "name awsckd 0001"]
    for volser, devnum in volumes:
        originals[volser] = dasd_volume(content / volser, volser, cylinders=cylinders)
        lines.append(f"device {devnum} 3390 3990 /volumes/{volser}")
    lines += ["", "[manager]", "name aws3274 0002", "device 0700 3279 3274", ""]
    (content / "devmap").write_text("\n".join(lines))
    image = directory / "data.img"
    size_kb = sum(p.stat().st_size for p in originals.values()) // 1024 + 8192
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext2", "-L", "zvolumes", "-d", str(content), str(image), f"{size_kb}k"],
        check=True,
    )
    return {"image": image, **originals}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ExportSite:
    def __init__(
        self, fake: FakeIbmCloud, bucket: S3Bucket, server: WaziServer, emulator: VsiEmulator, tmp: Path
    ) -> None:
        self.fake, self.bucket, self.server, self.emulator, self.tmp = fake, bucket, server, emulator, tmp
        self.state_dir = tmp / "state"
        self.rebuild(10)
        fake.set_status("instances", server.id, "stopped")

    def rebuild(self, cylinders: int) -> None:
        """The server's data volume, its volumes of `cylinders` cylinders."""
        self.files = data_volume_image(self.tmp / f"zdev-1-data-{cylinders}", VOLUMES[COMPONENT][1], cylinders)
        self.emulator.contents[self.server.data_volume_id] = self.files["image"]

    def config(
        self,
        *,
        components: dict[str, Any] | None = None,
        instance: dict[str, Any] | None = None,
        mover: dict[str, Any] | None = None,
        storage: dict[str, Any] | None = None,
        hosts: list[dict[str, Any]] | None = None,
    ) -> str:
        doc = site_config(
            self.tmp,
            volumes=components if components is not None else VOLUMES,
            storage=storage,
            target={
                "region": "jp-tok",
                "zone": 1,
                "resource_group": "Default",
                "insecure_http": True,
                "iam_endpoint": self.fake.url,
                "vpc_endpoint": self.fake.vpc_url,
                "cos": self.bucket.cos_config(),
                "mover": {"deadline_hours": 1, **(mover or {})},
            },
        )
        if components == {}:  # the server's volumes are not in the config yet
            doc["components"], doc["images"] = (
                [
                    {
                        "name": "zt-other",
                        "source": SYSTEM,
                        "type": "volumes",
                        "volumes": [{"volser": "OTHER1", "devnum": "0B00", "devtype": "3390-1"}],
                    }
                ],
                [],
            )
        doc["instances"] = [
            {
                "name": self.server.name,
                "host": "127.0.0.1",
                "port": 1,
                "username": "IBMUSER",
                "private_key_file": str(self.tmp / "no-key"),
                "known_hosts_file": str(self.tmp / "no-hosts"),
                "shutdown": {"command": "/u/ibmuser/bin/shutdown.sh", "timeout_minutes": 1},
                **(instance or {}),
            }
        ]
        if hosts:
            doc["hosts"] = hosts
        path = self.tmp / "zimage.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return str(path)

    def export(self, config: str | None = None, component: str = COMPONENT, **options: Any) -> Any:
        from flows.export_instance import export_instance

        return export_instance(config or self.config(), self.server.name, component, **{**FAST, **options})

    def ledgers(self) -> list[LedgerDocument]:
        return [LedgerDocument.model_validate_json(p.read_text()) for p in (self.state_dir / "ledger").glob("*.json")]

    def objects(self) -> dict[str, int]:
        listing = self.bucket.client().list_objects_v2(Bucket=self.bucket.bucket).get("Contents", [])
        return {o["Key"]: o["Size"] for o in listing}

    def export_objects(self) -> list[str]:
        """Objects of exports (under <instance>/builds/) still in the bucket."""
        return [k for k in self.objects() if k.startswith(f"{self.server.name}/builds/")]

    def staging(self) -> Path:
        return self.tmp / "staging" / "zos" / SYSTEM / "volumes"

    def snapshots(self) -> list[str]:
        return [s["name"] for s in self.fake.resources("snapshots")]

    def assert_clean(self) -> None:
        assert self.server.leftovers() == []
        assert self.export_objects() == []
        assert self.bucket.pending_uploads() == []
        assert (
            not [p for p in self.staging().glob("*") if p.name.endswith(".part")] if self.staging().exists() else True
        )


@pytest.fixture
def export_site(
    ibmcloud_fake: FakeIbmCloud,
    s3_bucket: S3Bucket,
    vsi_emulator: VsiEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> ExportSite:
    server = make_server(ibmcloud_fake)
    site = ExportSite(ibmcloud_fake, s3_bucket, server, vsi_emulator, tmp_path)
    for name, value in {
        **s3_bucket.env(),
        "IBMCLOUD_API_KEY": ibmcloud_fake.api_key,
        "RESOURCE_CONTROLLER_URL": ibmcloud_fake.url,
        "ZIMAGE_STATE_DIR": str(site.state_dir),
    }.items():
        monkeypatch.setenv(name, value)
    ibmcloud_fake.cos_object_check = s3_object_checker(s3_bucket.client())
    return site
