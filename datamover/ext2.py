"""An ext2 image laid out by the data mover itself, so that volumes are decompressed straight into it:
each byte is written once (no work directory for `mke2fs -d` to copy), without root or a mount.

What is written, as e2fsck, debugfs and the kernel read it: 4 KiB blocks, 32768 blocks per group,
256-byte inodes, features filetype, sparse_super and large_file; the root directory, lost+found, small
files given as bytes, and volume files whose sizes are known before their bytes arrive. Each volume
owns a run of blocks (room for its indirect blocks, then its data), so volumes are written in parallel
without coordination; blocks that stay all zeros are holes in the file system and in the image file.
"""

import bisect
import os
import posixpath
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from datamover.errors import MoverError, VolumeError
from datamover.sink import BLOCK, BlockWriter, WriteBack, pwrite_all

PER_GROUP = 8 * BLOCK  # blocks per group: what one bitmap block covers
INODE_SIZE = 256
EXTRA_ISIZE = 32  # the extended inode fields in use, as mke2fs sets them for 256-byte inodes
PTRS = BLOCK // 4  # block numbers per indirect block
DIRECT = 12
ROOT_INO, LOST_FOUND_INO = 2, 11  # inodes 1-10 are reserved; 11 is the first ordinary one
LOST_FOUND_BLOCKS = 4  # room for e2fsck to reconnect files without growing the directory
MIN_INODES_PER_GROUP = 128  # one per MiB, as mke2fs -T largefile
S_IFREG, S_IFDIR = 0o100000, 0o040000
FT_REG, FT_DIR = 1, 2
INCOMPAT_FILETYPE = 0x0002
RO_COMPAT_SPARSE_SUPER_LARGE_FILE = 0x0001 | 0x0002
MAX_BLOCKS = 2**32 - 1  # block numbers are 32 bits
MAX_I_BLOCKS = 2**32 - 1  # i_blocks counts 512-byte sectors in 32 bits (no huge_file): 2 TiB per file


def _has_super(group: int) -> bool:
    """sparse_super: copies of the superblock and descriptors in groups 0, 1 and powers of 3, 5, 7."""
    if group <= 1:
        return True
    for base in (3, 5, 7):
        power = base
        while power < group:
            power *= base
        if power == group:
            return True
    return False


