"""What goes where (DESIGN §8): volume files by VOLSER, devmap, marker, env-overrides and
properties.json, owner 999:999."""

import os

from datamover.errors import MoverError
from datamover.manifest import COPIED_OBJECTS, ImageManifest

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
        raise MoverError('layout boot-split: image-metadata.json marks no volume with "boot": true')
    return {v.name: "boot" if v.boot else "data" for v in manifest.volumes}


def write_aux_files(directory: str, devmap: bytes, copied: dict[str, bytes]) -> list[str]:
    """Write devmap, the marker and the copied objects (env-overrides, properties.json: their bytes
    as they are, never parsed, as the reference mover copies them); return the file names created."""
    unknown = sorted(set(copied) - set(COPIED_OBJECTS))
    if unknown:
        raise MoverError(f"object(s) {', '.join(unknown)} are not copied to the data volume")
    created = [DEVMAP, MARKER]
    _write(os.path.join(directory, DEVMAP), devmap)
    _write(os.path.join(directory, MARKER), b"")
    for name in COPIED_OBJECTS:
        if name in copied:
            _write(os.path.join(directory, name), copied[name])
            created.append(name)
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
