"""The mover's network parts against real servers: presigned URLs on a local HTTP server (with a
connection that breaks mid-volume), and the S3 API of moto through the mover's own SigV4 client."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from datamover.codec import inflate_module
from datamover.convert import Settings, convert_volume
from datamover.manifest import parse_manifest
from datamover.moverconfig import PresignedMultipart, PutTarget, S3Target
from datamover.progress import Progress
from datamover.s3 import S3Client, S3Credentials
from datamover.sources import MissingObject, S3Source, UrlSource
from datamover.upload import Uploader
from tests.support.datamover import MoverObjects, ObjectServer
from tests.support.volumes import dasd_volume, synthetic_volume

pytestmark = pytest.mark.integration


def _convert(source: Any, objects: MoverObjects, out: Path) -> Any:
    manifest = parse_manifest(source.fetch("image-metadata.json"))
    vol = manifest.volumes[0]
    progress = Progress()
    progress.add_volume(vol.name, source.size(vol.file_name), vol.size)
    settings = Settings(inflate_module()[1], retries=0, retry_delay=0)
    return convert_volume(vol, "data", source, str(out), progress, threading.Event(), settings)


def test_presigned_urls_survive_a_broken_connection(
    mover_objects: MoverObjects, object_server: ObjectServer, tmp_path: Path
) -> None:
    raw = synthetic_volume(tmp_path / "syn.raw", 2 << 20, seed=5, random_share=0.6)
    entry = mover_objects.add("SYN001", raw)
    urls = object_server.serve_dir(mover_objects.write())
    object_server.state.drop_after[f"/objects/{entry['file-name']}"] = 300_000  # mid-object

    result = _convert(UrlSource(urls), mover_objects, tmp_path / "SYN001")

    assert result.state == "succeeded" and result.attempts == 1, result.error
    assert (tmp_path / "SYN001").read_bytes() == raw.read_bytes()
    assert result.checks["sha256"] == "verified"


def test_missing_objects_are_named_and_urls_never_show_their_signature(object_server: ObjectServer) -> None:
    source = UrlSource({"devmap": f"{object_server.url}/objects/devmap?X-Amz-Signature=topsecret"})
    with pytest.raises(MissingObject) as err:
        source.size("devmap")
    assert "object devmap not found" in str(err.value) and "topsecret" not in str(err.value)
    with pytest.raises(MissingObject, match=r"object VOL1\.gz: the mover configuration has no URL for it"):
        source.open("VOL1.gz")


def _creds(s3_bucket: Any) -> S3Credentials:
    return S3Credentials(s3_bucket.endpoint, s3_bucket.region, s3_bucket.bucket, s3_bucket.access_key_id,
                         s3_bucket.secret_access_key)


def _boto(s3_bucket: Any) -> Any:
    import ibm_boto3
    from ibm_botocore.client import Config

    return ibm_boto3.client(
        "s3", endpoint_url=s3_bucket.endpoint, region_name=s3_bucket.region,
        aws_access_key_id=s3_bucket.access_key_id, aws_secret_access_key=s3_bucket.secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def test_s3_source_reads_with_hmac_credentials(s3_bucket: Any, mover_objects: MoverObjects, tmp_path: Path) -> None:
    mover_objects.add("ZRES01", dasd_volume(tmp_path / "z.ckd", "ZRES01"))
    boto = _boto(s3_bucket)
    for path in mover_objects.write().iterdir():
        boto.put_object(Bucket=s3_bucket.bucket, Key=f"zos25-dev/{path.name}", Body=path.read_bytes())
    source = S3Source(S3Client(_creds(s3_bucket)), "zos25-dev/")

    result = _convert(source, mover_objects, tmp_path / "ZRES01")

    assert result.state == "succeeded", result.error
    assert (tmp_path / "ZRES01").read_bytes() == mover_objects.raw["ZRES01"].read_bytes()
    with pytest.raises(MissingObject, match=r"object nothing\.gz not found at s3://.*/zos25-dev/nothing\.gz"):
        source.size("nothing.gz")


@pytest.mark.parametrize(
    ("method", "key", "query", "headers", "payload"),
    [
        ("GET", "zos25-dev/MN25S2 2023.gz", {}, {"Range": "bytes=100-"}, "UNSIGNED-PAYLOAD"),
        ("PUT", "zos25-dev.qcow2", {"partNumber": "7", "uploadId": "a/b+c=="}, {}, "UNSIGNED-PAYLOAD"),
        ("POST", "k", {"uploads": ""}, {"Content-Length": "0"}, hashlib.sha256(b"").hexdigest()),
    ],
)
def test_sigv4_signature_matches_the_sdk(method: str, key: str, query: dict, headers: dict, payload: str) -> None:
    """moto accepts any signature, so the signer is held against ibm-cos-sdk's own SigV4 (path style)."""
    import datetime
    import urllib.parse

    from ibm_botocore.auth import S3SigV4Auth
    from ibm_botocore.awsrequest import AWSRequest
    from ibm_botocore.client import Config
    from ibm_botocore.credentials import Credentials

    creds = S3Credentials("https://s3.jp-tok.example.com", "jp-tok", "wazi-bucket", "AKIDEXAMPLE", "s3cr3t/key+x")
    path = "/wazi-bucket/" + urllib.parse.quote(key, safe="/-_.~")
    url = f"https://s3.jp-tok.example.com{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    request.context["client_config"] = Config(s3={"payload_signing_enabled": payload != "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials("AKIDEXAMPLE", "s3cr3t/key+x"), "s3", "jp-tok").add_auth(request)
    when = datetime.datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.UTC)

    _, signed = S3Client(creds)._signed(method, key, query, headers, payload, now=when)

    assert signed["authorization"] == request.headers["Authorization"]