def tree_blocks(blocks: int) -> int:
    """Indirect blocks a fully mapped file of `blocks` data blocks needs."""
    rest = blocks - DIRECT
    count = 0
    for depth in (1, 2, 3):
        if rest <= 0:
            return count
        covered = min(rest, PTRS**depth)
        count += sum(-(-covered // PTRS**level) for level in range(1, depth + 1))  # the top one, then below
        rest -= covered
    if rest > 0:
        raise MoverError(f"a file of {blocks * BLOCK:,} bytes is larger than ext2 with {BLOCK}-byte blocks allows")
    return count


class Geometry:
    """Block groups of an image of `size_bytes` with room for `inodes` inodes."""

    def __init__(self, size_bytes: int, inodes: int) -> None:
        blocks = min(size_bytes // BLOCK, MAX_BLOCKS)
        while True:
            groups = max(1, -(-blocks // PER_GROUP))
            per_group = max(MIN_INODES_PER_GROUP, -(-inodes // groups))
            self.inodes_per_group = -(-per_group // 16) * 16  # whole inode-table blocks
            self.gdt_blocks = -(-groups * 32 // BLOCK)
            self.table_blocks = self.inodes_per_group * INODE_SIZE // BLOCK
            last = blocks - (groups - 1) * PER_GROUP
            if groups > 1 and last < self.meta(groups - 1) + 64:  # a last group too small to be worth it
                blocks = (groups - 1) * PER_GROUP
                continue
            break
        if last <= self.meta(groups - 1) or self.inodes_per_group > PER_GROUP:
            raise MoverError(f"an ext2 image of {size_bytes:,} bytes is too small for {inodes} inodes")
        self.blocks, self.groups = blocks, groups
        self.first_ordinal: List[int] = []  # data blocks of the groups before each group
        total = 0
        for group in range(groups):
            self.first_ordinal.append(total)
            total += self.group_blocks(group) - self.meta(group)
        self.capacity = total

    def meta(self, group: int) -> int:
        """Blocks at the start of a group: superblock and descriptor copies, two bitmaps, inode table."""
        return (1 + self.gdt_blocks if _has_super(group) else 0) + 2 + self.table_blocks

    def group_blocks(self, group: int) -> int:
        return min(PER_GROUP, self.blocks - group * PER_GROUP)

    def block_bitmap(self, group: int) -> int:
        return group * PER_GROUP + self.meta(group) - 2 - self.table_blocks

    def inode_table(self, group: int) -> int:
        return self.block_bitmap(group) + 2

    def runs(self, ordinal: int, count: int) -> Iterator[Tuple[int, int]]:
        """(first block, length) of the blocks holding data blocks ordinal .. ordinal+count-1."""
        group = bisect.bisect_right(self.first_ordinal, ordinal) - 1
        while count > 0:
            offset = ordinal - self.first_ordinal[group]
            room = self.group_blocks(group) - self.meta(group) - offset
            if room <= 0:
                group += 1
                continue
            take = min(room, count)
            yield group * PER_GROUP + self.meta(group) + offset, take
            ordinal, count = ordinal + take, count - take
            group += 1


@dataclass
class _Node:
    path: str  # relative to the root; "" is the root
    ino: int
    mode: int
    size: int
    content: Optional[bytes]  # directories and small files; None for a volume, written by its writer
    owner: Tuple[int, int]
    links: int = 1
    ordinal: int = 0  # first block of its run (indirect blocks first, then data), as a data-block ordinal
    tree: int = 0  # indirect blocks reserved
    committed: bool = False

    @property
    def blocks(self) -> int:
        return -(-self.size // BLOCK)


def _set_bits(bits: bytearray, start: int, count: int) -> None:
    end = start + count
    while start < end and start % 8:
        bits[start // 8] |= 1 << (start % 8)
        start += 1
    whole = (end - start) // 8
    bits[start // 8 : start // 8 + whole] = b"\xff" * whole
    start += whole * 8
    while start < end:
        bits[start // 8] |= 1 << (start % 8)
        start += 1


def _bits(bits: bytes, start: int, count: int) -> int:
    """Bits start .. start+count-1 of a little-endian bitmap, as an int (bit 0 = start)."""
    value = int.from_bytes(bits[start // 8 : (start + count + 7) // 8 + 1], "little")
    return (value >> (start % 8)) & ((1 << count) - 1)


def _dir_content(entries: Sequence[Tuple[bytes, int, int]], min_blocks: int = 1) -> bytes:
    """Directory blocks of linear entries (inode, rec_len, name_len, file type, name); each block's last
    entry reaches to its end, and empty blocks are one unused entry."""
    blocks: List[bytes] = []
    block, last = bytearray(), 0
    for name, ino, kind in entries:
        need = (8 + len(name) + 3) & ~3
        if len(block) + need > BLOCK:
            blocks.append(_close_dir_block(block, last))
            block = bytearray()
        last = len(block)
        block += struct.pack("<IHBB", ino, need, len(name), kind) + name.ljust(need - 8, b"\0")
    blocks.append(_close_dir_block(block, last))
    while len(blocks) < min_blocks:
        blocks.append(struct.pack("<IH", 0, BLOCK).ljust(BLOCK, b"\0"))
    return b"".join(blocks)


def _close_dir_block(block: bytearray, last: int) -> bytes:
    struct.pack_into("<H", block, last + 4, BLOCK - last)
    return bytes(block.ljust(BLOCK, b"\0"))


class Ext2Image:
    """Plan the file system at creation (every name and size), write volumes through `open_volume`
    (in parallel), then `finish()` writes the rest."""

    def __init__(
        self,
        path: str,
        size_bytes: int,
        label: Optional[str],
        owner: Tuple[int, int],
        volumes: Sequence[Tuple[str, int]],
        files: Sequence[Tuple[str, Optional[bytes]]] = (),
    ) -> None:
        """`volumes`: (name, size) of files in the root written later; `files`: (path, bytes) of small
        files, or (path, None) for a directory, parents before their contents."""
        if label is not None and len(label.encode()) > 16:
            raise MoverError(f"ext2 label {label!r} is longer than 16 bytes")
        self.path, self.label, self._lock = path, label, threading.Lock()
        self._now = int(time.time())
        self._uuid = uuid.uuid4().bytes
        root = _Node("", ROOT_INO, S_IFDIR | 0o755, 0, b"", owner, links=3)
        lost = _Node("lost+found", LOST_FOUND_INO, S_IFDIR | 0o700, 0, b"", (0, 0), links=2)
        self._nodes = [root, lost]
        children = {"": [lost], "lost+found": []}
        for rel, content in files:
            self._add(children, rel, S_IFDIR | 0o755 if content is None else S_IFREG | 0o644, content, owner)
        self._volumes = {}
        for name, size in volumes:
            self._volumes[name] = self._add(children, name, S_IFREG | 0o644, None, owner, size)
        self.geometry = Geometry(size_bytes, len(self._nodes) + LOST_FOUND_INO)
        for node in self._nodes:
            if node.mode & S_IFDIR:
                parent = self._by_path(posixpath.dirname(node.path)) if node.path else root
                entries = [(b".", node.ino, FT_DIR), (b"..", parent.ino, FT_DIR)] + [
                    (posixpath.basename(c.path).encode(), c.ino, FT_DIR if c.mode & S_IFDIR else FT_REG)
                    for c in children[node.path]
                ]
                blocks = LOST_FOUND_BLOCKS if node.ino == LOST_FOUND_INO else 1
                node.content = _dir_content(entries, blocks)
                node.size = len(node.content)
        cursor = 0
        for node in self._nodes:
            node.ordinal, node.tree = cursor, tree_blocks(node.blocks)
            if (node.blocks + node.tree) * (BLOCK // 512) > MAX_I_BLOCKS:
                raise MoverError(f"{node.path}: {node.size:,} bytes is more than one ext2 file can hold here")
            cursor += node.tree + node.blocks
        if cursor > self.geometry.capacity:
            raise MoverError(
                f"an ext2 image of {self.geometry.blocks * BLOCK:,} bytes cannot hold "
                f"{cursor * BLOCK:,} bytes of files and their indirect blocks"
            )
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        os.ftruncate(self._fd, self.geometry.blocks * BLOCK)  # sparse: unwritten blocks read as zeros

    def _add(
        self, children: dict, rel: str, mode: int, content: Optional[bytes], owner: Tuple[int, int], size: int = 0
    ) -> _Node:
        parent, name = posixpath.split(rel)
        if not name or len(name.encode()) > 255 or name in (".", "..") or parent not in children:
            raise MoverError(f"ext2 image: {rel!r} is not a valid name in a known directory")
        if any(posixpath.basename(c.path) == name for c in children[parent]):
            raise MoverError(f"ext2 image: {rel!r} is given twice")
        node = _Node(rel, LOST_FOUND_INO + len(self._nodes) - 1, mode, len(content or b"") or size, content, owner)
        if mode & S_IFDIR:
            node.links, node.size = 2, 0
            children[rel] = []
            self._by_path(parent).links += 1
        children[parent].append(node)
        self._nodes.append(node)
        return node

    def _by_path(self, rel: str) -> _Node:
        return next(n for n in self._nodes if n.path == rel)

    def open_volume(self, name: str) -> "VolumeWriter":
        """A writer for the volume `name` (a fresh one per attempt: the last commit counts)."""
        return VolumeWriter(self, self._volumes[name])

    # --- writing what the plan says ---

    def commit(self, node: _Node, present: Optional[bytes]) -> None:
        """Write the node's indirect blocks and inode and mark its blocks in use; `present` has a bit
        per data block written (None: all)."""
        data_at = node.ordinal + node.tree
        used_tree: List[int] = []
        pointers = self._map(node, present, data_at, used_tree)
        region = bytearray((node.tree + node.blocks + 7) // 8 + 1)
        for index in used_tree:
            region[index // 8] |= 1 << (index % 8)
        if present is None:
            _set_bits(region, node.tree, node.blocks)
        elif node.blocks:
            data = int.from_bytes(present, "little") & ((1 << node.blocks) - 1)
            merged = int.from_bytes(region, "little") | (data << node.tree)
            region = bytearray(merged.to_bytes(len(region), "little"))
        allocated = len(used_tree) + (node.blocks if present is None else _popcount(present, node.blocks))
        with self._lock:
            self._replace_bits(node.ordinal, bytes(region), node.tree + node.blocks)
            self._write_inode(node, pointers, allocated)
            node.committed = True

    def _map(self, node: _Node, present: Optional[bytes], data_at: int, used_tree: List[int]) -> List[int]:
        """i_block of the node; writes the indirect blocks (in pre-order from node.ordinal)."""
        next_tree = [node.ordinal]

        def pointers(first: int, count: int) -> List[int]:
            numbers: List[int] = []
            for block, length in self.geometry.runs(data_at + first, count):
                numbers.extend(range(block, block + length))
            if present is not None:
                mask = _bits(present, first, count)
                if mask != (1 << count) - 1:
                    numbers = [n if mask >> i & 1 else 0 for i, n in enumerate(numbers)]
            return numbers

        def indirect(depth: int, first: int, count: int) -> int:
            ordinal = next_tree[0]
            next_tree[0] += 1
            if depth == 1:
                numbers = pointers(first, count)
            else:
                span = PTRS ** (depth - 1)
                numbers = [
                    indirect(depth - 1, at, min(span, first + count - at)) for at in range(first, first + count, span)
                ]
            if not any(numbers):
                return 0  # a range of holes needs no block
            block = next(self.geometry.runs(ordinal, 1))[0]
            pwrite_all(self._fd, memoryview(struct.pack(f"<{len(numbers)}I", *numbers)), block * BLOCK)
            used_tree.append(ordinal - node.ordinal)
            return block

        blocks = node.blocks
        i_block = pointers(0, min(blocks, DIRECT)) + [0] * max(0, DIRECT - blocks)
        first = DIRECT
        for depth in (1, 2, 3):
            if first >= blocks:
                i_block.append(0)
                continue
            count = min(blocks - first, PTRS**depth)
            i_block.append(indirect(depth, first, count))
            first += count
        return i_block

    def _replace_bits(self, ordinal: int, region: bytes, count: int) -> None:
        """Set the block bitmap bits of data blocks ordinal .. ordinal+count-1 to `region`'s."""
        done = 0
        for block, length in self.geometry.runs(ordinal, count):
            group, offset = divmod(block, PER_GROUP)
            at = self.geometry.block_bitmap(group) * BLOCK
            value = int.from_bytes(os.pread(self._fd, BLOCK, at), "little")
            mask = ((1 << length) - 1) << offset
            value = (value & ~mask) | (_bits(region, done, length) << offset)
            pwrite_all(self._fd, memoryview(value.to_bytes(BLOCK, "little")), at)
            done += length

    def _write_inode(self, node: _Node, i_block: List[int], allocated: int) -> None:
        uid, gid = node.owner
        now = self._now
        raw = struct.pack(
            "<HHIIIIIHHII",
            node.mode,
            uid & 0xFFFF,
            node.size & 0xFFFFFFFF,
            now,
            now,
            now,
            0,
            gid & 0xFFFF,
            node.links,
            allocated * (BLOCK // 512),
            0,
        )
        raw += struct.pack("<I15IIIII", 0, *i_block, 0, 0, node.size >> 32, 0)
        raw += struct.pack("<HHHHHH", 0, 0, uid >> 16, gid >> 16, 0, 0)
        raw += struct.pack("<HHIIIIIII", EXTRA_ISIZE, 0, 0, 0, 0, now, 0, 0, 0)
        group, index = divmod(node.ino - 1, self.geometry.inodes_per_group)
        at = self.geometry.inode_table(group) * BLOCK + index * INODE_SIZE
        pwrite_all(self._fd, memoryview(raw.ljust(INODE_SIZE, b"\0")), at)

    def finish(self, sync: bool = True) -> None:
        """Write directories, small files, bitmaps, descriptors and superblocks; every volume must
        have been committed."""
        missing = [n.path for n in self._volumes.values() if not n.committed]
        if missing:
            raise MoverError(f"ext2 image {self.path}: volume(s) {', '.join(missing)} were not written")
        for node in self._nodes:
            if node.content is not None:
                padded = node.content.ljust(node.blocks * BLOCK, b"\0")
                done = 0
                for block, length in self.geometry.runs(node.ordinal + node.tree, node.blocks):
                    pwrite_all(self._fd, memoryview(padded)[done : done + length * BLOCK], block * BLOCK)
                    done += length * BLOCK
                self.commit(node, None)
        geo = self.geometry
        used_inodes = len(self._nodes) + LOST_FOUND_INO - 2  # inodes 1 .. the last one given
        descriptors = bytearray()
        free_blocks = free_inodes = 0
        for group in range(geo.groups):
            free = self._finish_block_bitmap(group)
            in_group = min(max(used_inodes - group * geo.inodes_per_group, 0), geo.inodes_per_group)
            bitmap = bytearray(BLOCK)
            _set_bits(bitmap, 0, in_group)
            _set_bits(bitmap, geo.inodes_per_group, PER_GROUP - geo.inodes_per_group)  # padding: in use
            pwrite_all(self._fd, memoryview(bytes(bitmap)), (geo.block_bitmap(group) + 1) * BLOCK)
            dirs = sum(1 for n in self._nodes if n.mode & S_IFDIR and (n.ino - 1) // geo.inodes_per_group == group)
            free_in_group = geo.inodes_per_group - in_group
            descriptors += struct.pack(
                "<IIIHHH",
                geo.block_bitmap(group),
                geo.block_bitmap(group) + 1,
                geo.inode_table(group),
                free,
                free_in_group,
                dirs,
            ).ljust(32, b"\0")
            free_blocks += free
            free_inodes += free_in_group
        for group in (g for g in range(geo.groups) if _has_super(g)):
            start = group * PER_GROUP * BLOCK
            superblock = self._superblock(group, free_blocks, free_inodes)
            pwrite_all(self._fd, memoryview(superblock), start + (1024 if group == 0 else 0))
            pwrite_all(self._fd, memoryview(bytes(descriptors)), start + BLOCK)
        if sync:
            os.fsync(self._fd)
        self.close()

    def _finish_block_bitmap(self, group: int) -> int:
        """Mark the group's own blocks and the padding past the end in use; return its free blocks."""
        geo = self.geometry
        at = geo.block_bitmap(group) * BLOCK
        bitmap = bytearray(os.pread(self._fd, BLOCK, at))
        blocks = geo.group_blocks(group)
        _set_bits(bitmap, 0, geo.meta(group))
        _set_bits(bitmap, blocks, PER_GROUP - blocks)
        pwrite_all(self._fd, memoryview(bytes(bitmap)), at)
        return blocks - (_popcount(bitmap, PER_GROUP) - (PER_GROUP - blocks))

    def _superblock(self, group: int, free_blocks: int, free_inodes: int) -> bytes:
        geo, now = self.geometry, self._now
        raw = bytearray(1024)
        struct.pack_into(
            "<13I",
            raw,
            0,
            geo.inodes_per_group * geo.groups,
            geo.blocks,
            0,
            free_blocks,
            free_inodes,
            0,
            2,
            2,
            PER_GROUP,
            PER_GROUP,
            geo.inodes_per_group,
            0,
            now,
        )
        struct.pack_into("<HhHHHH", raw, 52, 0, -1, 0xEF53, 1, 1, 0)  # mounts, no forced check, magic, clean
        struct.pack_into("<IIIIHHIHH", raw, 64, now, 0, 0, 1, 0, 0, LOST_FOUND_INO, INODE_SIZE, group)
        struct.pack_into("<III", raw, 92, 0, INCOMPAT_FILETYPE, RO_COMPAT_SPARSE_SUPER_LARGE_FILE)
        raw[104:120] = self._uuid
        raw[120:136] = (self.label or "").encode().ljust(16, b"\0")
        struct.pack_into("<I", raw, 264, now)
        struct.pack_into("<HH", raw, 348, EXTRA_ISIZE, EXTRA_ISIZE)
        return bytes(raw)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _popcount(bits: bytes, count: int) -> int:
    return bin(int.from_bytes(bits, "little") & ((1 << count) - 1)).count("1")


class VolumeWriter(BlockWriter):
    """Writes one volume's non-zero blocks at their place in the image; closing commits the file when
    it has the size the plan gave it (a wrong size is reported by the caller's size check)."""

    def __init__(self, image: Ext2Image, node: _Node) -> None:
        super().__init__()
        self._image, self._node = image, node
        self._present = bytearray((node.blocks + 7) // 8 + 1)
        self._writeback = WriteBack(image._fd)

    def _pwrite(self, view: memoryview, at: int) -> None:
        node = self._node
        if at + len(view) > node.size:
            raise VolumeError(
                node.path, f"decompresses to more than the {node.size:,} bytes image-metadata.json gives", False
            )
        first, count, done = at // BLOCK, -(-len(view) // BLOCK), 0
        for block, length in self._image.geometry.runs(node.ordinal + node.tree + first, count):
            run = view[done : done + length * BLOCK]
            pwrite_all(self._image._fd, run, block * BLOCK)
            self._writeback.wrote(block * BLOCK, len(run))
            done += length * BLOCK
        _set_bits(self._present, first, count)
        self.written += len(view)

    def _finish(self, sync: bool) -> None:
        if self.size == self._node.size:
            self._image.commit(self._node, bytes(self._present))
