"""The data mover's parts on their own: gunzip, sparse writing, VOL1 labels, manifest and mover
configuration validation, the zipapp."""

from __future__ import annotations

import base64
import dataclasses
import errno
import gzip
import importlib.util
import json
import os
import re
import struct
import subprocess
import threading
import zlib
from pathlib import Path

import pytest

from datamover import ckd
from datamover.codec import GzipError, gunzip, inflate_module
from datamover.convert import Settings, convert_volume
from datamover.errors import MoverError
from datamover.manifest import parse_manifest
from datamover.moverconfig import SCHEMA, PresignedMultipart, PutTarget, S3Target, parse_config
from datamover.package import build_zipapp, minify
from datamover.progress import Progress
from datamover.rewrite import member_jobs
from datamover.sink import BlockWriter, SparseWriter
from datamover.sources import LocalSource
from tests.support.datamover import MoverObjects, e2fsck_clean, run_datamover
from tests.support.volumes import dasd_volume, synthetic_volume

INFLATERS = [n for n, m in (("zlib", "zlib"), ("isal", "isal"), ("zlib-ng", "zlib_ng")) if importlib.util.find_spec(m)]


@pytest.fixture(params=INFLATERS)
def zmod(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ZIMAGE_INFLATE", request.param)
    name, module = inflate_module()
    assert name == request.param
    return module


def _chunks(data: bytes, size: int = 1000) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _gunzip(data: bytes, zmod, out_max: int = 1 << 16) -> bytes:
    return b"".join(gunzip(_chunks(data), zmod, out_max))


# --- gunzip ---


def test_gunzip_bounds_every_output_chunk_even_for_zeros(zmod) -> None:
    raw = bytes(8 << 20) + os.urandom(1000) + bytes(3 << 20)
    outs = list(gunzip(_chunks(gzip.compress(raw), 1 << 20), zmod, 1 << 16))
    assert max(len(o) for o in outs) <= 1 << 16
    assert b"".join(outs) == raw


def test_gunzip_reads_multi_member_streams_and_zero_padding(zmod) -> None:
    data = gzip.compress(b"first ") + gzip.compress(b"second") + bytes(700)
    assert _gunzip(data, zmod) == b"first second"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda g: g[:-9], "truncated"),
        (lambda g: g[:-8] + bytes([g[-8] ^ 1]) + g[-7:], "corrupt gzip data"),  # CRC-32
        (lambda g: g[:-1] + bytes([g[-1] ^ 1]), "corrupt gzip data"),  # ISIZE
        (lambda g: b"PK" + g[2:], "corrupt gzip data"),  # not gzip at all
        (lambda g: g + b"\0\0garbage", "the bytes after the end of the gzip stream are not gzip"),
        (lambda g: b"", "empty object"),
    ],
    ids=["truncated", "crc", "length", "magic", "trailing-garbage", "empty"],
)
def test_gunzip_rejects_damaged_streams(zmod, damage, message: str) -> None:
    good = gzip.compress(os.urandom(5000) + bytes(100000))
    with pytest.raises(GzipError, match=message):
        _gunzip(damage(good), zmod)


# --- sparse writing ---


def test_sparse_writer_keeps_zero_blocks_as_holes_whatever_the_chunking(tmp_path: Path) -> None:
    raw = bytes(1 << 20) + b"x" * 5000 + bytes(3 << 20) + b"tail" + bytes(10)
    path = tmp_path / "vol"
    writer = SparseWriter(str(path))
    for piece in _chunks(raw, 77777):  # never block aligned
        writer.write(piece)
    writer.close()
    assert path.read_bytes() == raw
    assert writer.size == len(raw) and writer.written == 2 * 4096 + len(raw) % 4096  # 2 blocks + the tail
    assert os.stat(path).st_blocks * 512 <= 64 * 1024  # the holes take no space


def test_sparse_writer_truncates_an_earlier_attempt(tmp_path: Path) -> None:
    path = tmp_path / "vol"
    path.write_bytes(b"\xff" * 100000)
    writer = SparseWriter(str(path))
    writer.write(bytes(50000))
    writer.close()
    assert path.read_bytes() == bytes(50000)


# --- VOL1 labels of CKD images ---


class _FailingWriter(BlockWriter):
    def _pwrite(self, view: memoryview, at: int) -> None:
        raise OSError(5, "Input/output error: the disk went away")

    def _finish(self, sync: bool) -> None:
        raise AssertionError("a failed volume is not finished")


