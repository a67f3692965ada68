"""The external tools: mke2fs, debugfs, qemu-img, mount."""

import os
import subprocess
from collections.abc import Sequence
from typing import Optional

from datamover.errors import MoverError

# -T largefile: one inode per MiB (volume files are few and big); -m 0: no blocks reserved for root
MKE2FS_OPTIONS = ("-q", "-F", "-m", "0", "-T", "largefile")


def run(args: Sequence[str], what: str, stdin: Optional[str] = None) -> "subprocess.CompletedProcess[str]":
    try:
        done = subprocess.run(list(args), input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise MoverError(f"{what}: {args[0]} is not installed") from exc
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise MoverError(f"{what}: {args[0]} exited {done.returncode}: {detail[-1] if detail else ''}")
    return done


def mkfs(
    target: str,
    what: str,
    fs_type: str = "ext2",
    label: Optional[str] = None,
    populate: Optional[str] = None,
    owner: Optional[tuple[int, int]] = None,
    size_bytes: Optional[int] = None,
) -> None:
    """Make a file system on a device or image file, optionally filled from a directory."""
    args = ["mke2fs", *MKE2FS_OPTIONS, "-t", fs_type]
    if label:
        args += ["-L", label]
    if owner:
        args += ["-E", f"root_owner={owner[0]}:{owner[1]}"]
    if populate:
        args += ["-d", populate]
    args.append(target)
    if size_bytes is not None:
        args.append(f"{size_bytes // 1024}k")
    run(args, what)


def set_owner(image: str, paths: Sequence[str], owner: tuple[int, int]) -> None:
    """Set uid/gid of files inside an unmounted ext2 image (no root, no mount needed)."""
    script = "".join(f'sif "/{p}" uid {owner[0]}\nsif "/{p}" gid {owner[1]}\n' for p in paths)
    done = run(["debugfs", "-w", "-f", "-", image], f"set owners in {image}", stdin=script)
    # debugfs exits 0 whatever its commands did: every stderr line but its banner is an error
    errors = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("debugfs ")]
    if errors:
        raise MoverError(f"set owners in {image}: debugfs: {errors[0]}")


def to_qcow2(source: str, target: str) -> None:
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", source, target], f"convert {source} to qcow2")
    run(["qemu-img", "check", "-q", target], f"check {target}")


def mount(device: str, mountpoint: str, read_only: bool = False) -> None:
    os.makedirs(mountpoint, exist_ok=True)
    # a regular file stands for a disk; an export only reads its volume
    flags = ["ro"] * read_only + ["loop"] * os.path.isfile(device)
    options = ["-o", ",".join(flags)] if flags else []
    run(["mount", *options, device, mountpoint], f"mount {device} on {mountpoint}")


def umount(mountpoint: str) -> None:
    run(["umount", mountpoint], f"unmount {mountpoint}")
