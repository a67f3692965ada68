"""Object keys of an image build in the bucket (DESIGN.md §6, §10).

Everything of one image lives under `<image>/`; the qcow2 lies at the bucket root as
`<image>.qcow2` because the custom image's href names it (`cos://<region>/<bucket>/<image>.qcow2`);
the resource ledger of a build is `zimage-ledger/<build_id>.json`. Every name is validated before
it becomes part of a key, so no key can escape its prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zimage import names, staging

IMAGE_METADATA = "image-metadata.json"
DEVMAP = "devmap"
ENV_OVERRIDES = "env-overrides"
PROPERTIES = "properties.json"
MOVER_CONFIG = "mover-config.json"
PROGRESS = "progress.json"
REPORT = "report.json"
LEDGER_PREFIX = "zimage-ledger/"

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
GZIP = "application/gzip"
OCTETS = "application/octet-stream"

# The auxiliary objects uploaded beside the volumes and their content types. The reference data
# mover fails on image-metadata.json stored with another type than application/json.
AUXILIARY: dict[str, str] = {
    IMAGE_METADATA: JSON,
    DEVMAP: TEXT,
    ENV_OVERRIDES: TEXT,
    PROPERTIES: JSON,
}

_BUILD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}-[a-z]{2,}$")


def image_prefix(image: str) -> str:
    return f"{names.vpc_name(image)}/"


def auxiliary_key(image: str, name: str) -> str:
    """One of the auxiliary objects (`image-metadata.json`, `devmap`, `env-overrides`, `properties.json`)."""
    if name not in AUXILIARY:
        raise ValueError(f"{name!r} is not an auxiliary object; expected one of: {', '.join(AUXILIARY)}")
    return image_prefix(image) + name


def content_type(name: str) -> str:
    """Content type of an auxiliary object (application/json for the JSON ones)."""
    if name not in AUXILIARY:
        raise ValueError(f"{name!r} is not an auxiliary object; expected one of: {', '.join(AUXILIARY)}")
    return AUXILIARY[name]


def metadata_key(image: str) -> str:
    return auxiliary_key(image, IMAGE_METADATA)


def devmap_key(image: str) -> str:
    return auxiliary_key(image, DEVMAP)


def env_overrides_key(image: str) -> str:
    return auxiliary_key(image, ENV_OVERRIDES)


def properties_key(image: str) -> str:
    return auxiliary_key(image, PROPERTIES)


def volumes_prefix(image: str) -> str:
    # Volumes lie beside image-metadata.json, as the data mover reads an object directory.
    return image_prefix(image)


def volume_key(image: str, file_name: str) -> str:
    """A staged volume file; the name comes from a manifest and is checked to have no path."""
    return volumes_prefix(image) + staging.checked_file_name(file_name)


_WHEEL = re.compile(r"^[A-Za-z0-9_.+-]+\.whl$")


def accelerator_key(image: str, wheel_file: str) -> str:
    """A wheel the mover may import to inflate faster (isal, zlib-ng)."""
    if not _WHEEL.fullmatch(wheel_file):
        raise ValueError(f"{wheel_file!r} is not a wheel file name")
    return f"{image_prefix(image)}accelerators/{wheel_file}"


def mover_config_key(image: str) -> str:
    return image_prefix(image) + MOVER_CONFIG


def progress_key(image: str) -> str:
    return image_prefix(image) + PROGRESS


def report_key(image: str) -> str:
    return image_prefix(image) + REPORT


def qcow2_key(image: str) -> str:
    return f"{names.vpc_name(image)}.qcow2"


def qcow2_href(region: str, bucket: str, image: str) -> str:
    """`file.href` of the custom image: cos://<region>/<bucket>/<image>.qcow2."""
    if not _REGION.fullmatch(region):
        raise ValueError(f"region {region!r}: expected a region such as 'jp-tok'")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"bucket {bucket!r}: 3-63 of lowercase letters, digits, '-', '.'")
    return f"cos://{region}/{bucket}/{qcow2_key(image)}"


def build_id(value: str) -> str:
    if not _BUILD_ID.fullmatch(value):
        raise ValueError(f"build id {value!r}: expected 1-128 of letters, digits, '_' and '-', not starting with '-'")
    return value


def ledger_key(build: str) -> str:
    return f"{LEDGER_PREFIX}{build_id(build)}.json"


@dataclass(frozen=True)
class ImageObjects:
    """The keys of one image, for callers that need several of them."""

    image: str

    def __post_init__(self) -> None:
        names.vpc_name(self.image)

    @property
    def prefix(self) -> str:
        return image_prefix(self.image)

    @property
    def metadata(self) -> str:
        return metadata_key(self.image)

    @property
    def devmap(self) -> str:
        return devmap_key(self.image)

    @property
    def env_overrides(self) -> str:
        return env_overrides_key(self.image)

    @property
    def properties(self) -> str:
        return properties_key(self.image)

    @property
    def mover_config(self) -> str:
        return mover_config_key(self.image)

    @property
    def progress(self) -> str:
        return progress_key(self.image)

    @property
    def report(self) -> str:
        return report_key(self.image)

    @property
    def qcow2(self) -> str:
        return qcow2_key(self.image)

    def volume(self, file_name: str) -> str:
        return volume_key(self.image, file_name)