@pytest.mark.parametrize("pipelined", [True, False], ids=["threads", "inline"])
def test_a_volume_converts_alike_on_threads_or_inline(
    pipelined: bool, mover_objects: MoverObjects, tmp_path: Path
) -> None:
    raw = dasd_volume(tmp_path / "work01.ckd", "WORK01")
    with raw.open("r+b") as handle:  # data past the label, not a multiple of the chunk sizes
        handle.seek(700_000)
        handle.write(os.urandom(3 * 1024 * 1024 + 4321))
    mover_objects.add("WORK01", raw)
    objects = mover_objects.write()
    vol = parse_manifest((objects / "image-metadata.json").read_bytes()).volumes[0]
    settings = Settings(zlib, retries=0, retry_delay=0)
    source, progress = LocalSource(str(objects)), Progress()
    progress.add_volume(vol.name, source.size(vol.file_name), vol.size)
    threads = threading.active_count()

    done = convert_volume(vol, "data", source, str(tmp_path / "WORK01"), progress, threading.Event(), settings,
                          pipelined)

    assert done.state == "succeeded", done.error
    assert (tmp_path / "WORK01").read_bytes() == raw.read_bytes()
    assert done.checks["sha256"] == "verified" and done.gz_sha256 is None  # the volume's sha256 proves the bytes
    assert done.written < done.bytes == raw.stat().st_size  # zero blocks left as holes

    failed = convert_volume(vol, "data", source, _FailingWriter, progress, threading.Event(), settings, pipelined)

    assert failed.state == "failed"
    assert failed.error == "volume WORK01: [Errno 5] Input/output error: the disk went away"
    assert failed.retryable  # unlike a full disk or bad bytes, an I/O error may pass on a later run
    assert threading.active_count() == threads  # no reader or sink thread left behind


@pytest.mark.parametrize("pipelined", [True, False], ids=["threads", "inline"])
def test_without_the_volumes_sha256_the_compressed_bytes_are_checked(
    pipelined: bool, mover_objects: MoverObjects, tmp_path: Path
) -> None:
    entry = mover_objects.add("WORK01", dasd_volume(tmp_path / "work01.ckd", "WORK01"))
    del entry["sha256"]
    good = entry["gz-sha256"]
    objects = mover_objects.write()
    vol = parse_manifest((objects / "image-metadata.json").read_bytes()).volumes[0]
    source, progress = LocalSource(str(objects)), Progress()
    progress.add_volume(vol.name, source.size(vol.file_name), vol.size)
    convert = lambda v: convert_volume(  # noqa: E731
        v, "data", source, str(tmp_path / "WORK01"), progress, threading.Event(), Settings(zlib, 0, 0), pipelined
    )

    done = convert(vol)
    assert done.state == "succeeded" and done.gz_sha256 == good and done.checks["gz-sha256"] == "verified"
    assert done.checks["sha256"].startswith("skipped")

    failed = convert(dataclasses.replace(vol, gz_sha256="0" * 64))
    assert failed.state == "failed" and f"gz-sha256 is {good}, image-metadata.json says {'0' * 64}" in failed.error


def test_volumes_enough_for_the_cpus_convert_inline_and_the_tail_on_threads() -> None:
    from datamover.engine import pipelines

    mb = 1 << 20
    # four equal volumes, 2 CPUs, 3 workers: the first three inline, the last one on threads
    assert [pipelines(256 * mb, 2, 4, w, 1024 * mb) for w in (3, 2, 1)] == [False, False, False]
    assert pipelines(256 * mb, 2, 3, 0, 768 * mb)
    # one volume far larger than the rest would end last on one CPU
    assert pipelines(1900 * mb, 2, 3, 2, 2284 * mb) and not pipelines(256 * mb, 2, 3, 1, 2284 * mb)
    # fewer volumes than CPUs: all on threads
    assert pipelines(10 * mb, 8, 3, 2, 30 * mb)


