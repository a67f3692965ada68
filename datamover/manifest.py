"""image-metadata.json (DESIGN §6): parsing and validation.

Files written by the reference builder may lack everything but each volume's name, file-name,
compression and boot flag, and the image's name (the reference mover takes it from its
environment); the checks that need a missing field are then skipped and the report says so.
"""

import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from datamover.errors import MoverError
from datamover.names import check_image_name, check_object_name, check_volser

METADATA_OBJECT = "image-metadata.json"
DEVMAP_OBJECT = "devmap"
ENV_OVERRIDES_OBJECT = "env-overrides"
PROPERTIES_OBJECT = "properties.json"
# Optional objects copied as they are, under their own names, to the data volume's root.
COPIED_OBJECTS = (ENV_OVERRIDES_OBJECT, PROPERTIES_OBJECT)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_DEVNUM = re.compile(r"[0-9A-Fa-f]{4}")
COMPRESSIONS = ("gzip", "none")


@dataclass(frozen=True)
class VolumeEntry:
    name: str  # VOLSER, also the file name on the data volume
    file_name: str  # object name of the (compressed) volume
    compression: str
    boot: bool
    devnum: Optional[str]
    devtype: Optional[str]
    size: Optional[int]
    sha256: Optional[str]
    gz_sha256: Optional[str]


@dataclass(frozen=True)
class ImageManifest:
    name: Optional[str]  # None in the reference builder's files
    size: Optional[int]
    boot_size: Optional[int]
    volumes: tuple[VolumeEntry, ...]


def _optional(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    if value is None:
        return None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise MoverError(f"{where}.{key}: {value!r} is not a non-negative integer")
    if not isinstance(value, kind):
        raise MoverError(f"{where}.{key}: {value!r} is not a {kind.__name__}")
    return value


def _sha(entry: dict[str, Any], key: str, where: str) -> Optional[str]:
    value = _optional(entry, key, str, where)
    if value is not None and not _SHA256.fullmatch(value.lower()):
        raise MoverError(f"{where}.{key}: {value!r} is not a sha256 hex digest")
    return None if value is None else value.lower()


def _volume(entry: object, where: str) -> VolumeEntry:
    if not isinstance(entry, dict):
        raise MoverError(f"{where}: expected an object, got {type(entry).__name__}")
    compression = entry.get("compression", "gzip")
    if compression not in COMPRESSIONS:
        raise MoverError(f"{where}.compression: {compression!r} is not one of {', '.join(COMPRESSIONS)}")
    devnum = _optional(entry, "devnum", str, where)
    if devnum is not None and not _DEVNUM.fullmatch(devnum):
        raise MoverError(f"{where}.devnum: {devnum!r} is not 4 hex digits")
    boot = entry.get("boot", False)
    if not isinstance(boot, bool):
        raise MoverError(f"{where}.boot: {boot!r} is not true or false")
    return VolumeEntry(
        name=check_volser(entry.get("name"), f"{where}.name"),
        file_name=check_object_name(entry.get("file-name"), f"{where}.file-name"),
        compression=compression,
        boot=boot,
        devnum=None if devnum is None else devnum.upper(),
        devtype=_optional(entry, "devtype", str, where),
        size=_optional(entry, "size", int, where),
        sha256=_sha(entry, "sha256", where),
        gz_sha256=_sha(entry, "gz-sha256", where),
    )


def _named_volume(entry: object, index: int) -> VolumeEntry:
    try:
        return _volume(entry, f"volumes[{index}]")
    except MoverError as exc:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name:
            raise MoverError(f"volume {name}: {exc}") from None
        raise


def parse_manifest(raw: bytes) -> ImageManifest:
    """Parse and validate image-metadata.json; every error names the offending field."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MoverError(f"{METADATA_OBJECT}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MoverError(f"{METADATA_OBJECT}: expected an object with a 'volumes' list")
    image = doc.get("image", {})
    if not isinstance(image, dict):
        raise MoverError(f"{METADATA_OBJECT}: 'image' must be an object")
    volumes = doc.get("volumes")
    if not isinstance(volumes, list) or not volumes:
        raise MoverError(f"{METADATA_OBJECT}: 'volumes' must be a non-empty list")
    parsed = tuple(_named_volume(v, i) for i, v in enumerate(volumes))
    for key in ("name", "file_name"):
        seen: set[str] = set()
        for i, vol in enumerate(parsed):
            value = getattr(vol, key)
            if value in seen:
                raise MoverError(f"volumes[{i}].{key.replace('_', '-')}: {value!r} appears twice")
            seen.add(value)
    return ImageManifest(
        name=None if image.get("name") is None else check_image_name(image["name"], "image.name"),
        size=_optional(image, "size", int, "image"),
        boot_size=_optional(image, "boot-size", int, "image"),
        volumes=parsed,
    )
