"""Component manifests (what an extraction staged) and the image's `image-metadata.json`.

The image metadata keeps the reference data mover's schema (DESIGN.md §6) and adds fields;
output is deterministic: the same input gives the same bytes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from zimage import names, staging
from zimage.config import Component, Config, Image

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class StagedVolume(BaseModel):
    """One volume as extracted and verified on the storage server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    volser: Annotated[str, AfterValidator(names.volser)]
    devnum: Annotated[str, AfterValidator(names.devnum)]
    devtype: str
    file_name: Annotated[str, AfterValidator(staging.checked_file_name)]
    bytes: int = Field(ge=0, description="Uncompressed size")
    gz_bytes: int = Field(ge=0, description="Compressed size as staged")
    sha256: Sha256
    gz_sha256: Sha256
    started: datetime
    finished: datetime

    @model_validator(mode="after")
    def _names_agree(self) -> StagedVolume:
        if not self.file_name.startswith(f"{self.volser}_"):
            raise ValueError(f"file name {self.file_name!r} does not belong to volume {self.volser}")
        return self


class ComponentManifest(BaseModel):
    """Written beside the volumes once every volume of a generation is verified."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    component: Annotated[str, AfterValidator(names.vpc_name)]
    system: Annotated[str, AfterValidator(names.sysname)]
    type: Literal["sysres", "volumes"]
    generation: str
    created: datetime
    volumes: list[StagedVolume] = Field(min_length=1)

    @model_validator(mode="after")
    def _generation(self) -> ComponentManifest:
        staging.generation_time(self.generation)
        for vol in self.volumes:
            if not vol.file_name.endswith(f"_{self.generation}.gz"):
                raise ValueError(f"volume {vol.volser}: file {vol.file_name!r} is not of generation {self.generation}")
        return self

    @property
    def bytes(self) -> int:
        return sum(v.bytes for v in self.volumes)

    @property
    def gz_bytes(self) -> int:
        return sum(v.gz_bytes for v in self.volumes)

    def to_json(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()


class ManifestMismatch(ValueError):
    pass


def check_against(manifest: ComponentManifest, component: Component) -> None:
    """A manifest must hold exactly the component's volumes, with the configured devnums."""
    if manifest.component != component.name:
        raise ManifestMismatch(f"manifest is for component {manifest.component!r}, not {component.name!r}")
    staged = {v.volser: v for v in manifest.volumes}
    wanted = {v.volser: v for v in component.volumes}
    missing = sorted(set(wanted) - set(staged))
    extra = sorted(set(staged) - set(wanted))
    if missing or extra:
        raise ManifestMismatch(
            f"component {component.name!r} generation {manifest.generation}: "
            + "; ".join(
                p for p in (
                    f"not staged: {', '.join(missing)}" if missing else "",
                    f"not in the config: {', '.join(extra)}" if extra else "",
                ) if p
            )
        )
    for volser, vol in wanted.items():
        if staged[volser].devnum != vol.devnum:
            raise ManifestMismatch(
                f"volume {volser}: staged as devnum {staged[volser].devnum}, configured as {vol.devnum}"
            )


class ImageVolume(BaseModel):
    name: str
    file_name: str
    boot: bool
    devnum: str
    devtype: str
    size: int
    sha256: str
    gz_sha256: str
    gz_size: int
    component: str


def image_volumes(cfg: Config, image: Image, manifests: dict[str, ComponentManifest]) -> list[ImageVolume]:
    """The image's volumes in config order, each with its staged facts."""
    out: list[ImageVolume] = []
    for component in cfg.image_components(image):
        if component.name not in manifests:
            raise ManifestMismatch(f"component {component.name!r} has no verified extraction")
        manifest = manifests[component.name]
        check_against(manifest, component)
        staged = {v.volser: v for v in manifest.volumes}
        for vol in component.volumes:
            facts = staged[vol.volser]
            out.append(
                ImageVolume(
                    name=vol.volser,
                    file_name=facts.file_name,
                    boot=component.type == "sysres",
                    devnum=vol.devnum,
                    devtype=vol.family,
                    size=facts.bytes,
                    sha256=facts.sha256,
                    gz_sha256=facts.gz_sha256,
                    gz_size=facts.gz_bytes,
                    component=component.name,
                )
            )
    return out


def image_metadata(image: Image, volumes: list[ImageVolume]) -> dict[str, object]:
    """`image-metadata.json` as a dict in the reference schema plus zimage's fields."""
    return {
        "image": {
            "name": image.name,
            "size": sum(v.size for v in volumes),
            "boot-size": sum(v.size for v in volumes if v.boot),
            "layout": image.layout,
            "ipl": {"device": image.ipl.device, "loadparm": image.ipl.loadparm},
        },
        "volumes": [
            {
                "name": v.name,
                "file-name": v.file_name,
                "compression": "gzip",
                "boot": v.boot,
                "devnum": v.devnum,
                "devtype": v.devtype,
                "size": v.size,
                "sha256": v.sha256,
                "gz-sha256": v.gz_sha256,
                "gz-size": v.gz_size,
                "component": v.component,
            }
            for v in volumes
        ],
    }


def render_json(document: object) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=False, ensure_ascii=True) + "\n").encode()
