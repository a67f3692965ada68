"""Volume images for tests: real 3390 CKD volumes made by Hercules dasdinit, and synthetic ones."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

DASDINIT = shutil.which("dasdinit")


def dasd_volume(path: Path, volser: str, cylinders: int = 20, devtype: str = "3390-1") -> Path:
    """A CKD volume with a VOL1 label (CKD_P370 header), `cylinders` cylinders (20: about 17 MB)."""
    if DASDINIT is None:
        pytest.skip("Hercules dasdinit is not installed (Debian package hercules)")
    subprocess.run(
        [DASDINIT, "-a", str(path), devtype, volser, str(cylinders)],
        check=True, stdin=subprocess.DEVNULL, capture_output=True,
    )
    return path


def synthetic_volume(path: Path, size: int, seed: int = 0, random_share: float = 0.5) -> Path:
    """`size` bytes of 64 KiB blocks, each random (incompressible) or a repeated byte, chosen by `seed`."""
    rng = random.Random(seed)
    block = 64 * 1024
    with path.open("wb") as f:
        left = size
        while left > 0:
            n = min(block, left)
            f.write(rng.randbytes(n) if rng.random() < random_share else bytes([rng.randrange(256)]) * n)
            left -= n
    return path
