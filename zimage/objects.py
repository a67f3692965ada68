"""Object keys of an image build in the bucket (DESIGN.md §6, §10).

Everything of one image lives under `<image>/`. What one build's mover writes or reads as its own
(its configuration, progress.json, report.json and the qcow2 the custom image is imported from)
lies under `<image>/builds/<build_id>/`: a mover of an earlier build that is still alive holds URLs
to its own keys only, so it can neither satisfy a new build's wait nor overwrite its qcow2. The
resource ledger of a build is `zimage-ledger/<build_id>.json`. Every name is validated before it
becomes part of a key, so no key can escape its prefix.

The mover's inputs (image-metadata.json, devmap, env-overrides, properties.json, the volumes) follow
`target.cos.key_layout`: `per-image` puts them under `<image>/`, `reference` at the bucket root,
where the existing builder's data_mover.py and Terraform read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zimage import names, resources, staging

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

PER_IMAGE = "per-image"
REFERENCE = "reference"
KEY_LAYOUTS = (PER_IMAGE, REFERENCE)

# The auxiliary objects uploaded beside the volumes and their content types. image-metadata.json
# must be application/json because the reference Terraform reads it through the ibm_cos_bucket_object
# data source, which returns the body of JSON and text objects only.
AUXILIARY: dict[str, str] = {
    IMAGE_METADATA: JSON,
    DEVMAP: TEXT,
    ENV_OVERRIDES: TEXT,
    PROPERTIES: JSON,
}

# Local files an image may name (images[].env_overrides, images[].properties), uploaded as-is under
# these object names and copied by the mover to the data volume's root as files of the same names.
IMAGE_FILES: dict[str, str] = {"env_overrides": ENV_OVERRIDES, "properties": PROPERTIES}

_BUILD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]{2}-[a-z]{2,}$")


def image_prefix(image: str) -> str:
    return f"{names.vpc_name(image)}/"


def input_prefix(image: str, layout: str = PER_IMAGE) -> str:
    """Where the mover's inputs of an image lie: `<image>/`, or the bucket root in the reference layout."""
    if layout not in KEY_LAYOUTS:
        raise ValueError(f"key layout {layout!r}: expected one of {', '.join(KEY_LAYOUTS)}")
    prefix = image_prefix(image)  # checks the name in either layout
    return "" if layout == REFERENCE else prefix


def auxiliary_key(image: str, name: str, layout: str = PER_IMAGE) -> str:
    """One of the auxiliary objects (`image-metadata.json`, `devmap`, `env-overrides`, `properties.json`)."""
    if name not in AUXILIARY:
        raise ValueError(f"{name!r} is not an auxiliary object; expected one of: {', '.join(AUXILIARY)}")
    return input_prefix(image, layout) + name


def content_type(name: str) -> str:
    """Content type of an auxiliary object (application/json for the JSON ones)."""
    if name not in AUXILIARY:
        raise ValueError(f"{name!r} is not an auxiliary object; expected one of: {', '.join(AUXILIARY)}")
    return AUXILIARY[name]


def metadata_key(image: str, layout: str = PER_IMAGE) -> str:
    return auxiliary_key(image, IMAGE_METADATA, layout)


def devmap_key(image: str, layout: str = PER_IMAGE) -> str:
    return auxiliary_key(image, DEVMAP, layout)


def env_overrides_key(image: str, layout: str = PER_IMAGE) -> str:
    return auxiliary_key(image, ENV_OVERRIDES, layout)


def properties_key(image: str, layout: str = PER_IMAGE) -> str:
    return auxiliary_key(image, PROPERTIES, layout)


def volumes_prefix(image: str, layout: str = PER_IMAGE) -> str:
    # Volumes lie beside image-metadata.json, as the data mover reads an object directory.
    return input_prefix(image, layout)


def volume_key(image: str, file_name: str, layout: str = PER_IMAGE) -> str:
    """A staged volume file; the name comes from a manifest and is checked to have no path."""
    return volumes_prefix(image, layout) + staging.checked_file_name(file_name)


_WHEEL = re.compile(r"^[A-Za-z0-9_.+-]+\.whl$")


def accelerator_key(image: str, wheel_file: str) -> str:
    """A wheel the mover may import to inflate faster (isal, zlib-ng)."""
    if not _WHEEL.fullmatch(wheel_file):
        raise ValueError(f"{wheel_file!r} is not a wheel file name")
    return f"{image_prefix(image)}accelerators/{wheel_file}"


def build_prefix(image: str, build: str) -> str:
    """The mover outputs of one build: `<image>/builds/<build_id>/`."""
    return f"{names.vpc_name(image)}/builds/{resources.check_build_id(build)}/"


def mover_config_key(image: str, build: str) -> str:
    return build_prefix(image, build) + MOVER_CONFIG


def progress_key(image: str, build: str) -> str:
    return build_prefix(image, build) + PROGRESS


def report_key(image: str, build: str) -> str:
    return build_prefix(image, build) + REPORT


def qcow2_key(image: str, build: str) -> str:
    return f"{build_prefix(image, build)}{names.vpc_name(image)}.qcow2"


def reference_qcow2_key(image: str) -> str:
    """`<image>.qcow2` at the bucket root: where the existing builder's Terraform imports the image from
    (layout `reference`; a copy of the build's own qcow2 once the image is published)."""
    return f"{names.vpc_name(image)}.qcow2"


def qcow2_href(region: str, bucket: str, image: str, build: str) -> str:
    """`file.href` of the custom image: cos://<region>/<bucket>/<image>/builds/<build>/<image>.qcow2."""
    if not _REGION.fullmatch(region):
        raise ValueError(f"region {region!r}: expected a region such as 'jp-tok'")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"bucket {bucket!r}: 3-63 of lowercase letters, digits, '-', '.'")
    return f"cos://{region}/{bucket}/{qcow2_key(image, build)}"


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
    layout: str = PER_IMAGE  # of the mover's inputs (target.cos.key_layout)

    def __post_init__(self) -> None:
        input_prefix(self.image, self.layout)

    @property
    def prefix(self) -> str:
        return image_prefix(self.image)

    @property
    def inputs(self) -> str:
        return input_prefix(self.image, self.layout)

    @property
    def metadata(self) -> str:
        return metadata_key(self.image, self.layout)

    @property
    def devmap(self) -> str:
        return devmap_key(self.image, self.layout)

    @property
    def env_overrides(self) -> str:
        return env_overrides_key(self.image, self.layout)

    @property
    def properties(self) -> str:
        return properties_key(self.image, self.layout)

    def volume(self, file_name: str) -> str:
        return volume_key(self.image, file_name, self.layout)
