"""Publish the products of a build: the custom image from the qcow2 in COS and the snapshot of the
data volume (DESIGN.md §10). Their names are checked before anything is created.

The snapshot is taken while the data volume is still attached to the running mover (the API
snapshots attached volumes only that way); the image is created from
`cos://<region>/<bucket>/<image>.qcow2`. Both are waited for with long deadlines. When one of
them fails or does not get ready in time it is deleted, so that its name is free for a retry;
a product that did get ready is kept and named in the error.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.ibmcloud import IbmCloud
from infra.vpc import Resource, VpcError
from zimage import objects
from zimage.config import Image, Target


class NameTaken(RuntimeError):
    """A product's name is in use; nothing was created."""


class PublishFailed(RuntimeError):
    pass


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


def _wait_product(cloud: IbmCloud, res: Resource, timeout: float) -> dict[str, Any]:
    return cloud.vpc.wait_ready(res, timeout=timeout, poll=cloud.timing.poll)


@task(name="publish", task_run_name="publish-{image.name}", cache_policy=NO_CACHE)
def publish(cloud: IbmCloud, target: Target, image: Image, data_volume: Resource) -> dict[str, Any]:
    """Snapshot of the data volume and custom image from the qcow2; both waited until usable."""
    log = get_run_logger()
    vpc, timing = cloud.vpc, cloud.timing
    href = objects.qcow2_href(target.cos.region, target.cos.bucket, image.name)
    started = time.monotonic()
    made: dict[str, Resource] = {}
    ready: dict[str, dict[str, Any]] = {}
    try:
        made["snapshot"] = vpc.create_snapshot(data_volume.id, image.snapshot_name)
        log.info("snapshot %s of %s requested", image.snapshot_name, data_volume.name)
        made["image"] = vpc.create_image(image.name, href, image.os)
        log.info("custom image %s requested from %s (%s)", image.name, href, image.os)
        ready["snapshot"] = _wait_product(cloud, made["snapshot"], timing.snapshot_timeout)
        log.info("snapshot %s is stable (%.0f s)", image.snapshot_name, time.monotonic() - started)
        ready["image"] = _wait_product(cloud, made["image"], timing.image_timeout)
        log.info("custom image %s is available (%.0f s)", image.name, time.monotonic() - started)
    except VpcError as exc:
        removed = _remove_unready(cloud, made, ready)
        kept = [str(made[k]) for k in ready]
        raise PublishFailed(
            f"publishing {image.name} failed: {exc}."
            + (f" Deleted so the name is free for a retry: {', '.join(removed)}." if removed else "")
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


def _remove_unready(cloud: IbmCloud, made: dict[str, Resource], ready: dict[str, dict[str, Any]]) -> list[str]:
    removed = []
    for what, res in made.items():
        if what in ready:
            continue
        try:
            cloud.vpc.delete(res, timeout=cloud.timing.delete_timeout, poll=cloud.timing.poll)
            removed.append(str(res))
        except VpcError as exc:  # said in the error; the name stays taken until someone deletes it
            get_run_logger().error("could not delete the unfinished %s: %s", res, exc)
    return removed