def test_the_host_mover_says_which_errors_another_try_may_pass() -> None:
    from datamover.errors import VolumeError
    from datamover.host import HostError, retryable
    from datamover.sftp import SftpError

    assert not retryable(HostError("owner 'x' does not exist on this host (no such user)"))
    assert retryable(HostError("relay: the stream ended 10 bytes early", retryable=True))
    assert not retryable(OSError(errno.ENOSPC, "No space left on device"))
    assert not retryable(OSError(errno.EACCES, "Permission denied"))
    assert retryable(OSError(errno.ECONNRESET, "Connection reset by peer"))
    assert retryable(SftpError("storage: connection lost"))
    assert not retryable(MoverError("volumes[0].volser 'bad' is not a VOLSER"))
    assert not retryable(VolumeError("WORK01", "sha256 is x, image-metadata.json says y", False))


def test_vol1_label_of_a_real_dasdinit_volume(tmp_path: Path) -> None:
    head = dasd_volume(tmp_path / "v.ckd", "ZR$#@1").read_bytes()[: ckd.HEAD_BYTES]
    assert head[:8] == b"CKD_P370"
    heads, track = struct.unpack_from("<II", head, 8)
    assert (heads, track) == (15, 56832)
    assert ckd.check_label(head, "ZR$#@1") == (True, "VOL1 label ZR$#@1 verified")
    ok, note = ckd.check_label(head, "OTHER1")
    assert not ok and note == "VOL1 label names 'ZR$#@1', manifest names 'OTHER1'"


def test_vol1_label_absent_or_not_checkable(tmp_path: Path) -> None:
    raw = dasd_volume(tmp_path / "r.ckd", "RAW001").read_bytes()[: ckd.HEAD_BYTES]
    no_label = bytearray(raw)
    no_label[0x2D5 + 5 : 0x2D5 + 5 + 4] = "IPL3".encode("cp037")  # the key of record 3 is not VOL1
    assert ckd.check_label(bytes(no_label), "RAW001")[0] is False
    assert ckd.check_label(raw[:600], "RAW001")[0] is False  # the first track is cut short
    assert ckd.check_label(b"CKD_C370" + raw[8:], "RAW001") == (
        True, "CKD_C370 image (compressed CKD): label not checked")
    assert ckd.check_label(b"\0" * 1024, "RAW001") == (True, "not a CKD_P370 image: label not checked")


# --- image-metadata.json ---


def _manifest(**volume: object) -> bytes:
    entry = {"name": "MN25S2", "file-name": "MN25S2_2023-06-13_18_44_13.gz", **volume}
    return json.dumps({"image": {"name": "zos25-dev", "size": 1, "boot-size": 1}, "volumes": [entry]}).encode()


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"file-name": "../MN25S2.gz"}, r"volume MN25S2: volumes\[0\]\.file-name: '\.\./MN25S2\.gz' is not a safe"),
        ({"file-name": "a/b.gz"}, "is not a safe file name"),
        ({"file-name": ".."}, "is not a safe file name"),
        ({"name": "../X"}, r"volumes\[0\]\.name: '\.\./X' is not a VOLSER"),
        ({"name": "TOOLONG1"}, "is not a VOLSER"),
        ({"sha256": "abc"}, r"volumes\[0\]\.sha256: 'abc' is not a sha256"),
        ({"compression": "bzip2"}, "compression: 'bzip2' is not one of gzip, none"),
        ({"size": -1}, "size: -1 is not a non-negative integer"),
        ({"devnum": "A80"}, "devnum: 'A80' is not 4 hex digits"),
    ],
)
def test_manifest_errors_name_the_field(volume: dict, message: str) -> None:
    with pytest.raises(MoverError, match=message):
        parse_manifest(_manifest(**volume))


def test_manifest_rejects_a_traversing_image_name_and_duplicates() -> None:
    doc = json.loads(_manifest())
    doc["image"]["name"] = "../etc"
    with pytest.raises(MoverError, match=r"image\.name: '\.\./etc' is not a safe image name"):
        parse_manifest(json.dumps(doc).encode())
    doc = json.loads(_manifest())
    doc["volumes"].append(dict(doc["volumes"][0], **{"file-name": "other.gz"}))
    with pytest.raises(MoverError, match=r"volumes\[1\]\.name: 'MN25S2' appears twice"):
        parse_manifest(json.dumps(doc).encode())


def test_manifest_of_the_reference_builder_has_only_names() -> None:
    vol = parse_manifest(_manifest()).volumes[0]
    assert (vol.compression, vol.boot, vol.sha256, vol.size) == ("gzip", False, None, None)


# --- mover configuration ---


