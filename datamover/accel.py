"""Optional inflate accelerators brought to the VSI as wheels (zlib-ng, isal): the orchestrator puts
a wheel for the VSI's Python in the bucket and names it, with its sha256, in the mover configuration.
A wheel that cannot be fetched, verified or imported is skipped with a warning: zlib still works."""

import hashlib
import importlib
import io
import os
import sys
import zipfile
from dataclasses import dataclass

from datamover import http as web
from datamover.errors import MoverError
from datamover.progress import log


@dataclass(frozen=True)
class Wheel:
    name: str
    url: str
    sha256: str


def load_wheels(wheels: tuple[Wheel, ...], workdir: str) -> list[str]:
    """Make the wheels importable; returns one note per wheel for the report."""
    notes = []
    for wheel in wheels:
        try:
            _, data = web.call("GET", wheel.url, f"accelerator {wheel.name}")
            digest = hashlib.sha256(data).hexdigest()
            if digest != wheel.sha256:
                raise MoverError(f"sha256 is {digest}, the mover configuration says {wheel.sha256}")
            target = os.path.join(workdir, "accelerators", wheel.sha256[:16])
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(target)  # extractall drops absolute and '..' member paths
            sys.path.insert(0, target)
            importlib.invalidate_caches()
            notes.append(f"{wheel.name}: loaded")
        except (MoverError, OSError, zipfile.BadZipFile) as exc:
            log(f"warning: accelerator {wheel.name} not used: {exc}")
            notes.append(f"{wheel.name}: not used: {exc}")
    return notes
