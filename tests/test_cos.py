"""The COS adapter itself: clients from the config's credentials, error mapping, no secrets in logs."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest

from infra.cos import (
    ClientSettings,
    CosStore,
    HmacCredentials,
    IamCredentials,
    hmac_from_config,
    make_client,
    open_object_store,
)
from infra.object_store import LocalObjectStore, ObjectNotFound, ObjectStoreError
from infra.secrets import Secret, SecretMissing
from tests.support.s3 import S3Bucket
from zimage.config import Cos


def _cos(bucket: S3Bucket, **extra: Any) -> Cos:
    return Cos(**{**bucket.cos_config(), **extra})


def test_connect_from_the_config_with_hmac_keys_from_the_environment(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_bucket.env().items():
        monkeypatch.setenv(name, value)
    store = open_object_store(_cos(s3_bucket))
    assert isinstance(store, CosStore)
    store.put_bytes("x/y", b"hello")
    assert store.get_bytes("x/y") == b"hello"
    assert store.describe("x/y") == f"cos://{s3_bucket.bucket}/x/y"


def test_endpoint_override_wins_over_the_config(s3_bucket: S3Bucket) -> None:
    creds = HmacCredentials(Secret(s3_bucket.access_key_id, "t"), Secret(s3_bucket.secret_access_key, "t"))
    cos = Cos(instance_name="cos", bucket=s3_bucket.bucket, region=s3_bucket.region)  # direct endpoint
    store = CosStore.connect(cos, creds, endpoint=s3_bucket.endpoint)
    assert store.head("nothing") is None


def test_missing_hmac_variables_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COS_HMAC_ACCESS_KEY_ID", raising=False)
    cos = Cos(instance_name="cos", bucket="bucket-a", region="jp-tok")
    with pytest.raises(SecretMissing, match="COS_HMAC_ACCESS_KEY_ID"):
        hmac_from_config(cos)


def test_local_directory_in_the_config_gives_the_local_store(tmp_path: Path) -> None:
    cos = Cos(instance_name="cos", bucket="bucket-a", region="jp-tok", local_directory=str(tmp_path))
    assert isinstance(open_object_store(cos), LocalObjectStore)


def test_errors_name_operation_bucket_key_and_code(s3_bucket: S3Bucket) -> None:
    creds = HmacCredentials(Secret(s3_bucket.access_key_id, "t"), Secret(s3_bucket.secret_access_key, "t"))
    store = CosStore(make_client(s3_bucket.endpoint, s3_bucket.region, creds), "no-such-bucket-here")
    with pytest.raises(ObjectStoreError) as caught:
        store.put_bytes("img/devmap", b"x")
    error = caught.value
    assert error.code == "NoSuchBucket"
    assert error.operation == "put"
    assert "cos://no-such-bucket-here/img/devmap" in str(error)


def test_missing_key_is_object_not_found(cos_store: CosStore) -> None:
    with pytest.raises(ObjectNotFound, match="NoSuchKey"):
        cos_store.get_bytes("img/missing")


def test_unreachable_endpoint_is_reported_after_the_client_retries() -> None:
    creds = HmacCredentials(Secret("a" * 32, "t"), Secret("b" * 48, "t"))
    settings = ClientSettings(max_attempts=2, connect_timeout_s=1, read_timeout_s=1)
    store = CosStore(make_client("http://127.0.0.1:9", "jp-tok", creds, settings), "bucket-a")
    with pytest.raises(ObjectStoreError, match="head cos://bucket-a/k: EndpointConnectionError"):
        store.head("k")


def test_iam_credentials_cannot_presign(s3_bucket: S3Bucket) -> None:
    creds = IamCredentials(Secret("not-a-real-key", "t"), "crn:v1:bluemix:public:cloud-object-storage:global:a/1::")
    cos = Cos(instance_name="cos", bucket=s3_bucket.bucket, region=s3_bucket.region)
    store = CosStore.connect(cos, creds, endpoint=s3_bucket.endpoint)
    assert creds.token_url == "https://iam.cloud.ibm.com/identity/token"
    with pytest.raises(ObjectStoreError, match="need HMAC credentials"):
        store.presign_get("k", 60)


def test_secrets_never_reach_the_logs(
    s3_bucket: S3Bucket, cos_store: CosStore, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "f"
    path.write_bytes(b"z" * 100)
    cos_store.upload_file("a/f", path, hashlib.sha256(b"z" * 100).hexdigest())
    cos_store.presign_get("a/f", 60)
    with pytest.raises(ObjectStoreError):
        CosStore(cos_store.client, "no-such-bucket-here").put_bytes("k", b"x")
    text = caplog.text
    assert caplog.records  # the copy logged something
    assert s3_bucket.secret_access_key not in text
    creds = HmacCredentials(Secret(s3_bucket.access_key_id, "t"), Secret(s3_bucket.secret_access_key, "t"))
    assert s3_bucket.secret_access_key not in repr(creds)