@pytest.fixture
def qcow2_like(tmp_path: Path) -> Path:
    path = tmp_path / "image.qcow2"
    path.write_bytes(os.urandom(11 << 20) + b"end")  # three 5 MiB parts, the last one short
    return path


def _stored(boto: Any, bucket: str, key: str) -> bytes:
    return boto.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_s3_multipart_upload_in_parallel_parts(s3_bucket: Any, qcow2_like: Path) -> None:
    uploader = Uploader(S3Client(_creds(s3_bucket)))

    info = uploader.upload_file(str(qcow2_like), S3Target("out/zos25-dev.qcow2", 5 << 20, 3), "zos25-dev.qcow2")

    assert info["parts"] == 3 and info["bytes"] == qcow2_like.stat().st_size
    boto = _boto(s3_bucket)
    assert _stored(boto, s3_bucket.bucket, "out/zos25-dev.qcow2") == qcow2_like.read_bytes()
    assert not boto.list_multipart_uploads(Bucket=s3_bucket.bucket).get("Uploads")
    uploader.put_bytes(S3Target("out/report.json"), b'{"status": "succeeded"}', "application/json", "report")
    head = boto.head_object(Bucket=s3_bucket.bucket, Key="out/report.json")
    assert head["ContentType"] == "application/json"


def test_presigned_multipart_and_put_uploads(s3_bucket: Any, qcow2_like: Path) -> None:
    """What the orchestrator does: it creates the upload and presigns; the mover holds no key."""
    boto = _boto(s3_bucket)
    bucket, key = s3_bucket.bucket, "zos25-dev.qcow2"
    upload_id = boto.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = [
        boto.generate_presigned_url("upload_part", Params={"Bucket": bucket, "Key": key, "UploadId": upload_id,
                                                           "PartNumber": n}, ExpiresIn=3600)
        for n in range(1, 6)  # more URLs than needed: the qcow2's size is not known in advance
    ]
    complete = boto.generate_presigned_url("complete_multipart_upload", HttpMethod="POST", ExpiresIn=3600,
                                           Params={"Bucket": bucket, "Key": key, "UploadId": upload_id})
    uploader = Uploader(None)

    info = uploader.upload_file(str(qcow2_like), PresignedMultipart(5 << 20, tuple(parts), complete), key)

    assert info["parts"] == 3
    assert _stored(boto, bucket, key) == qcow2_like.read_bytes()
    put = boto.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "single.qcow2"}, ExpiresIn=60)
    uploader.upload_file(str(qcow2_like), PutTarget(put), "single.qcow2")
    assert hashlib.sha256(_stored(boto, bucket, "single.qcow2")).digest() == hashlib.sha256(
        qcow2_like.read_bytes()).digest()


def test_presigned_multipart_with_too_few_urls_says_so(qcow2_like: Path) -> None:
    spec = PresignedMultipart(5 << 20, ("http://127.0.0.1:9/p1",), "http://127.0.0.1:9/c")
    with pytest.raises(Exception, match=r"need 3 parts of 5242880 bytes, the mover configuration presigned 1"):
        Uploader(None).upload_file(str(qcow2_like), spec, "zos25-dev.qcow2")


def test_accelerator_wheels_are_verified_then_importable(
    object_server: ObjectServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in wheel (pure Python, re-exporting zlib) proves fetch, sha256 check and import."""
    import io
    import sys
    import zipfile

    from datamover.accel import Wheel, load_wheels
    from datamover.codec import inflate_module

    body = io.BytesIO()
    with zipfile.ZipFile(body, "w") as wheel:
        wheel.writestr("zlib_ng/__init__.py", "")
        wheel.writestr("zlib_ng/zlib_ng.py", "from zlib import *\nfrom zlib import error\n")
    data = body.getvalue()
    object_server.state.objects["/wheels/zlib_ng.whl"] = data
    url = f"{object_server.url}/wheels/zlib_ng.whl?X-Amz-Signature=s"
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("zlib_ng", "zlib_ng.zlib_ng"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setenv("ZIMAGE_INFLATE", "zlib-ng")  # isal, preferred, may be installed here

    notes = load_wheels((Wheel("bad.whl", url, "0" * 64),), str(tmp_path))
    assert notes[0].startswith("bad.whl: not used: sha256 is ")
    assert not (tmp_path / "accelerators").exists()

    notes = load_wheels((Wheel("zlib_ng.whl", url, hashlib.sha256(data).hexdigest()),), str(tmp_path))
    assert notes == ["zlib_ng.whl: loaded"]
    name, module = inflate_module()
    assert name == "zlib-ng" and module.__file__.startswith(str(tmp_path))
