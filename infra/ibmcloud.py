"""The IBM Cloud clients of one run, made from the config's `target` and the resolved API key.

`connect()` gives an `IbmCloud`: the VPC adapter (zone, resource group, build tags, retry policy,
poll interval), the Resource Controller, and what checks the account (the image service's
authorization to read COS). `Timing` holds every wait, deadline and poll interval so that tests
can run the same code in seconds.

The Resource Controller / Resource Manager URL is not part of the config (it is the same for every
region); the environment variable RESOURCE_CONTROLLER_URL overrides it, as the IBM SDKs' own
external configuration does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ibm_cloud_sdk_core.authenticators import IAMAuthenticator

from infra.iam import (
    IbmCloudError,
    PlatformClient,
    RetryPolicy,
    account_id,
    call_api,
    has_image_to_cos_authorization,
    iam_authenticator,
)
from infra.resource_controller import DEFAULT_RESOURCE_CONTROLLER, ResourceController
from infra.secrets import Secret, resolve
from infra.vpc import Resource, Vpc, VpcError, vpc_client
from zimage.config import Target

log = logging.getLogger(__name__)

RESOURCE_CONTROLLER_ENV = "RESOURCE_CONTROLLER_URL"
BUILD_TAG = "zimage"


def build_tag(build_id: str) -> str:
    """The user tag that marks the volumes and snapshots of one build."""
    return f"zimage-build:{build_id}"


@dataclass(frozen=True)
class Timing:
    """Waits and poll intervals (seconds). The defaults are the production ones; the reference
    builder waits up to 300 minutes for the custom image and 2 hours for the snapshot."""

    poll: float = 10.0
    ready_timeout: float = 15 * 60  # network pieces, volumes, the instance
    delete_timeout: float = 20 * 60  # each deletion
    image_timeout: float = 300 * 60
    snapshot_timeout: float = 120 * 60
    report_poll: float = 30.0  # the mover's progress/report objects
    list_settle: float = 60.0  # how long a list may lag behind a create (a name not found is believed after it)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def of(
        cls,
        poll_seconds: float,
        resource_timeout_minutes: float,
        retry_base_seconds: float,
        *,
        report_poll_seconds: float = 30.0,
        image_timeout_minutes: float = 300.0,
        snapshot_timeout_minutes: float = 120.0,
    ) -> Timing:
        """From a flow's parameters: minutes for the waits, a retry back-off doubling from its base
        up to 30 times it."""
        base = retry_base_seconds
        back_off = RetryPolicy(base_delay=base, max_delay=max(base * 30, base))
        return cls(
            poll=poll_seconds, ready_timeout=resource_timeout_minutes * 60,
            delete_timeout=resource_timeout_minutes * 60, image_timeout=image_timeout_minutes * 60,
            snapshot_timeout=snapshot_timeout_minutes * 60, report_poll=report_poll_seconds, retry=back_off,
        )

    @classmethod
    def fast(cls, poll: float = 0.05, timeout: float = 20.0) -> Timing:
        """Short waits for tests against the fake API."""
        return cls(
            poll=poll, ready_timeout=timeout, delete_timeout=timeout, image_timeout=timeout,
            snapshot_timeout=timeout, report_poll=poll * 4, list_settle=2.0,
            retry=RetryPolicy(attempts=5, base_delay=0.02, max_delay=0.2, max_retry_after=1.0),
        )


@dataclass
class IbmCloud:
    """The clients of one run; the API key is held only inside the SDK authenticator."""

    target: Target
    vpc: Vpc
    resource_controller: ResourceController
    authenticator: IAMAuthenticator
    timing: Timing
    resource_group_id: str | None = None

    def check_image_authorization(self, cos_instance_guid: str | None = None) -> bool:
        """Whether the VPC image service may read COS (needed to import the qcow2)."""
        iam = PlatformClient(self.authenticator, self.target.iam_endpoint)
        account = account_id(self.authenticator, self.timing.retry)
        return has_image_to_cos_authorization(iam, account, self.timing.retry, cos_instance_guid)


def resolve_api_key(target: Target) -> Secret:
    return resolve(env=target.api_key_env, block=target.api_key_block, what="IBM Cloud API key")


def resource_controller_url() -> str:
    return os.environ.get(RESOURCE_CONTROLLER_ENV, DEFAULT_RESOURCE_CONTROLLER).rstrip("/")


def connect(
    target: Target,
    api_key: Secret,
    *,
    timing: Timing | None = None,
    tags: Sequence[str] = (),
    resource_group: bool = True,
) -> IbmCloud:
    """Clients for `target`. With `resource_group`, the configured group is looked up (by name)
    and every create is placed in it."""
    timing = timing or Timing()
    rc_url = resource_controller_url()
    plain = target.http_endpoints()
    if rc_url.lower().startswith("http://"):
        if not target.insecure_http:
            raise ValueError(
                f"{RESOURCE_CONTROLLER_ENV} {rc_url}: plain http would carry the IAM token unencrypted; use https, "
                "or set target.insecure_http: true for a local stand-in"
            )
        plain[RESOURCE_CONTROLLER_ENV] = rc_url
    if plain:
        log.warning("target.insecure_http: talking plain http to %s", ", ".join(f"{k} {v}" for k, v in plain.items()))
    authenticator = iam_authenticator(api_key.reveal(), target.iam_endpoint)
    rc = ResourceController(PlatformClient(authenticator, rc_url), retry=timing.retry)
    group_id = rc.find_resource_group(target.resource_group) if resource_group else None
    client = vpc_client(api_key.reveal(), target.region, iam_endpoint=target.iam_endpoint, vpc_endpoint=target.vpc_url)
    vpc = Vpc(
        client,
        zone=target.zone_name,
        resource_group_id=group_id,
        tags=list(tags),
        retry=timing.retry,
        poll_interval=timing.poll,
        resource_controller=rc,
    )
    return IbmCloud(target, vpc, rc, authenticator, timing, group_id)


# --- plural VPC collection names <-> the ledger's singular kinds ------------------------------


def collection(kind: str) -> str:
    """The ledger's kind (`floating_ip`) as the VPC adapter's collection (`floating_ips`)."""
    return f"{kind}s"


def ledger_kind(collection_name: str) -> str:
    return collection_name.removesuffix("s")


# --- an instance whose volumes are prototypes (create-instance) ------------------------------


def create_instance_from_prototype(vpc: Vpc, name: str, prototype: Mapping[str, Any]) -> Resource:
    """Create an instance from a full prototype (e.g. a data volume restored from a snapshot, a
    reserved IP), with the adapter's retry policy; a lost answer followed by a name conflict
    returns the instance the lost attempt made."""

    def existing() -> dict[str, Any] | None:
        found = vpc.find("instances", name)
        return vpc.get(found) if found else None

    result = call_api(
        lambda: vpc.client.create_instance(dict(prototype)),
        operation="create",
        resource=f"instance {name!r}",
        retry=vpc.retry,
        error=VpcError,
        recover_conflict=existing,
    )
    created = Resource(
        kind="instances", id=result["id"], name=result.get("name", name), crn=result.get("crn", ""),
        status=result.get("status"),
    )
    log.info("created %s", created)
    return created


__all__ = [
    "BUILD_TAG",
    "IbmCloud",
    "IbmCloudError",
    "Timing",
    "build_tag",
    "collection",
    "connect",
    "create_instance_from_prototype",
    "ledger_kind",
    "resolve_api_key",
]
