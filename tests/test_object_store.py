"""ObjectStore behaviour, the same for COS (moto through ibm-cos-sdk) and the local directory;
presigned URLs used the way the data mover uses them (plain urllib, or files for file:// URLs)."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from infra.object_store import (
    MAX_PRESIGN_SECONDS,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    put_auxiliary,
)
from infra.transfer import MiB
from zimage import objects

IMAGE = "zos25-dev"
PART = 5 * MiB


@pytest.fixture(params=["cos", "local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "cos":
        return request.getfixturevalue("cos_store")
    return LocalObjectStore(tmp_path / "objects")


# --- what the data mover does with a URL ------------------------------------------------------


def _file(url: str) -> Path:
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


def fetch(url: str) -> bytes:
    if url.startswith("file://"):
        return _file(url).read_bytes()
    with urllib.request.urlopen(url, timeout=30) as answer:
        return answer.read()


def send(url: str, method: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """PUT/POST/DELETE through a URL; returns the ETag header (the MD5 for file:// writes)."""
    if url.startswith("file://"):
        target = _file(url)
        temp = target.with_name(f".{target.name}.part")
        temp.write_bytes(data)
        temp.replace(target)
        return hashlib.md5(data).hexdigest()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()
        return (answer.headers.get("ETag") or "").strip('"')


# --- small objects ------------------------------------------------------------------------------


def test_put_get_head_round_trip(store: ObjectStore) -> None:
    info = store.put_bytes("a/b.json", b'{"x": 1}', "application/json", {"origin": "test"})
    assert info.sha256 == hashlib.sha256(b'{"x": 1}').hexdigest()
    head = store.head("a/b.json")
    assert head is not None
    assert (head.size, head.content_type, head.sha256) == (8, "application/json", info.sha256)
    assert head.metadata["origin"] == "test"
    assert store.get_bytes("a/b.json") == b'{"x": 1}'


def test_missing_objects(store: ObjectStore) -> None:
    assert store.head("no/such") is None
    with pytest.raises(ObjectNotFound, match="no/such") as caught:
        store.get_bytes("no/such")
    assert caught.value.code == "NoSuchKey"
    assert caught.value.operation == "get"
    store.delete("no/such")  # no error, as in S3


def test_copy_keeps_content_type_and_metadata_and_goes_in_parts_when_large(store: ObjectStore) -> None:
    data = os.urandom(3 * PART) + b"tail"  # past the managed copy's multipart threshold (8 MiB)
    info = store.put_bytes("img/builds/b1/img.qcow2", data, objects.OCTETS, {"origin": "test"})
    copied = store.copy_object("img/builds/b1/img.qcow2", "img.qcow2")
    assert (copied.size, copied.content_type, copied.sha256) == (len(data), objects.OCTETS, info.sha256)
    assert copied.metadata["origin"] == "test"
    assert store.get_bytes("img.qcow2") == data and store.get_bytes("img/builds/b1/img.qcow2") == data
    with pytest.raises(ObjectNotFound, match="no/such"):
        store.copy_object("no/such", "img2.qcow2")
    assert store.head("img2.qcow2") is None


def test_list_and_delete(store: ObjectStore) -> None:
    for key in ("img/b", "img/a", "imgx/c", "other/d"):
        store.put_bytes(key, key.encode())
    assert [e.key for e in store.list("img/")] == ["img/a", "img/b"]
    assert [(e.key, e.size) for e in store.list("img")] == [("img/a", 5), ("img/b", 5), ("imgx/c", 6)]
    store.delete("img/a")
    assert [e.key for e in store.list("img/")] == ["img/b"]
    assert store.head("img/a") is None


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../b", "../up", "./a", "a/."])
def test_bad_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="object key"):
        store.put_bytes(key, b"x")


def test_metadata_names_are_checked(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="metadata name"):
        store.put_bytes("a", b"x", metadata={"Bad Name": "v"})
    with pytest.raises(ValueError, match="printable ASCII"):
        store.put_bytes("a", b"x", metadata={"note": "caf\u00e9"})


