"""The mover VSI, emulated from the IBM Cloud fake's instance-created hook.

For every instance whose user data is zimage's mover script: the attached volumes become sparse
regular files of their capacity under a device directory, named `virtio-<first 20 characters of
the attachment's device id>` as on a VSI; the user data script runs on this machine with
ZIMAGE_HOME, ZIMAGE_METADATA_URL (the fake's metadata service of that instance) and
ZIMAGE_DEVICE_DIR set, with no secret in its environment, against the S3 server through the
presigned URLs it finds. The mover mounts its volumes with -o loop as root: it runs in a private
mount namespace (`unshare --mount`) whose mounts vanish with it; its work directory lies under
ZIMAGE_HOME. When the instance is deleted the emulated VSI's processes are killed.
Machines without loop mounts or unshare skip the tests that use it, saying why.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.ledger import LedgerDocument
from tests.fakes.ibmcloud import FakeIbmCloud, InstanceView, s3_object_checker
from tests.support.s3 import S3Bucket

MOVER_MARK = "zimage data mover"
GB = 10**9


@dataclass
class EmulatedVsi:
    view: InstanceView
    root: Path
    devices: dict[str, Path] = field(default_factory=dict)  # attachment name -> file
    returncode: int | None = None
    killed: bool = False
    frozen: bool = False
    output: str = ""

    @property
    def mover_log(self) -> str:
        path = self.root / "home" / "mover.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=60)


def why_not_supported(tmp: Path) -> str | None:
    """None when loop mounts inside a private mount namespace work here, else the reason."""
    if os.geteuid() != 0:
        return "the mover mounts its volumes: needs root"
    for tool in ("unshare", "mount", "mke2fs", "qemu-img", "sh", "base64"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    image, point = tmp / "probe.img", tmp / "probe"
    point.mkdir(exist_ok=True)
    made = _run("mke2fs", "-q", "-F", "-t", "ext2", str(image), "1024")
    if made.returncode != 0:
        return f"mke2fs failed: {made.stderr.strip()}"
    probe = _run("unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f"mount -o loop {image} {point} && umount {point}")
    if probe.returncode != 0:
        return f"loop mounts in a private mount namespace are not allowed here: {probe.stderr.strip()}"
    return None


class VsiEmulator:
    def __init__(self, fake: FakeIbmCloud, tmp: Path) -> None:
        self.fake = fake
        self.tmp = tmp
        self.vsis: list[EmulatedVsi] = []
        # run before the user data script starts (e.g. to spoil an object in the bucket)
        self.before_start: list[Callable[[EmulatedVsi], None]] = []
        # volume id -> image file holding what that volume holds (e.g. a Wazi aaS server's data
        # volume: ext2 with dasdinit volumes and a devmap); a volume made from a snapshot of it
        # is attached to the mover with those bytes
        self.contents: dict[str, Path] = {}
        # when this returns True the mover's processes are stopped (SIGSTOP), as a VSI that hangs
        self.freeze_when: Callable[[EmulatedVsi], bool] | None = None
        self.stopped = threading.Event()
        fake.on_instance_created(self)

    def __call__(self, view: InstanceView) -> None:
        if not view.user_data or MOVER_MARK not in view.user_data:
            return  # not a mover (e.g. a Wazi aaS instance)
        vsi = EmulatedVsi(view, self.tmp / view.name)
        self.vsis.append(vsi)
        by_id = vsi.root / "by-id"
        by_id.mkdir(parents=True)
        for att in view.volume_attachments:
            disk = vsi.root / f"{att.name}.disk"
            content = self._content_of(att.volume_id)
            if content is not None:
                subprocess.run(["cp", "--sparse=always", str(content), str(disk)], check=True)
            with disk.open("r+b" if content else "wb") as handle:
                handle.truncate(att.capacity_gb * GB)  # sparse: costs nothing until written
            (by_id / f"virtio-{att.device_id[:20]}").symlink_to(disk)
            vsi.devices[att.name] = disk
        for hook in self.before_start:
            hook(vsi)
        self._boot(vsi, by_id)

    def _content_of(self, volume_id: str) -> Path | None:
        """The image of a volume, or of the volume its source snapshot was taken of."""
        with self.fake.store.lock:
            vol = self.fake.store.find("volumes", volume_id)
            snap_ref = vol.res.get("source_snapshot") if vol else None
            snap = self.fake.store.find("snapshots", snap_ref["id"]) if snap_ref else None
        origin = snap.res["source_volume"]["id"] if snap else volume_id
        return self.contents.get(origin)

    def _boot(self, vsi: EmulatedVsi, by_id: Path) -> None:
        script = vsi.root / "user-data.sh"
        script.write_text(vsi.view.user_data or "")
        # the VSI's python3 is this interpreter; nothing of the test's environment (keys!) goes along
        bin_dir = vsi.root / "bin"
        bin_dir.mkdir()
        (bin_dir / "python3").symlink_to(sys.executable)
        env = {
            "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(vsi.root),
            "LANG": "C.UTF-8",
            "ZIMAGE_HOME": str(vsi.root / "home"),
            "ZIMAGE_METADATA_URL": vsi.view.metadata_url,
            "ZIMAGE_DEVICE_DIR": str(by_id),
        }
        inner = f"exec sh {script}"
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
        reader.start()
        while proc.poll() is None:
            if (self.stopped.is_set() or not self._instance_alive(vsi.view.id)) and not vsi.killed:
                vsi.killed = True  # the VSI was deleted under the mover
                os.killpg(proc.pid, signal.SIGKILL)
            elif self.freeze_when is not None and not vsi.frozen and self.freeze_when(vsi):
                vsi.frozen = True
                os.killpg(proc.pid, signal.SIGSTOP)
            time.sleep(0.05)
        reader.join(5)
        vsi.returncode = proc.returncode
        vsi.output = "".join(output)

    def _instance_alive(self, instance_id: str) -> bool:
        entry = self.fake.store.find("instances", instance_id)
        return entry is not None and entry.status != "deleting"


@pytest.fixture
def vsi_emulator(ibmcloud_fake: FakeIbmCloud, tmp_path: Path) -> Iterator[VsiEmulator]:
    """Emulates every mover VSI the fake creates in this test (skipped where loop mounts are not allowed)."""
    probe = tmp_path / "vsi-probe"
    probe.mkdir()
    reason = why_not_supported(probe)
    if reason:
        pytest.skip(reason)
    emulator = VsiEmulator(ibmcloud_fake, tmp_path / "vsi")
    yield emulator
    emulator.stopped.set()  # a mover still running (a failed test) must not outlive the test


# --- a whole deploy site: staged components, a bucket, the fake cloud, and a config -------------


REPO = Path(__file__).resolve().parents[2]
IMAGE = "zos-test"
SYSTEM = "SYSZT1"
VOLUMES = {"zt-sysres": ("sysres", [("ZRES01", "0A80")]), "zt-data": ("volumes", [("WORK01", "0A90")])}


def site_config(
    root: Path,
    *,
    target: dict[str, object],
    storage: dict[str, object] | None = None,
    agent_options: str = "",
    volumes: dict[str, tuple[str, list[tuple[str, str]]]] | None = None,
    cylinders: int = 10,
    image: dict[str, object] | None = None,
) -> dict[str, object]:
    """A config with a local source under `root`, staging under `root` (or the given storage),
    and the given target section; `image` overrides keys of the image."""
    python = sys.executable
    volumes = volumes or VOLUMES
    return {
        "storage": storage
        or {"host": "localhost", "username": "t", "transport": "local", "root": str(root / "staging")},
        "sources": [{
            "name": SYSTEM, "host": "localhost", "username": "t", "transport": "local",
            "extraction": {"command": f"{python} -m infra.extract_agent --volume {root}/source/{{volser}}.ckd "
                                      f"--target {{target}}{agent_options}"},
        }],
        "target": target,
        "components": [
            {"name": name, "source": SYSTEM, "type": kind, "retention": 2,
             "volumes": [{"volser": v, "devnum": d, "devtype": "3390-1", "cylinders": cylinders} for v, d in vols]}
            for name, (kind, vols) in volumes.items()
        ],
        "images": [{"name": IMAGE, "components": list(volumes), "os": "zos-2-5-s390x-dev-test-byol",
                    "ipl": {"device": "0A80", "loadparm": "0A82CSM1"}, **(image or {})}],
    }


def extract_all(config: Path, volumes: dict[str, tuple[str, list[tuple[str, str]]]] | None = None) -> None:
    from flows.extract_component import extract_component

    for component in volumes or VOLUMES:
        extract_component(str(config), component, "2024-06-01_10_00_00", retry_delay_seconds=0.0)


@pytest.fixture(scope="module")
def staged_site(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """Source volumes (dasdinit) extracted once per module into a local staging directory."""
    from tests.support.volumes import dasd_volume

    root = tmp_path_factory.mktemp("deploy-site")
    (root / "source").mkdir()
    for _, vols in VOLUMES.values():
        for volser, _ in vols:
            dasd_volume(root / "source" / f"{volser}.ckd", volser, cylinders=10)
    target = {"region": "jp-tok", "zone": 1, "cos": {"instance_name": "c", "bucket": "unused", "region": "jp-tok"}}
    path = root / "extract.yaml"
    path.write_text(yaml.safe_dump(site_config(root, target=target), sort_keys=False))
    extract_all(path)
    return root


FAST = {
    "poll_seconds": 0.02, "report_poll_seconds": 0.1, "resource_timeout_minutes": 0.25,
    "publish_timeout_minutes": 0.25, "retry_base_seconds": 0.02, "deadline_minutes": 2.0,
}


class DeploySite:
    """A staged site, a bucket and the fake cloud, with a config that names them."""

    def __init__(self, fake: FakeIbmCloud, bucket: S3Bucket, staged: Path, tmp: Path) -> None:
        self.fake, self.bucket, self.staged, self.tmp = fake, bucket, staged, tmp
        self.state_dir = tmp / "state"

    def config(self, mover: dict[str, Any] | None = None, site: dict[str, Any] | None = None, **target: Any) -> str:
        doc = site_config(self.staged, **(site or {}), target={
            "region": "jp-tok", "zone": 1, "resource_group": "Default",
            "iam_endpoint": self.fake.url, "vpc_endpoint": self.fake.vpc_url,
            "insecure_http": True,  # the fake and the S3 server serve plain http on loopback
            "cos": self.bucket.cos_config(),
            "mover": {"deadline_hours": 1, **(mover or {})},
            **target,
        })
        path = self.tmp / "zimage.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return str(path)

    def deploy(self, config: str | None = None, **options: Any) -> Any:
        from flows.deploy_image import deploy_image

        return deploy_image(config or self.config(), IMAGE, **{**FAST, **options})

    def objects(self) -> dict[str, int]:
        listing = self.bucket.client().list_objects_v2(Bucket=self.bucket.bucket).get("Contents", [])
        return {o["Key"]: o["Size"] for o in listing}

    def get(self, key: str) -> bytes:
        return self.bucket.client().get_object(Bucket=self.bucket.bucket, Key=key)["Body"].read()

    def ledgers(self) -> list[LedgerDocument]:
        return [LedgerDocument.model_validate_json(p.read_text()) for p in (self.state_dir / "ledger").glob("*.json")]

    def products(self) -> tuple[list[str], list[str]]:
        images = [i["name"] for i in self.fake.resources("images") if i.get("visibility") == "private"]
        return images, [s["name"] for s in self.fake.resources("snapshots")]


@pytest.fixture
def deploy_site(
    ibmcloud_fake: FakeIbmCloud, s3_bucket: S3Bucket, staged_site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> DeploySite:
    site = DeploySite(ibmcloud_fake, s3_bucket, staged_site, tmp_path)
    for name, value in {**s3_bucket.env(), "IBMCLOUD_API_KEY": ibmcloud_fake.api_key,
                        "RESOURCE_CONTROLLER_URL": ibmcloud_fake.url, "ZIMAGE_STATE_DIR": str(site.state_dir)}.items():
        monkeypatch.setenv(name, value)
    ibmcloud_fake.cos_object_check = s3_object_checker(s3_bucket.client())
    # the config's COS instance, and an authorization scoped to it alone (as the CLI's hint creates it)
    guid = str(uuid.uuid4())
    crn = f"crn:v1:bluemix:public:cloud-object-storage:global:a/{ibmcloud_fake.account_id}:{guid}::"
    ibmcloud_fake.platform.add_cos_instance(s3_bucket.cos_config()["instance_name"], guid, crn)
    ibmcloud_fake.add_image_to_cos_authorization(guid)
    return site
