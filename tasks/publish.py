"""Publish the products of a build: the custom image from the qcow2 in COS and the snapshot of the
data volume (DESIGN.md §10). Their names are checked before anything is created.

The snapshot is taken while the data volume is still attached to the running mover (the API
snapshots attached volumes only that way); the image is created from the build's qcow2
(`cos://<region>/<bucket>/<image>/builds/<build>/<image>.qcow2`). Both are created through the
build's ledger and waited for with long deadlines; each is marked kept in the ledger once ready.
One that fails, does not get ready in time or is cut short by a crash stays a live ledger entry,
so the teardown (or reap-orphans) deletes it and its name is free for a retry; a product that did
get ready is kept and named in the error.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.ibmcloud import IbmCloud
from infra.ledger import Ledger
from infra.object_store import ObjectStore, ObjectStoreError
from infra.resource_controller import CosInstance
from infra.vpc import Resource, VpcError
from tasks.retry import retryable
from tasks.teardown import tracked
from zimage import objects
from zimage.config import Image, Target


class NameTaken(RuntimeError):
    """A product's name is in use; nothing was created."""


class PublishFailed(RuntimeError):
    pass


class ImageImportRefused(RuntimeError):
    """The VPC image service may not read the COS instance; nothing was created."""


# API retries are the adapter's
@task(name="check-product-names", task_run_name="check-names-{image.name}", cache_policy=NO_CACHE)
def check_product_names(cloud: IbmCloud, image: Image, image_index: int) -> None:
    """Fail, before anything is created, when the custom image's or the snapshot's name is taken."""
    taken = []
    if cloud.vpc.image_name_taken(image.name):
        taken.append(f"a custom image named {image.name!r}")
    if cloud.vpc.snapshot_name_taken(image.snapshot_name):
        taken.append(f"a snapshot named {image.snapshot_name!r}")
    if taken:
        raise NameTaken(
            f"{' and '.join(taken)} already exist(s) in {cloud.target.region}; nothing was created. Either delete "
            f"it (ibmcloud is image-delete / is snapshot-delete) if it is an old build of this image, or give the "
            f"image another name in the config (images[{image_index}].name; the snapshot is <name>-data)."
        )


def check_image_import(cloud: IbmCloud, cos_instance_name: str) -> CosInstance:
    """The COS instance, which the VPC image service must be authorised to read (to import the qcow2)."""
    cos_instance = cloud.resource_controller.find_cos_instance(cos_instance_name)
    if not cloud.check_image_authorization(cos_instance.guid):
        raise ImageImportRefused(
            f"the VPC image service may not read the Cloud Object Storage instance {cos_instance.name}, so the "
            "custom image could not be imported; nothing was created. Create the authorization once: ibmcloud iam "
            "authorization-policy-create is cloud-object-storage Reader --source-resource-type image "
            f"--target-service-instance-id {cos_instance.guid}"
        )
    return cos_instance


@task(name="publish", cache_policy=NO_CACHE)
def publish(cloud: IbmCloud, ledger: Ledger, target: Target, image: Image, data_volume: Resource) -> dict[str, Any]:
    """Snapshot of the data volume and custom image from the build's qcow2; both waited until usable."""
    log = get_run_logger()
    vpc, timing = cloud.vpc, cloud.timing
    build = ledger.document.build_id
    href = objects.qcow2_href(target.cos.region, target.cos.bucket, image.name, build)
    started = time.monotonic()
    made: dict[str, Resource] = {}
    ready: dict[str, dict[str, Any]] = {}
    entries = {}
    try:
        made["snapshot"] = tracked(ledger, "snapshot", image.snapshot_name,
                                   lambda: vpc.create_snapshot(data_volume.id, image.snapshot_name))
        log.info("snapshot %s of %s requested", image.snapshot_name, data_volume.name)
        made["image"] = tracked(ledger, "image", image.name, lambda: vpc.create_image(image.name, href, image.os))
        log.info("custom image %s requested from %s (%s)", image.name, href, image.os)
        entries = {e.kind: e for e in ledger.document.entries if e.id in {r.id for r in made.values()}}
        for what, timeout in (("snapshot", timing.snapshot_timeout), ("image", timing.image_timeout)):
            ready[what] = vpc.wait_ready(made[what], timeout=timeout, poll=timing.poll)
            ledger.kept(entries[what])
            log.info("%s %s is ready (%.0f s)", what, made[what].name, time.monotonic() - started)
    except VpcError as exc:
        kept = [str(made[k]) for k in ready]
        unready = [str(r) for k, r in made.items() if k not in ready]
        raise PublishFailed(
            f"publishing {image.name} failed: {exc}."
            + (f" Deleted by the teardown, so the name is free for a retry: {', '.join(unready)}." if unready else "")
            + (f" Kept (ready): {', '.join(kept)}." if kept else "")
            + f" The qcow2 stays in the bucket ({href})."
        ) from exc
    return {
        "image": {"id": made["image"].id, "name": image.name, "crn": made["image"].crn, "os": image.os,
                  "href": href, "status": ready["image"].get("status")},
        "snapshot": {"id": made["snapshot"].id, "name": image.snapshot_name, "crn": made["snapshot"].crn,
                     "size_gb": ready["snapshot"].get("size"), "status": ready["snapshot"].get("lifecycle_state")},
        "seconds": round(time.monotonic() - started, 1),
    }


@task(name="copy-qcow2-to-root", task_run_name="copy-qcow2-{image}", retries=2, retry_delay_seconds=10,
      retry_condition_fn=retryable, cache_policy=NO_CACHE)
def copy_qcow2_to_root(store: ObjectStore, image: str, build: str) -> str:
    """Key layout `reference`: the build's qcow2 copied to `<image>.qcow2` at the bucket root, where the
    reference Terraform reads it (a copy, so a later build never changes what an image was made from)."""
    source, key = objects.qcow2_key(image, build), objects.reference_qcow2_key(image)
    started = time.monotonic()
    try:
        info = store.copy_object(source, key)
    except ObjectStoreError as exc:
        raise type(exc)(  # the same kind, so the retry condition judges it as before
            exc.operation, exc.where, exc.code,
            (f"{exc.detail}; " if exc.detail else "") + f"the custom image {image} and its snapshot are published "
            f"and kept, only the copy of {source} to the bucket root (key layout reference) failed",
        ) from exc
    get_run_logger().info("%s copied to %s: %s bytes in %.1f s", source, store.describe(key), f"{info.size:,}",
                          time.monotonic() - started)
    return key
