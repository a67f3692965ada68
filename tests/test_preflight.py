"""Flow preflight under Prefect's test harness, with a real sshd playing the source systems and the
storage server; parmlib members are files (ASCII and IBM-1047) named by absolute paths."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.preflight import PreflightFailed, preflight
from tests.support.sshd import Sshd, free_port
from tests.test_parmlib import ebcdic_lines, source_config, write_members
from zimage import devices
from zimage.config import Config, parse_config
from zimage.preflight import CKD_COMPRESSION_RATIO, artifact_key, estimate, select

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
MEMBER_FILES = {"ieasym": "IEASYM00", "tcpip_profile": "PROFILE", "tcpdata": "TCPDATA"}


def volumes(count: int, devtype: str = "3390-1", prefix: str = "V") -> list[dict[str, str]]:
    return [{"volser": f"{prefix}{n:05d}", "devnum": f"{0x100 + n:04X}", "devtype": devtype} for n in range(count)]


class Site:
    """Source systems and a staging root on the test sshd, and configs that name them."""

    def __init__(self, sshd: Sshd, tmp: Path):
        self.sshd = sshd
        self.tmp = tmp
        self.root = tmp / "staging"
        self.root.mkdir()

    def config(self, sources: list[dict[str, Any]], *, storage: dict[str, Any] | None = None,
               components: list[dict[str, Any]] | None = None, images: list[dict[str, Any]] | None = None,
               cos: dict[str, Any] | None = None) -> str:
        doc = {
            "storage": {**self.sshd.endpoint(root=str(self.root)), **(storage or {})},
            "sources": sources,
            "target": {"region": "jp-tok", "zone": 1,
                       "cos": {"instance_name": "cos", "bucket": "zimage-test", "region": "jp-tok", **(cos or {})}},
            "components": components or [
                {"name": f"comp-{s['name'].lower()}", "source": s["name"], "type": "sysres", "volumes": volumes(2)}
                for s in sources
            ],
            "images": images or [],
        }
        path = self.tmp / "zimage.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        parse_config(path.read_text())  # a test config must be valid before the flow sees it
        return str(path)


@pytest.fixture
def site(sshd: Sshd, tmp_path: Path) -> Site:
    return Site(sshd, tmp_path)


def run(config: str, **params: Any) -> tuple[dict[str, Any] | None, BaseException | None, str]:
    """Run the flow; (result, exception, markdown of its artifact)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    params.setdefault("cloud_check", False)  # the config's target is a placeholder (tests/test_preflight_cloud.py)
    state = preflight(config, retry_delay_seconds=0, return_state=True, **params)
    outcome = state.result(raise_on_failure=False)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )
    artifacts = [a for a in artifacts if a.type == "markdown"]  # a failed run also has a result artifact
    assert len(artifacts) == 1, [a.key for a in artifacts]
    expected_key = artifact_key(params.get("image") or params.get("system") or "all")
    assert artifacts[0].key == expected_key and artifacts[0].type == "markdown"
    if isinstance(outcome, BaseException):
        return None, outcome, str(artifacts[0].data)
    return outcome, None, str(artifacts[0].data)


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in result["checks"]}


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("prefect_harness")
def test_good_members_over_ssh_pass_and_publish_an_artifact(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")  # IEASYM00 in ASCII, PROFILE and TCPDATA in IBM-1047
    config = site.config([source_config(sshd, paths)])
    result, error, markdown = run(config, system="SYSA")
    assert error is None, error
    assert result is not None
    assert result["status"] == "ok"
    assert statuses(result) == {
        "source SYSA: reachable": "ok",
        "source SYSA: parmlib symbols": "ok",
        "storage: reachable and writable": "ok",
        "storage: free space": "ok",
    }
    assert result["findings"] == {"SYSA": []}
    checks = {c["name"]: c for c in result["checks"]}
    parmlib = checks["source SYSA: parmlib symbols"]
    assert parmlib["messages"] == ["3 member(s) read and checked: 0 error(s), 0 warning(s)"]
    assert "host key verified" in checks["source SYSA: reachable"]["messages"][0]
    assert checks["source SYSA: reachable"]["target"] == f"{sshd.user}@127.0.0.1:{sshd.port}"
    assert f"x {CKD_COMPRESSION_RATIO}" in " ".join(checks["storage: free space"]["messages"])
    assert result["estimate"]["compressed_bytes"] == int(2 * devices.capacity_bytes(1113) * CKD_COMPRESSION_RATIO)
    assert markdown.startswith("# Preflight of system SYSA: ok")
    assert "| source SYSA: parmlib symbols | ok |" in markdown
    assert "## IEASYM and TCP/IP checks: SYSA" in markdown and "0 error(s), 0 warning(s)." in markdown
    assert "assumed gzip ratio" in markdown
    assert list(site.root.iterdir()) == []  # the writability probe is gone


@pytest.mark.usefixtures("prefect_harness")
def test_hardcoded_members_fail_the_flow_naming_the_errors(site: Site, sshd: Sshd) -> None:
    hardcoded = FIXTURES / "parmlib" / "hardcoded"
    if not hardcoded.is_dir():
        pytest.skip(f"shared fixtures not found at {hardcoded}")
    members = site.tmp / "hardcoded"
    shutil.copytree(hardcoded, members)
    # The TCP/IP profile as an untranslated z/OS member would arrive: IBM-1047 with NL line ends.
    profile = members / "PROFILE"
    profile.write_bytes(ebcdic_lines(profile.read_text()))
    config = site.config([source_config(sshd, {k: str(members / f) for k, f in MEMBER_FILES.items()})])
    _, error, markdown = run(config, system="SYSA")
    assert isinstance(error, PreflightFailed)
    message = str(error)
    assert message.startswith("preflight of system SYSA: 1 check(s) failed:\n  source SYSA: parmlib symbols")
    assert f"{members / 'IEASYM00'}:1: error: &DEFAULTROUTEADDR is not defined" in message
    assert f"{members / 'PROFILE'}:4: error: the HOME address of the primary link OSALINK is the literal " \
           "address 192.168.10.21" in message  # decoded from IBM-1047
    assert f"{members / 'TCPDATA'}:2: error: the first name server (NSINTERADDR) is the literal address" in message
    assert "| source SYSA: parmlib symbols | error |" in markdown
    assert "| error | `" in markdown and "192.168.10.129" in markdown  # the findings table
    assert "| storage: reachable and writable | ok |" in markdown


@pytest.mark.usefixtures("prefect_harness")
def test_preflight_says_how_staged_files_will_reach_cos(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    sources = [source_config(sshd, paths)]

    def storage_check(**changes: Any) -> dict[str, Any]:
        result, error, _ = run(site.config(sources, **changes), system="SYSA")
        found = result or {"checks": []}
        checks = {c["name"]: c for c in found["checks"]} if result else {}
        return checks.get("storage: reachable and writable") or {"status": "error", "messages": [str(error)]}

    # the default endpoint of IBM Cloud is out of this machine's reach: auto relays, and says so
    auto = storage_check()
    assert auto["status"] == "ok", auto
    assert any("relayed through the worker" in m and "cannot be reached" in m for m in auto["messages"]), auto
    # an endpoint the storage server reaches (any listening port will do: nothing is sent)
    here = {"endpoint": f"https://127.0.0.1:{sshd.port}"}
    direct = storage_check(storage={"stage_path": "direct"}, cos=here)
    assert direct["status"] == "ok", direct
    assert any("uploads staged files to COS itself (Python 3." in m and f"reaches 127.0.0.1:{sshd.port}" in m
               for m in direct["messages"]), direct  # fmt: skip
    missing = storage_check(storage={"stage_path": "direct", "python": "/nonexistent/python3"}, cos=here)
    assert missing["status"] == "error"
    assert any("storage.stage_path is direct, but storage server" in m and "no Python 3 as '/nonexistent/python3'"
               in m and "storage.python" in m for m in missing["messages"]), missing  # fmt: skip
    assert list(site.root.iterdir()) == []


@pytest.mark.usefixtures("prefect_harness")
def test_unreachable_storage_is_an_error_naming_the_host(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    port = free_port()
    config = site.config([source_config(sshd, paths)], storage={"port": port})
    _, error, markdown = run(config)
    assert isinstance(error, PreflightFailed)
    assert f"storage: reachable and writable ({sshd.user}@127.0.0.1:{port}): {sshd.user}@127.0.0.1:{port}: " \
           "cannot connect" in str(error)
    assert "| storage: free space | warning |" in markdown and "not measured" in markdown
    assert "| source SYSA: parmlib symbols | ok |" in markdown  # the rest was still checked


@pytest.mark.usefixtures("prefect_harness")
def test_wrong_host_key_of_a_source_is_an_error_saying_host_key(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    wrong = sshd.wrong_known_hosts(site.tmp / "wrong_known_hosts")
    config = site.config([source_config(sshd, paths, known_hosts_file=str(wrong))])
    _, error, markdown = run(config, system="SYSA")
    assert isinstance(error, PreflightFailed)
    assert "source SYSA: reachable" in str(error) and "host key of 127.0.0.1" in str(error)
    assert "does not match" in str(error)
    assert "| source SYSA: parmlib symbols | warning |" in markdown and "could not be reached" in markdown


@pytest.mark.usefixtures("prefect_harness")
def test_image_scope_with_a_local_source_missing_entries_and_a_missing_member(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    local = {"name": "SYSB", "host": "localhost", "username": "nobody", "transport": "local",
             "extraction": {"command": "true {target}"},
             "parmlib": {"ieasym": paths["ieasym"], "tcpdata": str(site.tmp / "NOSUCH")}}
    components = [
        {"name": "res-b", "source": "SYSB", "type": "sysres", "volumes": volumes(1, prefix="B")},
        {"name": "data-a", "source": "SYSA", "type": "volumes", "volumes": volumes(1, "3390-3", prefix="A")},
        {"name": "other-a", "source": "SYSA", "type": "volumes", "volumes": volumes(3, prefix="C")},
    ]
    image = {"name": "img-b", "components": ["res-b"], "ipl": {"device": "0100", "loadparm": "0A82CSM1"}}
    config = site.config([source_config(sshd, paths), local], components=components, images=[image])
    _, error, markdown = run(config, image="img-b")
    assert isinstance(error, PreflightFailed)
    assert "source SYSA" not in str(error) and "SYSA" not in markdown  # only the image's source
    assert f"source SYSB: cannot read {site.tmp / 'NOSUCH'}: cannot read" in str(error)
    assert "parmlib.tcpip_profile is not set: the TCP/IP PROFILE check was skipped" in markdown
    assert "| source SYSB: reachable | ok | `this machine` |" in markdown
    assert "1 volume(s)" in markdown  # res-b only


@pytest.mark.usefixtures("prefect_harness")
def test_a_source_without_parmlib_entries_is_a_warning_that_the_check_was_skipped(site: Site, sshd: Sshd) -> None:
    config = site.config([source_config(sshd)])
    result, error, markdown = run(config, system="SYSA")
    assert error is None, error
    assert result is not None and result["status"] == "warning"
    parmlib = {c["name"]: c for c in result["checks"]}["source SYSA: parmlib symbols"]
    assert parmlib["status"] == "warning"
    assert parmlib["messages"] == [
        "parmlib.ieasym is not set: the IEASYMxx check was skipped",
        "parmlib.tcpip_profile is not set: the TCP/IP PROFILE check was skipped",
        "parmlib.tcpdata is not set: the TCPDATA check was skipped",
    ]
    assert markdown.startswith("# Preflight of system SYSA: warning")


@pytest.mark.usefixtures("prefect_harness")
def test_too_little_staging_space_is_an_error(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    st = os.statvfs(site.root)
    one = devices.capacity_bytes(devices.model("3390-A").cylinders) * CKD_COMPRESSION_RATIO
    count = math.ceil(st.f_bavail * st.f_frsize / one) + 1  # estimated beyond what is free
    components = [{"name": "big", "source": "SYSA", "type": "volumes", "volumes": volumes(count, "3390-A")}]
    config = site.config([source_config(sshd, paths)], components=components, storage={"transport": "local"})
    _, error, markdown = run(config, system="SYSA")
    assert isinstance(error, PreflightFailed)
    assert "storage: free space" in str(error) and "not enough room even for one generation" in str(error)
    assert "| storage: reachable and writable | ok | `this machine` |" in markdown


@pytest.mark.usefixtures("prefect_harness")
def test_local_staging_root_that_does_not_exist_is_an_error(site: Site, sshd: Sshd) -> None:
    paths = write_members(site.tmp / "parmlib")
    config = site.config([source_config(sshd, paths)],
                         storage={"transport": "local", "root": str(site.tmp / "absent")})
    _, error, _ = run(config)
    assert isinstance(error, PreflightFailed)
    assert f"staging root {site.tmp / 'absent'} does not exist on this machine" in str(error)
    assert not (site.tmp / "absent").exists()


# --- scope and estimate --------------------------------------------------------------------------


def config_of(sources: list[dict[str, Any]], components: list[dict[str, Any]],
              images: list[dict[str, Any]] | None = None) -> Config:
    return parse_config(yaml.safe_dump({
        "storage": {"host": "h", "username": "u", "root": "/s", "transport": "local"},
        "sources": sources,
        "target": {"region": "jp-tok", "zone": 1, "cos": {"instance_name": "c", "bucket": "bkt", "region": "jp-tok"}},
        "components": components,
        "images": images or [],
    }))


def test_scope_by_image_system_or_everything() -> None:
    cfg = config_of(
        [source_config(name="SYSA"), source_config(name="SYS$B")],
        [{"name": "comp-a", "source": "SYSA", "type": "sysres", "volumes": volumes(1)},
         {"name": "comp-b", "source": "SYS$B", "type": "volumes", "volumes": volumes(1)}],
        [{"name": "img-a", "components": ["comp-a"], "ipl": {"device": "0100", "loadparm": "0A82CSM1"}}],
    )
    by_image = select(cfg, "img-a", None)
    assert (by_image.systems, by_image.components, by_image.key) == (["SYSA"], ["comp-a"], "preflight-img-a")
    by_system = select(cfg, None, "SYS$B")
    assert (by_system.systems, by_system.components, by_system.key) == (["SYS$B"], ["comp-b"], "preflight-sys-b")
    everything = select(cfg, None, None)
    assert (everything.systems, everything.key, everything.label) == (["SYSA", "SYS$B"], "preflight-all", "all sources")
    with pytest.raises(ValueError, match="not both"):
        select(cfg, "img-a", "SYSA")
    with pytest.raises(ValueError, match=r"no source named 'SYSC' in the config \(known: SYS\$B, SYSA\)"):
        select(cfg, None, "SYSC")
    with pytest.raises(ValueError, match="no image named 'nope'"):
        select(cfg, "nope", None)


def test_estimate_is_capacity_times_ratio_plus_a_generation() -> None:
    eav = {"volser": "X", "devnum": "0200", "devtype": "3390-A", "cylinders": 100}
    cfg = config_of([source_config()], [{"name": "c", "source": "SYSA", "type": "volumes",
                                         "volumes": [*volumes(2, "3390-9"), eav]}])
    est = estimate(cfg.components)
    capacity = devices.capacity_bytes(2 * 10_017 + 100)
    assert (est.volumes, est.capacity_bytes) == (3, capacity)
    assert est.compressed_bytes == int(capacity * 0.35) and est.wanted_bytes == 2 * est.compressed_bytes
