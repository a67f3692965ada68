"""The IBM Cloud fake, driven by the real ibm-vpc SDK: it must behave like the API where zimage
depends on it (validation, states, conflicts, faults), or the adapter tests prove nothing."""

from __future__ import annotations

import uuid

import jwt
import pytest
import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator
from ibm_vpc import VpcV1
from ibm_vpc import vpc_v1 as m

from tests.fakes.ibmcloud import FakeIbmCloud, InstanceView, s3_object_checker

ZONE = m.ZoneIdentityByName(name="jp-tok-1")
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKx5W9zTqfl2cJ0CwHvYtHx8w2n0sJ0P2Y2Rk7M8x2eA test"


@pytest.fixture
def vpc(ibmcloud_fake: FakeIbmCloud) -> VpcV1:
    client = VpcV1(authenticator=IAMAuthenticator(ibmcloud_fake.api_key, url=ibmcloud_fake.url))
    client.set_service_url(ibmcloud_fake.vpc_url)
    return client


def settle(get, rid: str, polls: int = 5) -> dict:
    """Read a resource a few times so the fake's state machine moves it on."""
    for _ in range(polls):
        res = get(rid).get_result()
    return res


def make_network(vpc: VpcV1, prefix: str = "t") -> tuple[dict, dict]:
    net = vpc.create_vpc(name=f"{prefix}-vpc").get_result()
    subnet = vpc.create_subnet(
        m.SubnetPrototypeSubnetByTotalCount(
            vpc=m.VPCIdentityById(id=net["id"]), total_ipv4_address_count=256, zone=ZONE, name=f"{prefix}-subnet"
        )
    ).get_result()
    return net, settle(vpc.get_subnet, subnet["id"])


def make_volume(vpc: VpcV1, name: str, capacity: int = 10) -> dict:
    vol = vpc.create_volume(
        m.VolumePrototypeVolumeByCapacity(
            profile=m.VolumeProfileIdentityByName(name="10iops-tier"), zone=ZONE, capacity=capacity, name=name
        )
    ).get_result()
    return settle(vpc.get_volume, vol["id"])


def ubuntu_image(vpc: VpcV1) -> dict:
    images = vpc.list_images(visibility="public", limit=100).get_result()["images"]
    return next(i for i in images if "ubuntu-22-04" in i["name"])


def make_instance(vpc: VpcV1, subnet: dict, volumes: dict[str, dict], name: str = "t-mover") -> dict:
    proto = m.InstancePrototypeInstanceByImageInstanceByImageInstanceByNetworkInterface(
        image=m.ImageIdentityById(id=ubuntu_image(vpc)["id"]),
        zone=ZONE,
        primary_network_interface=m.NetworkInterfacePrototype(subnet=m.SubnetIdentityById(id=subnet["id"])),
        profile=m.InstanceProfileIdentityByName(name="bx2d-16x64"),
        name=name,
        user_data="#cloud-config\nruncmd: [echo hi]\n",
        metadata_service=m.InstanceMetadataServicePrototype(enabled=True),
        volume_attachments=[
            m.VolumeAttachmentPrototype(
                volume=m.VolumeAttachmentPrototypeVolumeVolumeIdentityVolumeIdentityById(id=v["id"]), name=att
            )
            for att, v in volumes.items()
        ],
    )
    return vpc.create_instance(proto).get_result()


def status_of(exc: pytest.ExceptionInfo[ApiException]) -> int:
    return exc.value.status_code


# ------------------------------------------------------------------ IAM


def test_iam_token_is_a_jwt_with_expiry_and_wrong_key_is_refused(ibmcloud_fake: FakeIbmCloud) -> None:
    token = IAMAuthenticator(ibmcloud_fake.api_key, url=ibmcloud_fake.url).token_manager.get_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] > claims["iat"] and claims["account"]["bss"] == ibmcloud_fake.account_id

    with pytest.raises(ApiException) as exc:
        IAMAuthenticator("not-the-key", url=ibmcloud_fake.url).token_manager.get_token()
    assert status_of(exc) == 400 and "API key could not be found" in exc.value.message
    # The record keeps that a token was asked for, never the key itself.
    forms = [r.body for r in ibmcloud_fake.recorded("POST", "/identity/token")]
    assert forms and all(f["apikey"] == "<redacted>" for f in forms)


