"""Flow extract-component end to end: a real sshd plays source and storage, volumes made by
Hercules dasdinit, faults injected the way they happen (killed connections, failing or corrupting
agents, wrong host keys, a full or read-only staging file system)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.extract_component import extract_component
from tests.support.sshd import Sshd
from tests.support.volumes import dasd_volume, synthetic_volume
from zimage import staging
from zimage.manifests import ComponentManifest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

REPO = Path(__file__).resolve().parents[1]
GEN = ["2024-05-01_10_00_00", "2024-05-02_10_00_00", "2024-05-03_10_00_00"]
CORRUPT = (  # flips one byte of the staged file after the agent reported its digests
    f"{sys.executable} -c \"import sys; f = open(sys.argv[1], 'r+b'); f.seek(100); b = f.read(1); "
    "f.seek(100); f.write(bytes([b[0] ^ 255]))\" {target_path}"
)


class Site:
    """A source system and a staging root on the test sshd, and a config that names them."""

    def __init__(self, sshd: Sshd, tmp: Path, system: str = "SYSA"):
        self.sshd = sshd
        self.tmp = tmp
        self.system = system
        self.volumes = tmp / "source"
        self.volumes.mkdir()
        self.root = tmp / "staging"
        self.root.mkdir()

    def agent(self, extra: str = "") -> str:
        return (
            f"env PYTHONPATH={REPO} {sys.executable} -m infra.extract_agent --volume {self.volumes}/{{volser}}.ckd "
            f"--target {{target}} --identity {self.sshd.client_key} --known-hosts {self.sshd.known_hosts}{extra}"
        )

    def config(self, volumes: list[tuple[str, str]], *, command: str | None = None, retention: int = 3,
               local: bool = False, source: dict[str, Any] | None = None,
               storage: dict[str, Any] | None = None) -> str:
        doc = {
            "storage": {**self.sshd.endpoint(root=str(self.root)), **({"transport": "local"} if local else {}),
                        **(storage or {})},
            "sources": [{
                "name": self.system, **self.sshd.endpoint(), **({"transport": "local"} if local else {}),
                "extraction": {"command": command or self.agent()}, **(source or {}),
            }],
            "target": {"region": "jp-tok", "zone": 1,
                       "cos": {"instance_name": "cos", "bucket": "zimage-test", "region": "jp-tok"}},
            "components": [{
                "name": "comp-a", "source": self.system, "type": "sysres", "retention": retention,
                "volumes": [{"volser": v, "devnum": d, "devtype": "3390-1"} for v, d in volumes],
            }],
        }
        path = self.tmp / "zimage.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return str(path)

    @property
    def staged(self) -> Path:
        return self.root / "zos" / self.system / "volumes"

    def leftovers(self) -> list[str]:
        return sorted(p.name for p in self.staged.iterdir()) if self.staged.exists() else []


@pytest.fixture
def site(sshd: Sshd, tmp_path: Path) -> Site:
    return Site(sshd, tmp_path)


def run(config: str, generation: str | None = GEN[0], **options: Any) -> dict[str, Any]:
    return extract_component(config, "comp-a", generation, retry_delay_seconds=0.0, **options)


def assert_staged_equals_source(site: Site, summary: dict[str, Any]) -> None:
    for vol in summary["volumes"]:
        staged = (site.staged / vol["file_name"]).read_bytes()
        source = (site.volumes / f"{vol['volser']}.ckd").read_bytes()
        assert gzip.decompress(staged) == source, vol["volser"]
        assert vol["bytes"] == len(source) and vol["gz_bytes"] == len(staged)


def test_a_component_is_staged_verified_recorded_and_pruned(site: Site) -> None:
    dasd_volume(site.volumes / "MN25S2.ckd", "MN25S2")
    dasd_volume(site.volumes / "MN25T1.ckd", "MN25T1", cylinders=5)
    synthetic_volume(site.volumes / "MN25U1.ckd", 2 * 1024 * 1024, seed=3)
    config = site.config([("MN25S2", "0A80"), ("MN25T1", "0a81"), ("MN25U1", "0A82")], retention=2)

    first = run(config)
    assert_staged_equals_source(site, first)
    assert [v["devnum"] for v in first["volumes"]] == ["0A80", "0A81", "0A82"]
    assert all(v["sent"] for v in first["volumes"])
    manifest_name = "comp-a_2024-05-01_10_00_00.manifest.json"
    manifest = ComponentManifest.model_validate_json((site.staged / manifest_name).read_text())
    assert [v.file_name for v in manifest.volumes] == [
        "MN25S2_2024-05-01_10_00_00.gz", "MN25T1_2024-05-01_10_00_00.gz", "MN25U1_2024-05-01_10_00_00.gz"]
    assert {v.volser: v.sha256 for v in manifest.volumes} == {v["volser"]: v["sha256"] for v in first["volumes"]}
    assert site.leftovers() == sorted([*(v.file_name for v in manifest.volumes), manifest_name])

    from prefect.artifacts import Artifact

    table = Artifact.get("extract-comp-a")
    assert table is not None and table.type == "table"
    rows = json.loads(table.data)  # type: ignore[arg-type]
    assert [r["volser"] for r in rows] == ["MN25S2", "MN25T1", "MN25U1"]
    assert {"devnum", "bytes", "compressed", "ratio", "seconds", "MB/s", "sha256"} <= set(rows[0])

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        names = {run.name for run in client.read_task_runs(limit=200)}
    assert {"extract-MN25S2", "extract-MN25T1", "extract-MN25U1"} <= names

    # The same generation again: nothing is sent, every volume is verified again on the storage.
    again = run(config)
    assert not any(v["sent"] for v in again["volumes"])
    assert [v["gz_sha256"] for v in again["volumes"]] == [v["gz_sha256"] for v in first["volumes"]]

    run(config, GEN[1])
    assert staging.generations(site.leftovers(), "comp-a") == GEN[:2]
    third = run(config, GEN[2])
    assert staging.generations(site.leftovers(), "comp-a") == GEN[1:]  # retention 2
    assert not any(GEN[0] in name for name in site.leftovers())
    assert third["removed"][0] == "comp-a_2024-05-01_10_00_00.manifest.json"


def test_local_source_and_local_staging(site: Site) -> None:
    dasd_volume(site.volumes / "ZRES01.ckd", "ZRES01", cylinders=3)
    summary = run(site.config([("ZRES01", "0100")], local=True))
    assert_staged_equals_source(site, summary)


def test_an_agent_that_fails_once_is_retried(site: Site) -> None:
    synthetic_volume(site.volumes / "VOL001.ckd", 500_000)
    marker = site.tmp / "failed-once"
    command = f"test -e {marker} || {{{{ touch {marker}; echo 'transient trouble' >&2; exit 7; }}}}; {site.agent()}"
    summary = run(site.config([("VOL001", "0200")], command=command))
    assert marker.exists()
    assert_staged_equals_source(site, summary)
    assert latest_task_run("extract-VOL001").run_count == 2  # failed once, retried, succeeded


def latest_task_run(name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    assert runs, f"no task run named {name}"
    return runs[0]


def test_an_agent_that_always_fails_ends_in_a_clear_failure(site: Site) -> None:
    synthetic_volume(site.volumes / "VOL001.ckd", 100_000)
    command = f"{site.agent()} --max-rate 0.05 & sleep 0.5; kill $!; echo 'ICH408I access denied' >&2; exit 3"
    # a RACF denial is the same on every try: it is named as such and not retried
    denied = r"VOL001: extraction of VOL001 on SYSA: access denied \(exit status 3\): ICH408I access denied"
    with pytest.raises(Exception, match=denied) as info:
        run(site.config([("VOL001", "0200")], command=command), retries=1)
    assert "1 of 1 volume(s) of comp-a failed" in str(info.value)
    assert site.leftovers() == []  # the agent's temporary file is gone too


def test_a_dropped_connection_mid_transfer_is_retried_to_a_verified_copy(site: Site, sshd: Sshd) -> None:
    synthetic_volume(site.volumes / "VOL001.ckd", 4 * 1024 * 1024, seed=5, random_share=1.0)
    config = site.config([("VOL001", "0200")], command=site.agent(" --max-rate 2"))
    killed: list[int] = []

    def kill_when_writing() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list(site.staged.glob("*.gz.part")) if site.staged.exists() else []
            if parts and parts[0].stat().st_size > 256 * 1024:
                killed.append(sshd.kill_sessions())
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_writing)
    killer.start()
    summary = run(config)
    killer.join()
    assert killed and killed[0] > 0
    assert_staged_equals_source(site, summary)
    assert not any(n.endswith(".part") for n in site.leftovers())


def test_a_corrupted_staged_file_fails_the_volume_and_is_removed(site: Site) -> None:
    synthetic_volume(site.volumes / "VOL001.ckd", 300_000, seed=2)
    with pytest.raises(Exception, match=r"sha256 on .* the bad file was removed"):
        run(site.config([("VOL001", "0200")], command=f"{site.agent()} && {CORRUPT}"), retries=1)
    assert site.leftovers() == []


@pytest.mark.parametrize("which", ["storage", "source"])
def test_a_wrong_host_key_stages_nothing(site: Site, sshd: Sshd, which: str) -> None:
    dasd_volume(site.volumes / "MN25S2.ckd", "MN25S2", cylinders=3)
    wrong = {"known_hosts_file": str(sshd.wrong_known_hosts(site.tmp / "known_hosts"))}
    config = site.config([("MN25S2", "0A80")], **{which: wrong})
    with pytest.raises(Exception, match=r"host key of 127\.0\.0\.1"):
        run(config)
    assert list(site.root.iterdir()) == []


def test_a_missing_volume_file_is_named_before_anything_is_sent(site: Site) -> None:
    with pytest.raises(Exception, match=r"MN25S2: volume file .*/MN25S2\.ckd does not exist"):
        run(site.config([("MN25S2", "0A80")]))
    assert site.leftovers() == []


@pytest.fixture
def tmpfs(site: Site) -> Iterator[Any]:
    mounted: list[Path] = []

    def mount(options: str) -> None:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "zimage-test", str(site.root)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(site.root)

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=True)


def test_a_full_staging_file_system_stages_nothing(site: Site, tmpfs: Any) -> None:
    synthetic_volume(site.volumes / "VOL001.ckd", 3 * 1024 * 1024, random_share=1.0)
    tmpfs("size=1m")
    with pytest.raises(Exception, match=r"bytes free, the extraction may need 3,145,728"):
        run(site.config([("VOL001", "0200")]))
    assert site.leftovers() == []


def test_a_file_system_that_fills_up_mid_transfer_keeps_no_part(site: Site, tmpfs: Any) -> None:
    """Past the preflight (called here without it), the agent meets ENOSPC: a clear failure, no file left."""
    from infra.configfile import load_config
    from infra.extraction import ExtractionError, stage_volume
    from infra.staging_store import open_store

    synthetic_volume(site.volumes / "VOL001.ckd", 3 * 1024 * 1024, random_share=1.0)
    tmpfs("size=1m")
    cfg = load_config(site.config([("VOL001", "0200")]))
    comp = cfg.component("comp-a")
    with open_store(cfg.storage) as store:
        store.makedirs(str(site.staged))
        with pytest.raises(ExtractionError, match=r"exit status 1;[\s\S]*zimage-extract: error") as info:
            stage_volume(store, cfg.storage, cfg.source("SYSA"), comp.volumes[0], generation=GEN[0],
                         component="comp-a")
    assert info.value.retryable
    assert site.leftovers() == []


def test_a_read_only_staging_file_system_stages_nothing(site: Site, tmpfs: Any) -> None:
    synthetic_volume(site.volumes / "VOL001.ckd", 100_000)
    tmpfs("ro,size=1m")
    with pytest.raises(Exception, match=r"staging directory .* is not writable"):
        run(site.config([("VOL001", "0200")]))


def test_two_runs_never_extract_one_system_at_once(sshd: Sshd, tmp_path: Path) -> None:
    from prefect.concurrency.sync import concurrency

    from tasks.extract import ensure_limit, run_limit

    site = Site(sshd, tmp_path, system="SYSLOCK")
    synthetic_volume(site.volumes / "VOL001.ckd", 100_000)
    config = site.config([("VOL001", "0200")])
    ensure_limit(run_limit("SYSLOCK"), 1)
    with concurrency(run_limit("SYSLOCK"), occupy=1, strict=True), \
            pytest.raises(Exception, match="another run is extracting from SYSLOCK"):
        run(config, lock_wait_seconds=1)
    assert site.leftovers() == []
    assert run(config)["volumes"][0]["volser"] == "VOL001"  # the lock was released


def test_missing_concurrency_limits_are_created_and_existing_ones_kept() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from tasks.extract import VOLUME_SLOTS_DEFAULT, ensure_limit, volume_limit

    name = volume_limit("SYSNEW")
    assert ensure_limit(name, VOLUME_SLOTS_DEFAULT) is True
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(name).limit == VOLUME_SLOTS_DEFAULT
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=5))
        assert ensure_limit(name, VOLUME_SLOTS_DEFAULT) is False
        assert client.read_global_concurrency_limit_by_name(name).limit == 5
