"""preflight with a `target:`: COS (a probe object in the bucket) and the VPC API (what deploy-image
checks before it creates anything), against the S3 server and the fake IBM Cloud API. Each problem
is its own message; nothing is left in the bucket or the account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.preflight import PreflightFailed, preflight
from infra.ibmcloud import connect
from infra.secrets import Secret
from tests.support.vsi_emulator import IMAGE, DeploySite
from zimage.config import parse_config
from zimage.preflight import cos_check_name, vpc_check_name

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def _checks(config: str) -> tuple[dict[str, dict[str, Any]], BaseException | None]:
    state = preflight(config, image=IMAGE, ipl_check=False, retry_delay_seconds=0, return_state=True)
    outcome = state.result(raise_on_failure=False)
    if isinstance(outcome, BaseException):
        return {}, outcome
    return {c["name"]: c for c in outcome["checks"]}, None


def _changes(site: DeploySite) -> list[str]:
    """Requests that could create or delete something in the account (an IAM token is neither)."""
    return [f"{r.method} {r.path}" for r in site.fake.requests
            if r.method in ("POST", "PUT", "PATCH", "DELETE") and r.path != "/identity/token"]


def test_a_ready_target_passes_and_nothing_is_created(deploy_site: DeploySite) -> None:
    site = deploy_site
    checks, error = _checks(site.config())
    assert error is None, error
    cos, vpc = checks[cos_check_name()], checks[vpc_check_name()]
    assert cos["status"] == "ok" and "written, read back and deleted" in cos["messages"][0], cos
    assert cos["target"] == f"cos://{site.bucket.bucket}/"
    assert vpc["status"] == "ok", vpc
    said = "\n".join(vpc["messages"])
    assert f"API key accepted by IAM (account {site.fake.account_id})" in said
    assert "mover image " in said and f"custom image {IMAGE} and snapshot {IMAGE}-data: names free" in said
    assert "the VPC image service may read COS instance" in said
    assert site.objects() == {}  # the probe object is gone
    assert _changes(site) == [] and site.fake.leftovers(products=True) == []


def test_a_local_mover_checks_cos_only(deploy_site: DeploySite) -> None:
    site = deploy_site
    checks, error = _checks(site.config(mover={"mode": "local", "output_directory": str(site.tmp / "out")}))
    assert error is None, error
    assert checks[cos_check_name()]["status"] == "ok" and vpc_check_name() not in checks
    assert site.fake.requests == []


def test_every_problem_of_the_target_is_named(deploy_site: DeploySite, monkeypatch: pytest.MonkeyPatch) -> None:
    site = deploy_site
    cfg = parse_config(Path(site.config()).read_text())
    assert cfg.target is not None
    cloud = connect(cfg.target, Secret(site.fake.api_key, "test"))
    cloud.vpc.create_image(IMAGE, "cos://jp-tok/other/old.qcow2", "zos-2-5-s390x-dev-test-byol")  # an old build
    for policy in site.fake.store.entries("policies"):  # the image service may read another instance only
        site.fake.store.remove(policy)
    site.fake.add_image_to_cos_authorization("00000000-0000-0000-0000-000000000000")
    config = site.config(cos={**site.bucket.cos_config(), "bucket": "no-such-bucket"},
                         mover={"image": "^no-such-mover-image$"})
    site.fake.requests.clear()

    _, error = _checks(config)

    assert isinstance(error, PreflightFailed)
    message = str(error)
    assert f"{cos_check_name()} (no-such-bucket): put cos://no-such-bucket/" in message and "NoSuchBucket" in message
    assert "mover image: " in message and "no available image has a matching name" in message
    assert f"product names: a custom image named '{IMAGE}' already exist" in message
    assert "image import: the VPC image service may not read the Cloud Object Storage instance" in message
    assert _changes(site) == []
    assert site.fake.resources("images")[0]["name"] == IMAGE  # only the old build's image

    monkeypatch.setenv("IBMCLOUD_API_KEY", "not-the-key")  # IAM refuses it: nothing further is asked
    _, error = _checks(site.config())
    assert isinstance(error, PreflightFailed)
    assert "not checked further: mover image, image names, image import" in str(error)
    assert "not-the-key" not in str(error)