def test_auxiliary_objects_carry_their_content_types_and_are_skipped_when_unchanged(store: ObjectStore) -> None:
    document = objects.IMAGE_METADATA
    metadata = b'{"image": {"name": "zos25-dev"}, "volumes": []}\n'
    assert put_auxiliary(store, IMAGE, document, metadata)
    head = store.head(f"{IMAGE}/image-metadata.json")
    assert head is not None and head.content_type == "application/json"
    assert not put_auxiliary(store, IMAGE, document, metadata)  # same digest: skipped
    assert put_auxiliary(store, IMAGE, document, metadata + b" ")  # changed: stored
    assert put_auxiliary(store, IMAGE, objects.DEVMAP, b"[system]\nmemory 16g\n")
    devmap = store.head(f"{IMAGE}/devmap")
    assert devmap is not None and devmap.content_type.startswith("text/plain")
    assert put_auxiliary(store, IMAGE, objects.PROPERTIES, b"{}")
    assert put_auxiliary(store, IMAGE, objects.ENV_OVERRIDES, b"A=1\n")
    assert [e.key for e in store.list(f"{IMAGE}/")] == [
        f"{IMAGE}/devmap",
        f"{IMAGE}/env-overrides",
        f"{IMAGE}/image-metadata.json",
        f"{IMAGE}/properties.json",
    ]


def test_an_object_stored_with_a_wrong_content_type_is_replaced(store: ObjectStore) -> None:
    data = b'{"volumes": []}'
    store.put_bytes(objects.metadata_key(IMAGE), data, "binary/octet-stream")
    assert put_auxiliary(store, IMAGE, objects.IMAGE_METADATA, data)
    head = store.head(objects.metadata_key(IMAGE))
    assert head is not None and head.content_type == "application/json"


# --- presigned URLs -------------------------------------------------------------------------------


def test_presigned_get_and_put(store: ObjectStore) -> None:
    store.put_bytes("img/devmap", b"devmap content")
    assert fetch(store.presign_get("img/devmap", 600)) == b"devmap content"
    send(store.presign_put("img/report.json", 600), "PUT", b'{"ok": true}', "application/json")
    assert store.get_bytes("img/report.json") == b'{"ok": true}'


def test_presign_lifetime_is_bounded(store: ObjectStore) -> None:
    store.presign_get("a", MAX_PRESIGN_SECONDS)
    for bad in (0, MAX_PRESIGN_SECONDS + 1):
        with pytest.raises(ValueError, match="7 days"):
            store.presign_get("a", bad)


def _complete_document(etags: list[str]) -> bytes:
    parts = "".join(f'<Part><PartNumber>{n}</PartNumber><ETag>"{e}"</ETag></Part>' for n, e in enumerate(etags, 1))
    return f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()


def test_presigned_multipart_upload_as_the_mover_does_it(store: ObjectStore) -> None:
    key = objects.qcow2_key(IMAGE, "b1a2b3c4")
    upload_id = store.create_multipart(key, "application/octet-stream", {"sha256": "3" * 64})
    chunks = [os.urandom(PART), os.urandom(1234)]
    etags = [send(store.presign_part(key, upload_id, n, 3600), "PUT", c) for n, c in enumerate(chunks, 1)]
    assert etags == [hashlib.md5(c).hexdigest() for c in chunks]
    assert [p.number for p in store.list_parts(key, upload_id)] == [1, 2]
    send(store.presign_complete(key, upload_id, 3600), "POST", _complete_document(etags), "application/xml")
    assert store.get_bytes(key) == b"".join(chunks)
    head = store.head(key)
    assert head is not None and head.sha256 == "3" * 64
    assert store.pending_uploads(key) == []


def test_orchestrator_completes_parts_uploaded_through_urls(store: ObjectStore) -> None:
    key = objects.qcow2_key(IMAGE, "b1a2b3c4")
    upload_id = store.create_multipart(key, "application/octet-stream", {})
    chunks = [os.urandom(PART), b"tail"]
    for n, chunk in enumerate(chunks, 1):
        send(store.presign_part(key, upload_id, n, 3600), "PUT", chunk)
    info = store.complete_multipart(key, upload_id)
    assert info.size == PART + 4
    assert store.get_bytes(key) == b"".join(chunks)


