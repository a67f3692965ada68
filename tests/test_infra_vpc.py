"""The VPC, IAM and Resource Controller adapters against the IBM Cloud fake over HTTP."""

from __future__ import annotations

import logging

import pytest

from infra.iam import PlatformClient, RetryPolicy, account_id, has_image_to_cos_authorization, iam_authenticator
from infra.resource_controller import ResourceController, ResourceControllerError
from infra.vpc import Resource, Vpc, VpcError, VpcTimeout, vpc_client
from tests.fakes.ibmcloud import FakeIbmCloud, InstanceView

FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx5W9zTqfl2cJ0CwHvYtHx8w2n0sJ0P2Y2Rk7M8x2eA test"
BUILD = "zimage-b1"


def adapter(fake: FakeIbmCloud, api_key: str | None = None, timeout: float = 10.0) -> Vpc:
    client = vpc_client(
        api_key or fake.api_key, "jp-tok", iam_endpoint=fake.url, vpc_endpoint=fake.vpc_url, timeout=timeout
    )
    return Vpc(client, zone="jp-tok-1", tags=["zimage", "zimage-build:b1"], retry=FAST, poll_interval=0.01)


@pytest.fixture
def vpc(ibmcloud_fake: FakeIbmCloud) -> Vpc:
    return adapter(ibmcloud_fake)


def network(vpc: Vpc, ssh_from: str | None = None) -> dict[str, Resource]:
    net = vpc.create_vpc(f"{BUILD}-vpc")
    vpc.wait_ready(net, timeout=5)
    subnet = vpc.create_subnet(f"{BUILD}-subnet", net.id)
    vpc.wait_ready(subnet, timeout=5)
    sg = vpc.create_security_group(f"{BUILD}-sg", net.id, ssh_from=ssh_from)
    key = vpc.create_key(f"{BUILD}-key", PUBLIC_KEY)
    return {"vpc": net, "subnet": subnet, "sg": sg, "key": key}


def mover(vpc: Vpc, net: dict[str, Resource], user_data: str = "#cloud-config\n") -> dict[str, Resource]:
    vols = {n: vpc.create_volume(f"{BUILD}-{n}", gb) for n, gb in (("boot", 10), ("qcow2", 15), ("data", 22))}
    for v in vols.values():
        vpc.wait_ready(v, timeout=5)
    image = vpc.newest_image(r".*ubuntu.*22-04.*amd64.*")
    inst = vpc.create_instance(
        f"{BUILD}-mover",
        subnet_id=net["subnet"].id,
        security_group_id=net["sg"].id,
        image_id=image.id,
        profile="bx2d-16x64",
        user_data=user_data,
        key_ids=[net["key"].id],
        data_volumes={n: v.id for n, v in vols.items()},
    )
    return {**vols, "instance": inst}


