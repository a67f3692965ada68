"""Tasks of build-image: read the chosen generations' manifests, build the image (pure), keep
its metadata and devmap on the storage server beside the volumes."""

from __future__ import annotations

import posixpath

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.configfile import load_config
from infra.staging_store import StagingError, find_manifest, open_store, verify_file
from tasks.retry import retryable
from zimage import staging
from zimage.build import BuiltImage, build_image
from zimage.manifests import ComponentManifest


class NoGeneration(RuntimeError):
    pass


@task(name="read-manifests", task_run_name="read-manifests-{image}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retryable, cache_policy=NO_CACHE)
def read_manifests(config: str, image: str, generations: dict[str, str] | None = None) -> dict[str, ComponentManifest]:
    """The newest verified generation of each component of the image, or the ones named."""
    cfg = load_config(config)
    wanted = generations or {}
    out: dict[str, ComponentManifest] = {}
    with open_store(cfg.storage) as store:
        for comp in cfg.image_components(cfg.image(image)):
            directory = staging.volume_dir(cfg.storage.root, comp.source)
            listing = store.listdir(directory) if store.stat(directory) else []
            known = staging.generations(listing, comp.name)
            generation = wanted.get(comp.name) or (known[-1] if known else None)
            if generation is None:
                raise NoGeneration(
                    f"component {comp.name!r} has no verified extraction in {store.where()}{directory}: "
                    f"run `zimage run extract-component --config {config} --component {comp.name}` first"
                )
            manifest = find_manifest(store, directory, comp.name, generation)
            if manifest is None:
                raise NoGeneration(
                    f"component {comp.name!r} has no generation {generation} (known: {', '.join(known) or 'none'})"
                )
            out[comp.name] = manifest
    return out


@task(name="assemble-image", task_run_name="assemble-{image}", cache_policy=NO_CACHE)
def build(config: str, image: str, manifests: dict[str, ComponentManifest]) -> BuiltImage:
    return build_image(load_config(config), image, manifests)


@task(name="check-staged-volumes", task_run_name="check-staged-{built.image}", retries=1, retry_delay_seconds=5,
      retry_condition_fn=retryable, cache_policy=NO_CACHE)
def check_staged(config: str, built: BuiltImage) -> None:
    """Every volume file is still there with the size its manifest records (no download)."""
    cfg = load_config(config)
    with open_store(cfg.storage) as store:
        for vol in built.volumes:
            directory = staging.volume_dir(cfg.storage.root, cfg.component(vol.component).source)
            path = posixpath.join(directory, vol.file_name)
            info = store.stat(path)
            if info is None or info.size != vol.gz_size:
                found = "missing" if info is None else f"{info.size} bytes, the manifest says {vol.gz_size}"
                raise StagingError(f"volume {vol.name}: staged file {path} is {found}")


@task(name="verify-staged-volumes", task_run_name="verify-staged-{built.image}", cache_policy=NO_CACHE)
def verify_staged(config: str, built: BuiltImage) -> None:
    """Full check: sha256 of every staged file computed on the storage server."""
    cfg = load_config(config)
    with open_store(cfg.storage) as store:
        for vol in built.volumes:
            directory = staging.volume_dir(cfg.storage.root, cfg.component(vol.component).source)
            verify_file(store, posixpath.join(directory, vol.file_name), vol.gz_size, vol.gz_sha256)


def image_dir(root: str, image: str) -> str:
    return posixpath.join(root, "images", image)


@task(name="save-build", task_run_name="save-build-{built.image}", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retryable, cache_policy=NO_CACHE)
def save_build(config: str, built: BuiltImage) -> str:
    cfg = load_config(config)
    directory = image_dir(cfg.storage.root, built.image)
    with open_store(cfg.storage) as store:
        store.makedirs(directory)
        store.write_atomic(posixpath.join(directory, "image-metadata.json"), built.metadata)
        store.write_atomic(posixpath.join(directory, "devmap"), built.devmap.encode())
    get_run_logger().info("image %s: image-metadata.json and devmap written to %s", built.image, directory)
    return directory
