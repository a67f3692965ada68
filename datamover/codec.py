"""Streaming gunzip in bounded memory (and gzip for exports), with the fastest zlib implementation available.

zlib-ng and ISA-L inflate long runs of zeros (most of a volume) several times faster than zlib;
both are drop-in zlib APIs. ZIMAGE_INFLATE / ZIMAGE_DEFLATE=zlib|isal|zlib-ng force a choice (benchmarks, tests).
"""

import importlib
import os
import zlib
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any, Optional

GZIP_WBITS = 31  # zlib checks the gzip header, CRC-32 and length trailer itself
_MAGIC = b"\x1f\x8b"
_CANDIDATES = (("zlib-ng", "zlib_ng.zlib_ng"), ("isal", "isal.isal_zlib"), ("zlib", "zlib"))


class GzipError(Exception):
    """The compressed stream is damaged: bad header, CRC, length, truncation or trailing data."""


def _pick(wanted: Optional[str]) -> tuple[str, ModuleType]:
    for name, module in _CANDIDATES:
        if wanted and wanted != name:
            continue
        try:
            return name, importlib.import_module(module)
        except ImportError:
            if wanted:
                raise
    return "zlib", zlib


def inflate_module() -> tuple[str, ModuleType]:
    """(name, zlib-compatible module) of the inflate implementation to use."""
    return _pick(os.environ.get("ZIMAGE_INFLATE"))


def deflate_module() -> tuple[str, ModuleType]:
    """The same choice to compress with (ISA-L and zlib-ng deflate several times faster than zlib
    at level 1); ZIMAGE_DEFLATE forces one."""
    return _pick(os.environ.get("ZIMAGE_DEFLATE"))


def gzip_compressor(zmod: ModuleType) -> "Any":
    """A compressobj writing one gzip member at level 1 (fast; volumes are mostly zeros)."""
    return zmod.compressobj(1, zmod.DEFLATED, GZIP_WBITS)


def gunzip(chunks: Iterable[bytes], zmod: ModuleType, out_max: int) -> Iterator[bytes]:
    """Decompress a (possibly multi-member) gzip stream into chunks of at most out_max bytes.

    A member that ends early, a corrupt member or bytes after a member that are neither zeros nor
    another member raise GzipError; zero padding after a member is accepted, as gzip(1) does.
    """
    inflater = zmod.decompressobj(GZIP_WBITS)
    started = False  # a member has begun (its header bytes were fed)
    try:
        for data in chunks:
            while data:
                if started and inflater.eof:
                    # what follows a member: zero padding, or the next member
                    data = data.lstrip(b"\0")
                    if not data:
                        break
                    if not _MAGIC.startswith(data[:2]):
                        raise GzipError("the bytes after the end of the gzip stream are not gzip")
                    inflater = zmod.decompressobj(GZIP_WBITS)
                started = True
                while True:
                    out = inflater.decompress(data, out_max)
                    if out:
                        yield out
                    if inflater.eof:
                        data = inflater.unused_data
                        break
                    data = inflater.unconsumed_tail
                    # output may still be pending inside the inflater when out_max was reached
                    if not data and len(out) < out_max:
                        break
    except zmod.error as exc:
        raise GzipError(f"corrupt gzip data: {exc}") from exc
    if not started:
        raise GzipError("empty object: no gzip stream")
    if not inflater.eof:
        raise GzipError("gzip stream is truncated")


def passthrough(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """For volumes stored uncompressed."""
    for data in chunks:
        if data:
            yield data
