"""Teardown from a ledger against the IBM Cloud fake: every entry is tried whatever fails (a broken
response stream, a ledger that cannot be saved), every failure is reported, and a second run
finishes the job; a resource whose create never answered is found by name even when lists lag."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.ibmcloud import IbmCloud, Timing, connect
from infra.ledger import Ledger, LedgerDocument
from infra.object_store import LocalObjectStore
from infra.secrets import Secret
from tasks.teardown import teardown, tracked
from tests.fakes.ibmcloud import FakeIbmCloud
from zimage import objects, resources
from zimage.config import Target

BUILD = "b0c0ffee"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx5W9zTqfl2cJ0CwHvYtHx8w2n0sJ0P2Y2Rk7M8x2eA zimage-mover"


@pytest.fixture
def cloud(ibmcloud_fake: FakeIbmCloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[IbmCloud]:
    monkeypatch.setenv("RESOURCE_CONTROLLER_URL", ibmcloud_fake.url)
    monkeypatch.setenv("ZIMAGE_STATE_DIR", str(tmp_path / "state"))
    target = Target.model_validate(
        {
            "region": "jp-tok",
            "zone": 1,
            "iam_endpoint": ibmcloud_fake.url,
            "vpc_endpoint": ibmcloud_fake.vpc_url,
            "insecure_http": True,
            "cos": {"instance_name": "cos-wazi", "bucket": "wazi-images", "region": "jp-tok"},
        }
    )
    yield connect(target, Secret(ibmcloud_fake.api_key, "test"), timing=Timing.fast(), resource_group=False)


class Sinks:
    """A ledger sink that keeps every saved state and can be told to fail."""

    def __init__(self) -> None:
        self.saved: list[str] = []
        self.fail_when: Callable[[LedgerDocument], bool] = lambda doc: False

    def __call__(self, doc: LedgerDocument) -> None:
        if self.fail_when(doc):
            raise OSError("disk full")
        self.saved.append(doc.model_dump_json())


def _build(cloud: IbmCloud, sinks: Sinks) -> Ledger:
    ledger = Ledger(LedgerDocument(build_id=BUILD, image="zos-test"), [sinks])
    vpc = cloud.vpc
    name = lambda role: resources.name(BUILD, role)  # noqa: E731
    vol = tracked(ledger, "volume", name("data"), lambda: vpc.create_volume(name("data"), 10))
    vpc.wait_ready(vol, timeout=5, poll=0.01)
    tracked(ledger, "key", name("key"), lambda: vpc.create_key(name("key"), PUBLIC_KEY))
    net = tracked(ledger, "vpc", name("vpc"), lambda: vpc.create_vpc(name("vpc")))
    vpc.wait_ready(net, timeout=5, poll=0.01)
    return ledger


def test_every_entry_is_tried_past_a_broken_stream_and_a_failed_ledger_save(
    cloud: IbmCloud, ibmcloud_fake: FakeIbmCloud
) -> None:
    sinks = Sinks()
    ledger = _build(cloud, sinks)
    ibmcloud_fake.inject_truncated("DELETE", r"^/v1/volumes/")  # not an API error: the response breaks off
    key_entry = next(e for e in ledger.document.entries if e.kind == "key")
    sinks.fail_when = lambda doc: key_entry.state == "deleted" and doc.entries[2].state != "deleted"

    result = teardown(cloud, ledger)

    assert len(result.failures) == 2, result.failures
    volume_failure, ledger_failure = result.failures
    assert "volume zimage-b0c0ffee-data" in volume_failure and "ChunkedEncodingError" in volume_failure
    assert f"ledger of build {BUILD}" in ledger_failure and "disk full" in ledger_failure
    # the key and the VPC after the broken volume were deleted all the same
    assert [r["kind"] for r in result.deleted] == ["key", "vpc"]
    assert ibmcloud_fake.store.by_name("keys", resources.name(BUILD, "key")) is None
    assert ibmcloud_fake.store.by_name("vpcs", resources.name(BUILD, "vpc")) is None

    sinks.fail_when = lambda doc: False
    again = teardown(cloud, ledger)  # the teardown hook's second try

    assert again.failures == []
    assert ibmcloud_fake.leftovers() == []
    assert all(e.state == "deleted" for e in ledger.document.entries)


def test_a_create_that_never_answered_is_found_by_name_when_lists_lag(
    cloud: IbmCloud, ibmcloud_fake: FakeIbmCloud
) -> None:
    sinks = Sinks()
    ledger = Ledger(LedgerDocument(build_id=BUILD, image="zos-test"), [sinks])
    ibmcloud_fake.lag_lists(0.6)  # a new resource is missing from lists for a while
    # made, but every answer is lost, and the retry's name conflict cannot be resolved from a list
    ibmcloud_fake.inject("POST", r"^/v1/vpcs$", 502, after=True)
    ibmcloud_fake.inject("POST", r"^/v1/vpcs$", 502, times=10)
    name = resources.name(BUILD, "vpc")
    with pytest.raises(Exception, match="502"):
        tracked(ledger, "vpc", name, lambda: cloud.vpc.create_vpc(name))
    (entry,) = ledger.document.entries
    assert entry.state == "failed" and entry.id is None
    ibmcloud_fake._faults.clear()

    result = teardown(cloud, ledger)

    assert result.failures == [] and [r["name"] for r in result.deleted] == [name]
    assert ibmcloud_fake.leftovers() == []


def test_a_refused_create_leaves_nothing_to_look_for(cloud: IbmCloud, ibmcloud_fake: FakeIbmCloud) -> None:
    ledger = Ledger(LedgerDocument(build_id=BUILD, image="zos-test"), [Sinks()])
    name = resources.name(BUILD, "data")
    with pytest.raises(Exception, match="profile"):
        tracked(ledger, "volume", name, lambda: cloud.vpc.create_volume(name, 10, profile="no-such-profile"))
    (entry,) = ledger.document.entries
    assert entry.state == "deleted" and entry.error and entry.error.startswith("not created")
    assert ledger.document.live() == []


def test_the_builds_objects_and_key_file_go_with_it_unless_kept(cloud: IbmCloud, tmp_path: Path) -> None:
    from tasks.mover_vsi import keep_private_key

    store = LocalObjectStore(str(tmp_path / "bucket"))
    key = objects.qcow2_key("zos-test", BUILD)
    upload = store.create_multipart(key, objects.OCTETS, {})
    store.put_bytes(objects.mover_config_key("zos-test", BUILD), b"{}", objects.JSON)
    other = store.create_multipart(objects.qcow2_key("zos-test", "b0000001"), objects.OCTETS, {})
    directory = tmp_path / "state" / "keys"
    directory.mkdir(parents=True, mode=0o755)
    directory.chmod(0o755)
    path = keep_private_key(BUILD, b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert directory.stat().st_mode & 0o777 == 0o700  # enforced on a directory that was there
    assert path.stat().st_mode & 0o777 == 0o600

    result = teardown(cloud, Ledger(LedgerDocument(build_id=BUILD, image="zos-test"), [Sinks()]), store)

    assert result.failures == []
    assert [u.upload_id for u in store.pending_uploads(key)] == []  # aborted without knowing `upload`
    assert store.head(objects.mover_config_key("zos-test", BUILD)) is None
    assert not path.exists()
    # another build's upload of the same image is not this teardown's
    assert [u.upload_id for u in store.pending_uploads(objects.qcow2_key("zos-test", "b0000001"))] == [other]
    assert upload != other

    kept = keep_private_key(BUILD, b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    teardown(cloud, Ledger(LedgerDocument(build_id=BUILD, image="zos-test", keep_key=True), [Sinks()]), store)
    assert kept.exists()