def test_completing_twice_is_harmless(store: ObjectStore) -> None:
    key = "img/x.bin"
    upload_id = store.create_multipart(key, "application/octet-stream", {})
    etag = send(store.presign_part(key, upload_id, 1, 3600), "PUT", b"only part")
    send(store.presign_complete(key, upload_id, 3600), "POST", _complete_document([etag]), "application/xml")
    if isinstance(store, LocalObjectStore):
        store.head(key)  # the local store settles the document on the next look
    info = store.complete_multipart(key, upload_id)
    assert info.size == len(b"only part")


def test_presigned_abort(store: ObjectStore) -> None:
    key = "img/aborted.bin"
    upload_id = store.create_multipart(key, "application/octet-stream", {})
    send(store.presign_part(key, upload_id, 1, 3600), "PUT", b"part")
    send(store.presign_abort(key, upload_id, 3600), "DELETE", b"")
    assert store.pending_uploads(key) == []
    assert store.head(key) is None


def test_complete_with_a_wrong_etag_is_refused(store: ObjectStore) -> None:
    key = "img/y.bin"
    upload_id = store.create_multipart(key, "application/octet-stream", {})
    send(store.presign_part(key, upload_id, 1, 3600), "PUT", b"data")
    with pytest.raises(ObjectStoreError, match="InvalidPart") as caught:
        store.complete_multipart(key, upload_id, [type(store.list_parts(key, upload_id)[0])(1, 4, "0" * 32)])
    assert key in str(caught.value)
    assert store.head(key) is None


# --- the local store's own promises -------------------------------------------------------------


def test_local_store_keeps_metadata_in_a_sidecar_and_no_temporary_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("img/a.json", b"{}", "application/json")
    sidecar = json.loads((tmp_path / ".meta" / "img" / "a.json.json").read_text())
    assert sidecar["content_type"] == "application/json"
    assert sidecar["metadata"]["sha256"] == hashlib.sha256(b"{}").hexdigest()
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert store.local_path("img/a.json") == tmp_path / "img" / "a.json"
    assert [e.key for e in store.list()] == ["img/a.json"]


def test_local_store_reserves_its_own_directories(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        store.put_bytes(".meta/x", b"x")


def test_local_object_rewritten_through_a_file_url_loses_its_stale_digest(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("img/r", b"first")
    send(store.presign_put("img/r", 60), "PUT", b"second, longer")
    head = store.head("img/r")
    assert head is not None and head.sha256 is None and head.size == len(b"second, longer")


def test_local_object_rewritten_with_the_same_size_loses_its_stale_digest(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put_bytes("img/r", b"first")
    os.utime(tmp_path / "img" / "r", ns=(1, 1))  # as if rewritten in place at another time
    head = store.head("img/r")
    assert head is not None and head.sha256 is None


def test_local_malformed_complete_document_is_reported_once_and_the_upload_stays(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    upload_id = store.create_multipart("img/q", "application/octet-stream", {})
    send(store.presign_part("img/q", upload_id, 1, 60), "PUT", b"data")
    send(store.presign_complete("img/q", upload_id, 60), "POST", b"<not xml")
    with pytest.raises(ObjectStoreError, match="MalformedXML"):
        store.head("img/q")
    assert store.head("img/q") is None
    assert [u.upload_id for u in store.pending_uploads("img/q")] == [upload_id]


def test_a_failed_copy_to_the_root_says_the_image_is_published(tmp_path: Path) -> None:
    from tasks.publish import copy_qcow2_to_root

    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(ObjectNotFound) as caught:
        copy_qcow2_to_root.fn(store, IMAGE, "b1234567")  # no qcow2 for that build
    message = str(caught.value)
    assert f"{IMAGE}/builds/b1234567/{IMAGE}.qcow2" in message and "NoSuchKey" in message
    assert f"custom image {IMAGE} and its snapshot are published and kept" in message
    assert store.head(f"{IMAGE}.qcow2") is None