def _config(**changes: object) -> dict:
    doc = {
        "schema": SCHEMA,
        "image": "zos25-dev",
        "layout": "boot-split",
        "objects": {"type": "urls", "urls": {"image-metadata.json": "https://cos.example/b/i?X-Amz-Signature=1"}},
        "qcow2": {"type": "multipart", "part_size": 8 << 20, "part_urls": ["https://cos.example/q?partNumber=1"],
                  "complete_url": "https://cos.example/q?uploadId=1"},
        "progress": {"type": "put", "url": "https://cos.example/progress.json?sig"},
        "report": {"type": "put", "url": "https://cos.example/report.json?sig", "headers": {"x-amz-acl": "private"}},
        "attachments": {"data": "zimage-data", "boot": "zimage-boot", "scratch": "zimage-qcow2"},
    }
    doc.update(changes)
    return doc


def test_mover_configuration_forms() -> None:
    config = parse_config(json.dumps(_config()).encode())
    assert isinstance(config.qcow2, PresignedMultipart) and config.qcow2.concurrency == 4
    assert config.report == PutTarget("https://cos.example/report.json?sig", {"x-amz-acl": "private"})
    s3 = {"endpoint": "https://s3.jp-tok.example", "region": "jp-tok", "bucket": "b",
          "access_key_id": "AK", "secret_access_key": "very-secret"}
    config = parse_config(json.dumps(_config(
        s3=s3, objects={"type": "s3", "prefix": "zos25-dev/"}, qcow2={"type": "s3", "key": "zos25-dev.qcow2"},
        report={"type": "s3", "key": "zos25-dev/report.json"}, jobs=4)).encode())
    assert config.objects == "zos25-dev/" and config.qcow2 == S3Target("zos25-dev.qcow2", None, 4)
    assert "very-secret" not in repr(config)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown key"),
        ({"schema": "other"}, "schema: expected"),
        ({"layout": "flat"}, "layout: 'flat' is not one of"),
        ({"qcow2": {"type": "s3", "key": "x.qcow2"}}, "s3: missing"),
        ({"objects": {"type": "urls", "urls": {"../x": "https://h/x"}}}, r"objects\.urls\['\.\./x'\]"),
        ({"objects": {"type": "urls", "urls": {"x": "file:///etc/passwd"}}}, "not an http"),
        ({"qcow2": {"type": "multipart", "part_size": 1024, "part_urls": ["https://h/p"],
                    "complete_url": "https://h/c"}}, "part_size: at least"),
        ({"attachments": {"data": "Data", "boot": "b", "scratch": "s"}}, "attachments.data: 'Data' is not a VPC"),
        ({"jobs": 0}, "jobs: must be positive"),
    ],
)
def test_mover_configuration_errors_name_the_field(changes: dict, message: str) -> None:
    with pytest.raises(MoverError, match=message):
        parse_config(json.dumps(_config(**changes)).encode())


# --- the zipapp ---


def test_zipapp_is_small_deterministic_and_strips_only_comments_and_docstrings() -> None:
    # built twice (not the process's cached copy): the same sources give the same bytes
    first, second = build_zipapp.__wrapped__(mode="vsi"), build_zipapp.__wrapped__(mode="vsi")
    assert first == second == build_zipapp(mode="vsi")
    # user data <= 64 KiB holds the zipapp in base64, the cloud-init wrapper and one presigned URL;
    # each mode's zipapp holds only what its run imports
    assert len(build_zipapp(mode="export")) < 40 * 1024 < len(build_zipapp())
    assert len(first) < 44 * 1024 and len(base64.b64encode(first)) + 4096 < 64 * 1024
    source = (
        'def f():\n    """doc"""\n    x = """a\n\n  b"""  # note\n    return x\n'
        'class E(Exception):\n    """only"""\n'
    )
    stripped = minify(source)
    assert "doc" not in stripped and "note" not in stripped and '"""a\n\n  b"""' in stripped
    namespace: dict = {}
    exec(compile(stripped, "s", "exec"), namespace)
    assert namespace["f"]() == "a\n\n  b" and issubclass(namespace["E"], Exception)


def _python310() -> str | None:
    for candidate in ("/usr/bin/python3.10", os.path.expanduser("~/.pyenv/versions/3.10.13/bin/python3.10")):
        if os.path.exists(candidate):
            return candidate
    return None


