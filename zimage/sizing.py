"""Sizes of images and of the mover's volumes (DESIGN.md §4, §10)."""

from __future__ import annotations

import math

IMAGE_LIMIT_BYTES = 16 * 10**12  # WIB's limit for one image
VOLUME_LIMIT_GB = 16_000  # largest VPC block volume
DATA_HEADROOM = 1.10  # the reference builder's margin for the data volume
# ext2 with the default 256-byte inodes every 16 KiB, bitmaps and descriptors costs about 1.6 %
# of the device; 2 % keeps a margin.
EXT2_OVERHEAD = 0.02
BOOT_VOLUME_GB = 10
QCOW2_VOLUME_GB = 15
GB = 10**9


def data_volume_gb(image_bytes: int) -> int:
    """The data volume's size as the reference computes it, capped at the VPC maximum."""
    return min(math.ceil(image_bytes / GB * DATA_HEADROOM), VOLUME_LIMIT_GB)


def fits_data_volume(image_bytes: int) -> bool:
    """True when the volumes plus the file system's overhead fit the (possibly capped) data volume."""
    return image_bytes <= data_volume_gb(image_bytes) * GB * (1 - EXT2_OVERHEAD)


def human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")
