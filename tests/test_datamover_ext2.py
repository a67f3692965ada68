"""datamover.ext2: the data mover's own ext2 images, read back by e2fsck, debugfs, dumpe2fs and (as root)
the kernel."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from datamover.errors import MoverError, VolumeError
from datamover.ext2 import BLOCK, DIRECT, PTRS, Ext2Image
from tests.support.datamover import e2fsck_clean, ext2_dump, ext2_label, ext2_names, ext2_stat

pytestmark = pytest.mark.integration
OWNER = (999, 999)


def _write(image: Ext2Image, name: str, data: bytes, piece: int = 77777) -> None:
    writer = image.open_volume(name)
    for at in range(0, len(data), piece):  # never block aligned
        writer.write(data[at : at + piece])
    writer.close(sync=False)


def _debugfs(image: Path, command: str) -> str:
    done = subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True, text=True, check=True)
    return done.stdout


def test_volumes_and_small_files_read_back_identical_with_holes_and_owners(tmp_path: Path) -> None:
    volumes = {
        "ZRES01": os.urandom(5000) + bytes(1 << 20) + b"x" * 70000 + bytes(3),
        "ZERO01": bytes(100000),
        "SYN#01": os.urandom(9 << 20) + bytes(3 * BLOCK) + os.urandom(100),
        "EMPTY1": b"",
    }
    files = [("devmap", b"[system]\nmemory 16g\n"), (".zosprepared", b""), ("conf", None), ("conf/p.json", b"{}")]
    path = tmp_path / "data.img"
    image = Ext2Image(str(path), 64 << 20, "zvolumes", OWNER, [(n, len(d)) for n, d in volumes.items()], files)
    for name, data in volumes.items():
        _write(image, name, data)
    image.finish()

    e2fsck_clean(path)
    assert ext2_label(path) == "zvolumes"
    assert ext2_names(path) == {"lost+found", "devmap", ".zosprepared", "conf", *volumes}
    assert ext2_names(path, "/conf") == {"p.json"}
    for name, data in volumes.items():
        assert ext2_dump(path, f"/{name}", tmp_path / name) == data, name
        assert ext2_stat(path, f"/{name}")["uid"] == 999 and ext2_stat(path, f"/{name}")["gid"] == 999
    assert ext2_dump(path, "/conf/p.json", tmp_path / "p") == b"{}"
    assert (ext2_stat(path, "/")["uid"], ext2_stat(path, "/lost+found")["uid"]) == (999, 0)
    # zero blocks are holes in the file system and take no room in the image file
    assert ext2_stat(path, "/ZERO01")["blocks"] == 0
    assert ext2_stat(path, "/ZRES01")["blocks"] * 512 < 200 * 1024
    assert path.stat().st_blocks * 512 < 12 << 20


def test_a_volume_past_4_gib_uses_triple_indirect_blocks_over_many_groups(tmp_path: Path) -> None:
    # logical blocks in the direct, single, double and triple indirect ranges, and the last one
    size = (DIRECT + PTRS + PTRS**2 + 3 * PTRS) * BLOCK + 100
    marks = [0, DIRECT + 5, DIRECT + PTRS + 7, DIRECT + PTRS + PTRS**2 + 1, size // BLOCK]
    path = tmp_path / "big.img"
    image = Ext2Image(str(path), size + (300 << 20), None, OWNER, [("BIG001", size)])
    writer = image.open_volume("BIG001")
    zeros = bytes(1 << 20)
    at = 0
    for mark in marks:  # zeros up to each marked block, then a block naming itself
        while at < mark * BLOCK:
            step = min(len(zeros), mark * BLOCK - at)
            writer.write(zeros[:step])
            at += step
        block = f"block {mark}".encode().ljust(min(BLOCK, size - at), b".")
        writer.write(block)
        at += len(block)
    writer.close(sync=False)
    image.finish()

    assert image.geometry.groups > 32  # superblock copies in groups 1, 3, 5, 7, 9, 25, 27
    e2fsck_clean(path)
    assert ext2_stat(path, "/BIG001")["size"] == size
    with path.open("rb") as raw:
        for mark in marks:
            found = re.search(r"(\d+)\s*$", _debugfs(path, f"bmap /BIG001 {mark}"))
            assert found and int(found[1]) > 0, mark
            raw.seek(int(found[1]) * BLOCK)
            assert raw.read(16).startswith(f"block {mark}".encode()), mark
    # 5 data blocks; indirect: 1 single, 1 double + 1 below it, 1 triple + 1 double + 2 single below it
    assert ext2_stat(path, "/BIG001")["blocks"] == (5 + 1 + 2 + 4) * BLOCK // 512
    assert path.stat().st_blocks * 512 < 64 << 20


def test_two_hundred_volumes_in_several_inode_groups(tmp_path: Path) -> None:
    names = [f"V{i:05d}" for i in range(200)]
    path = tmp_path / "many.img"
    image = Ext2Image(str(path), 160 << 20, "zvolumes", OWNER, [(n, 200_000) for n in names])
    for name in names:
        _write(image, name, (name.encode() * 33_334)[:200_000])
    image.finish()

    e2fsck_clean(path)
    assert ext2_names(path) == {"lost+found", *names}
    assert ext2_dump(path, "/V00199", tmp_path / "v") == (b"V00199" * 33_334)[:200_000]


def test_a_retried_volume_keeps_only_its_last_attempt(tmp_path: Path) -> None:
    path = tmp_path / "retry.img"
    image = Ext2Image(str(path), 16 << 20, None, OWNER, [("RETRY1", 3 * BLOCK)])
    _write(image, "RETRY1", b"\xff" * (3 * BLOCK))
    second = bytes(BLOCK) + b"\x01" * BLOCK + bytes(BLOCK)
    _write(image, "RETRY1", second)
    image.finish()

    e2fsck_clean(path)
    assert ext2_dump(path, "/RETRY1", tmp_path / "r") == second
    assert ext2_stat(path, "/RETRY1")["blocks"] == BLOCK // 512  # the blocks of the first attempt are free again


def test_more_bytes_than_planned_stop_before_they_reach_the_next_volume(tmp_path: Path) -> None:
    path = tmp_path / "long.img"
    image = Ext2Image(str(path), 16 << 20, None, OWNER, [("LONG01", 2 * BLOCK), ("NEXT01", BLOCK)])
    _write(image, "NEXT01", b"n" * BLOCK)
    writer = image.open_volume("LONG01")
    with pytest.raises(VolumeError, match="LONG01: decompresses to more than the 8,192 bytes") as caught:
        writer.write(b"x" * (3 * BLOCK))
    assert not caught.value.retryable
    _write(image, "LONG01", b"y" * (2 * BLOCK))
    image.finish()
    assert ext2_dump(path, "/NEXT01", tmp_path / "n") == b"n" * BLOCK


def test_short_volume_is_not_committed_and_finish_names_it(tmp_path: Path) -> None:
    path = tmp_path / "short.img"
    image = Ext2Image(str(path), 16 << 20, None, OWNER, [("SHORT1", 2 * BLOCK)])
    _write(image, "SHORT1", b"s" * BLOCK)  # the caller's size check reports it; nothing is committed
    with pytest.raises(MoverError, match="SHORT1 were not written"):
        image.finish()


def test_bad_plans_fail_before_any_file_is_made(tmp_path: Path) -> None:
    path = tmp_path / "bad.img"
    with pytest.raises(MoverError, match=r"cannot hold .* bytes of files"):
        Ext2Image(str(path), 8 << 20, None, OWNER, [("HUGE01", 9 << 20)])
    with pytest.raises(MoverError, match="'A/B' is not a valid name"):
        Ext2Image(str(path), 8 << 20, None, OWNER, [("A/B", 1)])
    with pytest.raises(MoverError, match="'DUP001' is given twice"):
        Ext2Image(str(path), 8 << 20, None, OWNER, [("DUP001", 1), ("DUP001", 1)])
    with pytest.raises(MoverError, match="longer than 16 bytes"):
        Ext2Image(str(path), 8 << 20, "a-label-of-17-chr", OWNER, [])
    assert not path.exists()


def test_the_kernel_mounts_it_and_reads_the_same_bytes(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting an image file needs root")
    data = os.urandom(3 << 20) + bytes(5 << 20) + os.urandom(12345)
    path = tmp_path / "k.img"
    image = Ext2Image(str(path), 32 << 20, "zvolumes", OWNER, [("KERN01", len(data))], [("devmap", b"d\n")])
    _write(image, "KERN01", data)
    image.finish()
    point = tmp_path / "mnt"
    point.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop,ro", str(path), str(point)], capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"this machine does not loop-mount: {mounted.stderr.strip()}")
    try:
        assert (point / "KERN01").read_bytes() == data
        assert (point / "devmap").read_bytes() == b"d\n"
        assert (point / "KERN01").stat().st_uid == 999
    finally:
        subprocess.run(["umount", str(point)], check=True)