def test_mover_resources_are_created_waited_for_and_torn_down(ibmcloud_fake: FakeIbmCloud, vpc: Vpc) -> None:
    seen: list[InstanceView] = []
    ibmcloud_fake.on_instance_created(seen.append)
    net = network(vpc, ssh_from="203.0.113.0/24")
    res = mover(vpc, net, user_data="#cloud-config\nruncmd: [mover]\n")
    inst = vpc.wait_ready(res["instance"], timeout=5)
    fip = vpc.create_floating_ip(f"{BUILD}-fip", res["instance"])
    vpc.wait_ready(fip, timeout=5)

    assert inst["image"]["name"] == "ibm-ubuntu-22-04-4-minimal-amd64-3"  # newest by date, not by name
    assert inst["metadata_service"]["enabled"] is True
    ibmcloud_fake.join_hooks()
    assert {a.name: a.volume_name for a in seen[0].volume_attachments} == {
        n: f"{BUILD}-{n}" for n in ("boot", "qcow2", "data")
    }
    assert seen[0].user_data == "#cloud-config\nruncmd: [mover]\n"
    sg = ibmcloud_fake.resources("security_groups")
    rules = next(s for s in sg if s["name"] == f"{BUILD}-sg")["rules"]
    assert [(r["direction"], r.get("port_min")) for r in rules] == [("outbound", None), ("inbound", 22)]
    data = next(v for v in ibmcloud_fake.resources("volumes") if v["name"] == f"{BUILD}-data")
    assert data["user_tags"] == ["zimage", "zimage-build:b1"] and data["capacity"] == 22

    snap = vpc.create_snapshot(res["data"].id, f"{BUILD}-data-snap")
    assert vpc.wait_ready(snap, timeout=5)["lifecycle_state"] == "stable"
    assert vpc.snapshot_name_taken(f"{BUILD}-data-snap") and not vpc.snapshot_name_taken("other")

    temporary = vpc.list_by_prefix(BUILD)
    assert {r.kind for r in temporary} == {
        "floating_ips",
        "instances",
        "volumes",
        "subnets",
        "security_groups",
        "keys",
        "vpcs",
    }
    assert all(not r.name.endswith("default-sg") for r in temporary)
    assert vpc.teardown(temporary, timeout=5) == []
    assert ibmcloud_fake.leftovers() == []
    deletes = [r.path.split("/")[2] for r in ibmcloud_fake.recorded("DELETE")]
    order = ["floating_ips", "instances", "volumes", "subnets", "security_groups", "keys", "vpcs"]
    assert sorted(deletes, key=order.index) == deletes
    # Idempotent: a second teardown finds everything gone and succeeds.
    assert vpc.teardown(temporary, timeout=5) == []
    assert [s["name"] for s in ibmcloud_fake.resources("snapshots")] == [f"{BUILD}-data-snap"]


def test_transient_errors_are_retried_honouring_retry_after(ibmcloud_fake: FakeIbmCloud, vpc: Vpc) -> None:
    ibmcloud_fake.inject("POST", r"^/v1/vpcs$", 429, retry_after=0.05)
    ibmcloud_fake.inject("POST", r"^/v1/vpcs$", 503, times=2)
    net = vpc.create_vpc(f"{BUILD}-vpc")
    assert len(ibmcloud_fake.recorded("POST", r"^/v1/vpcs$")) == 4
    assert [v["id"] for v in ibmcloud_fake.resources("vpcs")] == [net.id]

    ibmcloud_fake.inject("GET", r"^/v1/vpcs/", 500, times=10)
    with pytest.raises(VpcError) as exc:
        vpc.wait_ready(net, timeout=5)
    assert exc.value.status == 500 and net.id in str(exc.value) and "get" in str(exc.value)
    assert len(ibmcloud_fake.recorded("GET", r"^/v1/vpcs/")) == FAST.attempts

    ibmcloud_fake.inject("POST", r"^/v1/subnets$", 503)
    before = len(ibmcloud_fake.recorded("POST", r"^/v1/subnets$"))
    with pytest.raises(VpcError) as exc:  # a 400 is final, never retried
        vpc.create_subnet("Not_Valid", net.id)
    assert exc.value.status == 400 and "Not_Valid" in str(exc.value)
    assert len(ibmcloud_fake.recorded("POST", r"^/v1/subnets$")) == before + 2  # the 503, then the 400


def test_create_whose_answer_was_lost_is_recovered_not_duplicated(ibmcloud_fake: FakeIbmCloud, vpc: Vpc) -> None:
    ibmcloud_fake.inject("POST", r"^/v1/volumes$", 502, after=True)
    vol = vpc.create_volume(f"{BUILD}-data", 20)
    assert [v["id"] for v in ibmcloud_fake.resources("volumes")] == [vol.id]

    # A timeout (the server is slow, the change still happens) is recovered the same way.
    slow = adapter(ibmcloud_fake, timeout=0.3)
    ibmcloud_fake.inject_delay("POST", r"^/v1/keys$", 0.6)
    key = slow.create_key(f"{BUILD}-key", PUBLIC_KEY)
    assert [k["id"] for k in ibmcloud_fake.resources("keys")] == [key.id]
    assert vpc.teardown([vol, key], timeout=5) == []


