"""What goes where (DESIGN §8): volume files by VOLSER, devmap, marker, env-overrides, owner 999:999."""

import json
import os
from typing import Optional

from datamover.errors import MoverError
from datamover.manifest import ENV_OVERRIDES_OBJECT, ImageManifest

LAYOUTS = ("all-in-data", "boot-split")
DATA_LABEL = "zvolumes"
OWNER = (999, 999)  # the zPDT user of Wazi aaS
MARKER = ".zosprepared"
DEVMAP = "devmap"


def plan_targets(manifest: ImageManifest, layout: str) -> dict[str, str]:
    """VOLSER -> "data" or "boot"."""
    if layout not in LAYOUTS:
        raise MoverError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if layout == "all-in-data":
        return {v.name: "data" for v in manifest.volumes}
    if not any(v.boot for v in manifest.volumes):
        raise MoverError("layout boot-split: image-metadata.json marks no volume with \"boot\": true")
    return {v.name: "boot" if v.boot else "data" for v in manifest.volumes}


def write_aux_files(directory: str, devmap: bytes, env_overrides: Optional[bytes]) -> list[str]:
    """Write devmap, the marker and env-overrides/properties.json; return the paths created,
    relative to `directory`, directories before their contents."""
    created = [DEVMAP, MARKER]
    _write(os.path.join(directory, DEVMAP), devmap)
    _write(os.path.join(directory, MARKER), b"")
    if env_overrides is not None:
        try:
            json.loads(env_overrides)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MoverError(f"object {ENV_OVERRIDES_OBJECT}: not valid JSON: {exc}") from exc
        folder = os.path.dirname(ENV_OVERRIDES_OBJECT)
        os.makedirs(os.path.join(directory, folder), mode=0o755, exist_ok=True)
        _write(os.path.join(directory, ENV_OVERRIDES_OBJECT), env_overrides)
        created += [folder, ENV_OVERRIDES_OBJECT]
    return created


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o644)


def data_volume_bytes(total: int) -> int:
    """Room for `total` bytes of volume files: 10 % like the VSI's data volume (DESIGN §4), plus
    a floor for the file system's own structures; a multiple of 4 MiB."""
    need = int(total * 1.10) + (64 << 20)
    return -(-need // (4 << 20)) * (4 << 20)