def test_requests_need_a_valid_token(ibmcloud_fake: FakeIbmCloud, vpc: VpcV1) -> None:
    r = requests.get(f"{ibmcloud_fake.vpc_url}/vpcs", params={"version": "2024-01-01", "generation": 2})
    assert r.status_code == 401
    assert vpc.list_vpcs().get_result()["vpcs"] == []
    ibmcloud_fake.expire_tokens()
    with pytest.raises(ApiException) as exc:
        vpc.list_vpcs()
    assert status_of(exc) == 401


# ------------------------------------------------------------------ validation


def test_bodies_are_checked_with_the_sdk_models(vpc: VpcV1) -> None:
    with pytest.raises(ApiException) as exc:  # misspelt property
        vpc.create_volume(
            {"profile": {"name": "10iops-tier"}, "zone": {"name": "jp-tok-1"}, "capacity": 10, "nmae": "x"}
        )
    assert status_of(exc) == 400 and "nmae" in exc.value.message
    with pytest.raises(ApiException) as exc:  # required property of every variant missing
        vpc.create_subnet({"name": "s", "zone": {"name": "jp-tok-1"}, "total_ipv4_address_count": 256})
    assert status_of(exc) == 400 and "'vpc'" in exc.value.message
    with pytest.raises(ApiException) as exc:
        vpc.create_vpc(name="Bad_Name")
    assert status_of(exc) == 400 and "Bad_Name" in exc.value.message
    with pytest.raises(ApiException) as exc:
        make_volume(vpc, "too-big", capacity=16001)
    assert status_of(exc) == 400 and "16000" in exc.value.message
    with pytest.raises(ApiException) as exc:
        vpc.create_key(public_key="not a key", name="k")
    assert status_of(exc) == 400


def test_instance_body_needs_its_oneof_properties_and_fitting_user_data(vpc: VpcV1) -> None:
    _, subnet = make_network(vpc)
    image = ubuntu_image(vpc)
    body = {"image": {"id": image["id"]}, "zone": {"name": "jp-tok-1"}, "profile": {"name": "bx2d-16x64"}}
    with pytest.raises(ApiException) as exc:
        vpc.create_instance(body)
    assert status_of(exc) == 400 and "primary_network_" in exc.value.message
    body["primary_network_interface"] = {"subnet": {"id": subnet["id"]}}
    with pytest.raises(ApiException) as exc:
        vpc.create_instance(body | {"user_data": "x" * (64 * 1024 + 1)})
    assert status_of(exc) == 400 and "user_data" in exc.value.message
    with pytest.raises(ApiException) as exc:  # an s390x profile cannot boot an amd64 image
        vpc.create_instance(body | {"profile": {"name": "mz2o-2x16"}})
    assert status_of(exc) == 400


# ------------------------------------------------------------------ states and conflicts


def test_resources_move_from_pending_to_ready_and_deleting_to_gone(vpc: VpcV1) -> None:
    net = vpc.create_vpc(name="t-vpc").get_result()
    assert net["status"] == "pending" and net["crn"].endswith(net["id"]) and net["resource_group"]["name"]
    assert settle(vpc.get_vpc, net["id"])["status"] == "available"
    vpc.delete_vpc(net["id"])
    assert vpc.get_vpc(net["id"]).get_result()["status"] == "deleting"
    with pytest.raises(ApiException) as exc:
        settle(vpc.get_vpc, net["id"])
    assert status_of(exc) == 404