def test_stuck_states_time_out_naming_the_resource(ibmcloud_fake: FakeIbmCloud, vpc: Vpc) -> None:
    net = network(vpc)
    ibmcloud_fake.stick("instances", "pending")
    res = mover(vpc, net)
    with pytest.raises(VpcTimeout) as exc:
        vpc.wait_ready(res["instance"], timeout=0.2)
    message = str(exc.value)
    assert f"{BUILD}-mover" in message and res["instance"].id in message and "pending" in message

    ibmcloud_fake.unstick()
    ibmcloud_fake.stick("instances", "deleting")
    with pytest.raises(VpcTimeout) as exc:
        vpc.delete(res["instance"], timeout=0.2)
    assert f"{BUILD}-mover" in str(exc.value) and "deleting" in str(exc.value)
    # Teardown carries on past what it cannot delete and reports every failure.
    failures = vpc.teardown(vpc.list_by_prefix(BUILD), timeout=0.2)
    assert any(f"{BUILD}-mover" in f for f in failures) and any(f"{BUILD}-data" in f for f in failures)
    ibmcloud_fake.unstick()
    assert vpc.teardown(vpc.list_by_prefix(BUILD), timeout=5) == []
    assert ibmcloud_fake.leftovers() == []


def test_attached_volume_delete_fails_with_the_apis_reason(ibmcloud_fake: FakeIbmCloud, vpc: Vpc) -> None:
    net = network(vpc)
    res = mover(vpc, net)
    with pytest.raises(VpcError) as exc:
        vpc.delete(res["data"], timeout=1)
    assert exc.value.status == 409 and f"{BUILD}-mover" in str(exc.value)
    assert vpc.teardown(vpc.list_by_prefix(BUILD), timeout=5) == []


def test_failed_image_reports_its_reason(ibmcloud_fake: FakeIbmCloud, vpc: Vpc) -> None:
    ibmcloud_fake.cos_object_check = lambda region, bucket, key: key == "zos25-dev.qcow2"
    good = vpc.create_image("zos25-dev", "cos://jp-tok/b/zos25-dev.qcow2", "zos-2-5-s390x-dev-test-byol")
    assert vpc.wait_ready(good, timeout=5)["visibility"] == "private"
    assert vpc.image_name_taken("zos25-dev") and not vpc.image_name_taken("zos25-prod")
    bad = vpc.create_image("zos25-bad", "cos://jp-tok/b/missing.qcow2", "zos-2-5-s390x-dev-test-byol")
    with pytest.raises(VpcError) as exc:
        vpc.wait_ready(bad, timeout=5)
    assert "zos25-bad" in str(exc.value) and "missing.qcow2" in str(exc.value)
    with pytest.raises(ValueError):
        vpc.create_image("x", "s3://b/x.qcow2", "zos-2-5-s390x-dev-test-byol")
    with pytest.raises(VpcError) as exc:
        vpc.newest_image(r"^rhel-")
    assert "rhel" in str(exc.value)


def test_lists_follow_pages_and_tags(ibmcloud_fake: FakeIbmCloud, vpc: Vpc) -> None:
    vpc.page_size = 2
    vols = [vpc.create_volume(f"{BUILD}-v{i}", 10) for i in range(5)]
    other = Vpc(vpc.client, zone="jp-tok-1", tags=["zimage", "zimage-build:b2"], retry=FAST, poll_interval=0.01)
    theirs = other.create_volume("zimage-b2-v0", 10)
    assert {r.id for r in vpc.list_by_prefix(BUILD)} == {v.id for v in vols}
    assert {r.id for r, _ in vpc.list_tagged("volumes", "zimage-build:b1")} == {v.id for v in vols}
    tagged = dict((r.id, tags) for r, tags in vpc.list_tagged("volumes", "zimage"))
    assert set(tagged) == {v.id for v in vols} | {theirs.id}
    assert tagged[theirs.id] == ["zimage", "zimage-build:b2"]
    assert vpc.teardown([*vols, theirs], timeout=5) == []


