"""Build an image (pure): the chosen generation of each component → image-metadata.json + devmap."""

from __future__ import annotations

from pydantic import BaseModel

from zimage import devmap, sizing
from zimage.config import Config
from zimage.manifests import ComponentManifest, ImageVolume, image_metadata, image_volumes, render_json


class BuiltImage(BaseModel):
    image: str
    generations: dict[str, str]  # component -> generation
    volumes: list[ImageVolume]
    metadata: bytes
    devmap: str

    @property
    def size(self) -> int:
        return sum(v.size for v in self.volumes)

    @property
    def gz_size(self) -> int:
        return sum(v.gz_size for v in self.volumes)


class BuildError(ValueError):
    pass


def build_image(cfg: Config, image_name: str, manifests: dict[str, ComponentManifest]) -> BuiltImage:
    image = cfg.image(image_name)
    volumes = image_volumes(cfg, image, manifests)
    size = sum(v.size for v in volumes)
    if size > sizing.IMAGE_LIMIT_BYTES:
        raise BuildError(f"image {image.name}: {sizing.human(size)} exceeds {sizing.human(sizing.IMAGE_LIMIT_BYTES)}")
    if not sizing.fits_data_volume(size):
        raise BuildError(f"image {image.name}: {sizing.human(size)} does not fit one data volume")
    sysres_devnums = {v.devnum for v in volumes if v.boot}
    if image.ipl.device not in sysres_devnums:
        raise BuildError(f"image {image.name}: IPL device {image.ipl.device} is not a staged sysres volume")
    return BuiltImage(
        image=image.name,
        generations={name: m.generation for name, m in manifests.items() if name in image.components},
        volumes=volumes,
        metadata=render_json(image_metadata(image, volumes)),
        devmap=devmap.render(image.devmap, [devmap.DevmapVolume(v.name, v.devnum, v.devtype) for v in volumes]),
    )