def test_conflicts_like_the_real_api(ibmcloud_fake: FakeIbmCloud, vpc: VpcV1) -> None:
    net, subnet = make_network(vpc)
    with pytest.raises(ApiException) as exc:
        vpc.create_vpc(name="t-vpc")
    assert status_of(exc) == 400 and "not unique" in exc.value.message
    with pytest.raises(ApiException) as exc:
        vpc.delete_vpc(net["id"])
    assert status_of(exc) == 409 and "t-subnet" in exc.value.message

    data = make_volume(vpc, "t-data")
    inst = make_instance(vpc, subnet, {"data": data})
    assert [a["name"] for a in inst["volume_attachments"]] == ["boot-attachment", "data"]
    with pytest.raises(ApiException) as exc:
        vpc.delete_volume(data["id"])
    assert status_of(exc) == 409 and "t-mover" in exc.value.message
    with pytest.raises(ApiException) as exc:
        vpc.delete_subnet(subnet["id"])
    assert status_of(exc) == 409

    with pytest.raises(ApiException) as exc:  # a snapshot needs the volume on a running instance
        vpc.create_snapshot({"source_volume": {"id": data["id"]}, "name": "t-snap"})
    assert status_of(exc) == 409
    settle(vpc.get_instance, inst["id"])
    snap = vpc.create_snapshot({"source_volume": {"id": data["id"]}, "name": "t-snap"}).get_result()
    assert settle(vpc.get_snapshot, snap["id"])["lifecycle_state"] == "stable"

    vpc.delete_instance(inst["id"])
    with pytest.raises(ApiException):  # still attached while the instance is deleting
        vpc.delete_volume(data["id"])
    with pytest.raises(ApiException) as exc:
        settle(vpc.get_instance, inst["id"])
    assert status_of(exc) == 404
    assert vpc.get_volume(data["id"]).get_result()["attachment_state"] == "unattached"
    for delete, rid in ((vpc.delete_volume, data["id"]), (vpc.delete_subnet, subnet["id"])):
        delete(rid)
    settle(lambda _: vpc.list_vpcs(), "", 1)
    for get, rid in ((vpc.get_volume, data["id"]), (vpc.get_subnet, subnet["id"])):
        with pytest.raises(ApiException):
            settle(get, rid)
    vpc.delete_vpc(net["id"])
    with pytest.raises(ApiException):
        settle(vpc.get_vpc, net["id"])
    assert ibmcloud_fake.leftovers() == []
    assert [s["name"] for s in ibmcloud_fake.resources("snapshots")] == ["t-snap"]  # a product, kept


def test_lists_page_and_filter(vpc: VpcV1) -> None:
    pages = []
    start = None
    while True:
        page = vpc.list_images(visibility="public", limit=2, start=start).get_result()
        pages.append([i["name"] for i in page["images"]])
        if "next" not in page:
            break
        start = page["next"]["href"].split("start=")[1].split("&")[0]
    names = [n for p in pages for n in p]
    assert len(pages) == 3 and len(names) == len(set(names)) == page["total_count"] == 5
    one = vpc.list_images(name="ibm-ubuntu-22-04-4-minimal-amd64-3").get_result()["images"]
    assert [i["name"] for i in one] == ["ibm-ubuntu-22-04-4-minimal-amd64-3"]
    assert vpc.list_images(visibility="private").get_result()["images"] == []


# ------------------------------------------------------------------ images


@pytest.fixture
def s3(s3_server: str) -> tuple[object, str]:
    """A client of the shared moto S3 server (tests/support/s3.py) and a fresh bucket on it."""
    import ibm_boto3

    client = ibm_boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="hmac-id",
        aws_secret_access_key="hmac-secret",
        region_name="us-east-1",
    )
    bucket = f"zimage-fake-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def test_custom_image_reads_its_qcow2_from_cos(ibmcloud_fake: FakeIbmCloud, vpc: VpcV1, s3) -> None:
    client, bucket = s3
    ibmcloud_fake.cos_object_check = s3_object_checker(client)
    client.put_object(Bucket=bucket, Key="zos25-dev.qcow2", Body=b"QFI\xfb")
    proto = {
        "name": "zos25-dev",
        "file": {"href": f"cos://jp-tok/{bucket}/zos25-dev.qcow2"},
        "operating_system": {"name": "zos-2-5-s390x-dev-test-byol"},
    }
    good = vpc.create_image(proto).get_result()
    assert settle(vpc.get_image, good["id"])["status"] == "available"
    missing = vpc.create_image(
        proto | {"name": "zos25-missing", "file": {"href": f"cos://jp-tok/{bucket}/nothing.qcow2"}}
    ).get_result()
    failed = settle(vpc.get_image, missing["id"])
    assert failed["status"] == "failed" and "nothing.qcow2" in failed["status_reasons"][0]["message"]
    with pytest.raises(ApiException) as exc:
        vpc.create_image(proto | {"name": "other", "operating_system": {"name": "zos-9-9"}})
    assert status_of(exc) == 400


# ------------------------------------------------------------------ faults