@pytest.mark.integration
def test_zipapp_converts_on_python_3_10(mover_objects: MoverObjects, tmp_path: Path) -> None:
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 here (the mover VSI's Ubuntu 22.04 Python)")
    zipapp = tmp_path / "mover.pyz"
    zipapp.write_bytes(build_zipapp())
    mover_objects.add("ZRES01", dasd_volume(tmp_path / "z.ckd", "ZRES01"))
    mover_objects.add("SYN001", synthetic_volume(tmp_path / "s.raw", 1 << 20, seed=3), devnum="0A81")
    out = tmp_path / "out"
    done = run_datamover("local", "--objects", str(mover_objects.write()), "--out", str(out),
                         python=python, zipapp=zipapp)
    assert done.returncode == 0, done.stderr
    e2fsck_clean(out / "zos25-dev-data.img")
    assert json.loads((out / "report.json").read_text())["status"] == "succeeded"


def test_inflate_module_names_a_forced_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIMAGE_INFLATE", "zlib")
    assert inflate_module() == ("zlib", zlib)


def test_space_check_names_the_volume_that_cannot_fit(tmp_path: Path) -> None:
    from datamover.engine import Inputs, check_space

    manifest = parse_manifest(_manifest(size=1 << 60))
    inputs = Inputs(manifest, b"", None, {"MN25S2": "data"})
    with pytest.raises(MoverError, match=r"the data volume has [\d,]+ bytes free, its volumes need "
                                         r"1,152,921,504,606,846,976 \(MN25S2\)"):
        check_space(inputs, {"data": str(tmp_path)})
    check_space(Inputs(parse_manifest(_manifest(size=1)), b"", None, {"MN25S2": "data"}), {"data": str(tmp_path)})


@pytest.mark.parametrize("mode", [None, "vsi", "export", "lookup"])
def test_every_module_of_each_zipapp_imports_on_python_3_8(mode: str | None, tmp_path: Path) -> None:
    python = next(iter(sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))), None)
    if python is None:
        pytest.skip("no Python 3.8 here (the oldest a storage server or emulator host may run)")
    zipapp = tmp_path / "mover.pyz"
    zipapp.write_bytes(build_zipapp(mode=mode))
    probe = (
        "import importlib, sys, zipfile\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "for name in zipfile.ZipFile(sys.argv[1]).namelist():\n"
        "    if name.startswith('datamover/'):\n"
        "        importlib.import_module('datamover.' + name[len('datamover/'):-3])\n"
        "print('ok')\n"
    )
    done = subprocess.run([str(python), "-c", probe, str(zipapp)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr


# --- member rewrites in the mover configuration and the deploy job ---


def _rewrite(**changes: object) -> dict[str, object]:
    return {"volser": "MN25S2", "dsn": "sys1.parmlib", "member": "ieasym00",
            "records": [base64.b64encode(b"\x40" * 80).decode()], **changes}  # fmt: skip


def test_member_jobs_are_checked_whole_before_anything_is_written() -> None:
    (job,) = member_jobs([_rewrite()], "rewrites")
    assert (job.volser, job.dsn, job.member, job.records) == ("MN25S2", "SYS1.PARMLIB", "IEASYM00", (b"\x40" * 80,))
    assert member_jobs(None, "rewrites") == []
    bad = {
        "expected a list": {"volser": "X"},
        "rewrites[0]: expected an object with exactly volser, dsn, member and records": [{"volser": "MN25S2"}],
        "rewrites[0].records: expected a non-empty list of base64 strings": [_rewrite(records=[])],
        "rewrites[0].records: not base64": [_rewrite(records=["not base64!"])],
        "rewrites[0]: 'SYS1..PARMLIB' is not a data set name": [_rewrite(dsn="SYS1..PARMLIB")],
        "rewrites[0]: '9BAD' is not a member name": [_rewrite(member="9BAD")],
        "rewrites[0].volser: 'mn25s2x' is not a VOLSER": [_rewrite(volser="mn25s2x")],
        "rewrites[0]: dsn and member must be strings": [_rewrite(member=1)],
    }
    for message, value in bad.items():
        with pytest.raises(MoverError, match=re.escape(message)):
            member_jobs(value, "rewrites")


def test_the_mover_configuration_carries_rewrites_as_a_list() -> None:
    assert parse_config(json.dumps(_config(rewrites=[_rewrite()])).encode()).rewrites == [_rewrite()]
    with pytest.raises(MoverError, match="rewrites: dict is the wrong type"):
        parse_config(json.dumps(_config(rewrites={})).encode())