def test_wrong_api_key_is_a_clear_error_without_the_key(ibmcloud_fake: FakeIbmCloud, caplog) -> None:
    # Only our loggers: DEBUG on ibm_cloud_sdk_core makes it patch http.client process-wide.
    caplog.set_level(logging.DEBUG, logger="infra")
    wrong = "wrong-key-do-not-print-0123"
    with pytest.raises(VpcError) as exc:
        adapter(ibmcloud_fake, api_key=wrong).create_vpc(f"{BUILD}-vpc")
    assert exc.value.status == 400 and "API key could not be found" in str(exc.value)
    assert wrong not in str(exc.value) and wrong not in caplog.text
    assert len(ibmcloud_fake.recorded("POST", "/identity/token")) == 1  # a 400 is not retried
    with pytest.raises(ValueError):
        iam_authenticator("  ")


def test_resource_controller_hmac_keys_and_groups(ibmcloud_fake: FakeIbmCloud) -> None:
    rc = ResourceController(
        PlatformClient(iam_authenticator(ibmcloud_fake.api_key, ibmcloud_fake.url), ibmcloud_fake.url), retry=FAST
    )
    assert rc.find_resource_group("Default") == ibmcloud_fake.resource_groups["Default"]
    with pytest.raises(ResourceControllerError) as exc:
        rc.find_resource_group("nope")
    assert "'nope'" in str(exc.value)
    vpc = Vpc(
        vpc_client(ibmcloud_fake.api_key, "jp-tok", iam_endpoint=ibmcloud_fake.url, vpc_endpoint=ibmcloud_fake.vpc_url),
        zone="jp-tok-1",
        resource_controller=rc,
        poll_interval=0.01,
    )
    vpc.resource_group_id = vpc.find_resource_group("zimage")
    net = vpc.create_vpc(f"{BUILD}-vpc")
    assert ibmcloud_fake.resources("vpcs")[0]["resource_group"]["name"] == "zimage"

    cos = rc.find_cos_instance("cos-wazi")
    ibmcloud_fake.inject("POST", r"^/v2/resource_keys$", 503)
    key = rc.create_hmac_key(f"{BUILD}-hmac", cos)
    secret = key.secret_access_key.get_secret_value()
    assert len(secret) == 48 and secret not in repr(key) and secret not in str(key)
    assert [k.name for k in rc.list_keys(f"{BUILD}-hmac")] == [f"{BUILD}-hmac"]
    assert all(secret not in str(r.body) for r in ibmcloud_fake.requests)
    assert rc.delete_key(key.key_id) is True
    assert rc.delete_key(key.key_guid) is False  # already gone
    vpc.delete(net, timeout=5)
    assert ibmcloud_fake.leftovers() == []
    with pytest.raises(ResourceControllerError):
        rc.find_cos_instance("cos-other")


def test_image_to_cos_authorization_check(ibmcloud_fake: FakeIbmCloud) -> None:
    auth = iam_authenticator(ibmcloud_fake.api_key, ibmcloud_fake.url)
    client = PlatformClient(auth, ibmcloud_fake.url)
    account = account_id(auth, FAST)
    assert account == ibmcloud_fake.account_id
    guid = ibmcloud_fake.cos_instance()["guid"]
    assert not has_image_to_cos_authorization(client, account, FAST, guid)
    ibmcloud_fake.add_image_to_cos_authorization(cos_instance_guid="another-instance")
    assert not has_image_to_cos_authorization(client, account, FAST, guid)
    ibmcloud_fake.add_image_to_cos_authorization(cos_instance_guid=guid)
    assert has_image_to_cos_authorization(client, account, FAST, guid)
