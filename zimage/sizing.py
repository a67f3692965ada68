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
VPC_MIN_VOLUME_GB = 10
QCOW2_OVERHEAD = 1.02  # qcow2 metadata over a fully written raw disk, with margin


def data_volume_gb(image_bytes: int) -> int:
    """The data volume's size as the reference computes it, capped at the VPC maximum."""
    return min(math.ceil(image_bytes / GB * DATA_HEADROOM), VOLUME_LIMIT_GB)


def fits_data_volume(image_bytes: int) -> bool:
    """True when the volumes plus the file system's overhead fit the (possibly capped) data volume."""
    return image_bytes <= data_volume_gb(image_bytes) * GB * (1 - EXT2_OVERHEAD)


def mover_volume_gb(layout: str, image_bytes: int, boot_bytes: int) -> dict[str, int]:
    """GB of the mover's volumes: data as the reference computes it (at least the VPC minimum);
    with the boot-split layout the boot disk holds the sysres volumes and grows with them, and the
    scratch volume holds the boot disk's qcow2."""
    data_bytes = image_bytes - (boot_bytes if layout == "boot-split" else 0)
    boot = BOOT_VOLUME_GB
    if layout == "boot-split":
        boot = max(boot, data_volume_gb(boot_bytes))
    return {
        "data": max(VPC_MIN_VOLUME_GB, data_volume_gb(data_bytes)),
        "boot": boot,
        "scratch": max(QCOW2_VOLUME_GB, math.ceil(boot * QCOW2_OVERHEAD) + 1),
    }


def human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1000 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")