def test_injected_errors_delays_and_stuck_states(ibmcloud_fake: FakeIbmCloud, vpc: VpcV1) -> None:
    ibmcloud_fake.inject("GET", r"^/v1/vpcs$", 429, times=2, retry_after=3)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            vpc.list_vpcs()
        assert status_of(exc) == 429 and exc.value.http_response.headers["Retry-After"] == "3"
    assert vpc.list_vpcs().get_result()["vpcs"] == []

    ibmcloud_fake.inject("POST", r"^/v1/vpcs$", 500, after=True)  # done, but the answer is lost
    with pytest.raises(ApiException):
        vpc.create_vpc(name="t-lost")
    assert [v["name"] for v in ibmcloud_fake.resources("vpcs")] == ["t-lost"]

    ibmcloud_fake.inject_delay("GET", r"^/v1/vpcs$", 0.5)
    vpc.set_http_config({"timeout": 0.1})
    with pytest.raises(requests.exceptions.Timeout):
        vpc.list_vpcs()
    vpc.set_http_config({"timeout": 10})

    ibmcloud_fake.stick("vpcs", "pending", name="^t-stuck")
    stuck = vpc.create_vpc(name="t-stuck").get_result()
    assert settle(vpc.get_vpc, stuck["id"])["status"] == "pending"
    ibmcloud_fake.unstick()
    assert settle(vpc.get_vpc, stuck["id"])["status"] == "available"


# ------------------------------------------------------------------ the emulated VSI


def test_instance_hook_and_metadata_service(ibmcloud_fake: FakeIbmCloud, vpc: VpcV1) -> None:
    seen: list[InstanceView] = []
    ibmcloud_fake.on_instance_created(seen.append)
    _, subnet = make_network(vpc)
    vols = {n: make_volume(vpc, f"t-{n}") for n in ("data", "boot", "qcow2")}
    inst = make_instance(vpc, subnet, vols)
    ibmcloud_fake.join_hooks()
    (view,) = seen
    assert view.id == inst["id"] and view.user_data.startswith("#cloud-config")
    assert {a.name: a.volume_name for a in view.volume_attachments} == {n: f"t-{n}" for n in vols}

    md = view.metadata_url
    assert requests.put(f"{md}/instance_identity/v1/token", json={"expires_in": 60}).status_code == 400
    token = requests.put(
        f"{md}/instance_identity/v1/token", headers={"Metadata-Flavor": "ibm"}, json={"expires_in": 60}
    ).json()["access_token"]
    assert requests.get(f"{md}/metadata/v1/instance", params={"version": "2022-03-01"}).status_code == 401
    me = requests.get(
        f"{md}/metadata/v1/instance", params={"version": "2022-03-01"}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert me["id"] == inst["id"]
    devices = {a["name"]: a["device"]["id"] for a in me["volume_attachments"]}
    assert {a.name: a.device_id for a in view.volume_attachments}.items() <= devices.items()
    assert len({d[:20] for d in devices.values()}) == len(devices)  # by-id names stay distinct


def test_resource_controller_and_policies_over_http(ibmcloud_fake: FakeIbmCloud) -> None:
    token = IAMAuthenticator(ibmcloud_fake.api_key, url=ibmcloud_fake.url).token_manager.get_token()
    auth = {"Authorization": f"Bearer {token}"}
    url = ibmcloud_fake.url
    cos = requests.get(f"{url}/v2/resource_instances", params={"name": "cos-wazi"}, headers=auth).json()
    (instance,) = cos["resources"]
    key = requests.post(
        f"{url}/v2/resource_keys",
        headers=auth,
        json={"name": "t-hmac", "source": instance["guid"], "role": "Writer", "parameters": {"HMAC": True}},
    ).json()
    assert set(key["credentials"]["cos_hmac_keys"]) == {"access_key_id", "secret_access_key"}
    assert ibmcloud_fake.leftovers() == [f"resource_keys t-hmac ({key['id']})"]
    listed = requests.get(f"{url}/v2/resource_keys", params={"name": "t-hmac"}, headers=auth).json()
    assert "credentials" not in listed["resources"][0]
    assert requests.delete(f"{url}/v2/resource_keys/{key['guid']}", headers=auth).status_code == 204
    assert requests.delete(f"{url}/v2/resource_keys/{key['guid']}", headers=auth).status_code == 404
    assert ibmcloud_fake.leftovers() == []
    policies = f"{url}/v1/policies"
    params = {"account_id": ibmcloud_fake.account_id, "type": "authorization"}
    assert requests.get(policies, params=params, headers=auth).json()["policies"] == []
    ibmcloud_fake.add_image_to_cos_authorization()
    assert len(requests.get(policies, params=params, headers=auth).json()["policies"]) == 1
