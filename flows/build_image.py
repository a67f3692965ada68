"""Flow build-image: group the newest verified generation of each component into an image and
write its `image-metadata.json` and zPDT `devmap` (DESIGN.md §6, §7)."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.build import build, check_staged, read_manifests, save_build, verify_staged
from zimage.build import BuiltImage
from zimage.sizing import human


def artifact_key(prefix: str, name: str) -> str:
    return f"{prefix}-{name}".lower().replace("_", "-")


@flow(name="build-image", flow_run_name="build-{image}")
def build_image(
    config: str,
    image: str,
    generations: dict[str, str] | None = None,
    verify: bool = False,
) -> BuiltImage:
    """Build an image from staged components.

    Args:
        config: path of the zimage YAML config on the worker.
        image: name of the image in the config.
        generations: component name -> generation (YYYY-MM-DD_HH_MM_SS); default: the newest verified one.
        verify: recompute every staged file's sha256 on the storage server (slow on large volumes).
    """
    manifests = read_manifests(config, image, generations)
    built = build(config, image, manifests)
    (verify_staged if verify else check_staged)(config, built)
    directory = save_build(config, built)
    create_table_artifact(
        key=artifact_key("image-volumes", image),
        table=[
            {
                "volser": v.name, "devnum": v.devnum, "devtype": v.devtype, "component": v.component,
                "boot": v.boot, "bytes": v.size, "compressed": v.gz_size, "file": v.file_name,
            }
            for v in built.volumes
        ],
        description=f"Volumes of image {image}",
    )
    gens = ", ".join(f"{c} {g}" for c, g in built.generations.items())
    create_markdown_artifact(
        key=artifact_key("build-image", image),
        markdown=(
            f"# Image {image} built\n\n"
            f"- volumes: {len(built.volumes)}, {human(built.size)} ({human(built.gz_size)} compressed)\n"
            f"- generations: {gens}\n"
            f"- written to the storage server: `{directory}/image-metadata.json`, `{directory}/devmap`\n\n"
            f"```\n{built.devmap}```\n"
        ),
        description=f"Build of image {image}",
    )
    return built
