"""Tasks that stage a built image into the object store: each volume streamed from the storage
server (parallel parts, checked against the extraction's digest, resumable), then the auxiliary
objects, under the keys `target.cos.key_layout` gives. A re-run skips objects already present
with the same digest."""

from __future__ import annotations

import posixpath
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from infra.configfile import load_config, read_image_file
from infra.cos import open_object_store
from infra.object_store import image_in_metadata, put_auxiliaries
from infra.sftp_source import open_source
from infra.storage_upload import StorageCannotUpload, upload_from_storage
from tasks.retry import retryable
from zimage import objects, staging
from zimage.build import BuiltImage
from zimage.manifests import ImageVolume
from zimage.sizing import human


def _log_progress(volser: str):
    logger = get_run_logger()

    def report(done: int, total: int, rate: float) -> None:
        logger.info("stage %s: %s of %s (%.1f MB/s)", volser, human(done), human(total), rate / 1e6)

    return report


@task(
    name="stage-volume",
    task_run_name="stage-{volume.name}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=retryable,
    cache_policy=NO_CACHE,
)
def stage_volume(config: str, image: str, volume: ImageVolume) -> dict[str, Any]:
    """Uploaded by the storage server itself where it can (storage.stage_path), else relayed through here."""
    cfg = load_config(config)
    logger = get_run_logger()
    source_system = cfg.component(volume.component).source
    path = posixpath.join(staging.volume_dir(cfg.storage.root, source_system), volume.file_name)
    store = open_object_store(cfg.target.cos)
    key = objects.volume_key(image, volume.file_name, cfg.target.cos.key_layout)
    metadata = {"volser": volume.name, "devnum": volume.devnum}
    result, how = None, "relay"
    if cfg.storage.transport == "sftp" and cfg.storage.stage_path != "relay":
        try:
            result = upload_from_storage(
                cfg.storage, store, key, path, volume.gz_size, volume.gz_sha256, objects.GZIP, metadata,
                lambda line: logger.info("stage %s: %s", volume.name, line),
            )
            how = "direct"
        except StorageCannotUpload as exc:
            if cfg.storage.stage_path == "direct":
                raise
            logger.warning("stage %s: %s; relaying through this machine instead", volume.name, exc)
    if result is None:
        result = store.upload_stream(
            key, open_source(cfg.storage, path), volume.gz_sha256, content_type=objects.GZIP, metadata=metadata,
            progress=_log_progress(volume.name),
        )
    logger.info(
        "stage %s: %s %s in %.1f s (%.1f MB/s), %d part(s) sent, %d reused (%s)",
        volume.name, "already present," if result.skipped else "copied", human(result.size),
        result.seconds, result.bytes_per_second / 1e6, result.parts_uploaded, result.parts_reused,
        "uploaded by the storage server" if how == "direct" else "read over sftp, uploaded from here",
    )
    return {
        "volser": volume.name, "key": result.key, "bytes": result.size, "seconds": round(result.seconds, 2),
        "skipped": result.skipped, "parts": result.parts, "reused": result.parts_reused, "path": how,
    }


@task(name="stage-auxiliary", task_run_name="stage-auxiliary-{built.image}", retries=3, retry_delay_seconds=5,
      retry_condition_fn=retryable, cache_policy=NO_CACHE)
def stage_auxiliary(config: str, built: BuiltImage) -> list[str]:
    """image-metadata.json (application/json, which the reference Terraform's data source needs),
    devmap, and the image's env-overrides and properties.json files as they are."""
    cfg = load_config(config)
    cos = cfg.target.cos
    store = open_object_store(cos)
    if cos.key_layout == objects.REFERENCE:
        other = image_in_metadata(store, objects.metadata_key(built.image, cos.key_layout))
        if other and other != built.image:
            get_run_logger().warning(
                "key layout reference: the bucket root held image %s; its image-metadata.json and devmap are "
                "replaced by those of %s (its volume objects stay until deleted)", other, built.image,
            )
    image = cfg.image(built.image)
    contents: dict[str, bytes | None] = {objects.IMAGE_METADATA: built.metadata, objects.DEVMAP: built.devmap.encode()}
    for field, name in objects.IMAGE_FILES.items():
        path = getattr(image, field)
        contents[name] = None if path is None else read_image_file(path)
    return put_auxiliaries(store, built.image, contents, cos.key_layout)
