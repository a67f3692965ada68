"""IBM Cloud Object Storage (ibm-cos-sdk) as an `ObjectStore`.

Credentials: an HMAC key pair (needed for presigned URLs; signature version s3v4) or an IAM API
key with the COS instance id. The endpoint is the bucket's direct endpoint from the config, or
any S3-compatible URL (the tests' moto server). Every client error becomes an `ObjectStoreError`
naming the operation, bucket, key and error code; transient errors are retried by the client
(standard retry mode, `max_attempts`) and an interrupted copy is resumed by the transfer manager.
Secrets only ever leave their `Secret` wrapper to be handed to the SDK.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import ibm_boto3
from ibm_botocore.config import Config as ClientConfig
from ibm_botocore.exceptions import BotoCoreError, ClientError

from infra.object_store import (
    LocalObjectStore,
    ObjectEntry,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    check_expiry,
    check_key,
    check_metadata,
    check_part_number,
    sha256_metadata,
)
from infra.secrets import Secret, resolve, resolve_json
from infra.transfer import PartInfo, PendingUpload, content_md5
from zimage import objects
from zimage.config import Cos

log = logging.getLogger(__name__)

T = TypeVar("T")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class HmacCredentials:
    access_key_id: Secret
    secret_access_key: Secret


@dataclass(frozen=True)
class IamCredentials:
    api_key: Secret
    service_instance_id: str  # the COS instance's CRN or GUID
    iam_endpoint: str = "https://iam.cloud.ibm.com"

    @property
    def token_url(self) -> str:
        base = self.iam_endpoint.rstrip("/")
        return base if base.endswith("/identity/token") else f"{base}/identity/token"


Credentials = HmacCredentials | IamCredentials


@dataclass(frozen=True)
class ClientSettings:
    max_attempts: int = 8
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 300.0
    max_pool_connections: int = 32


def hmac_from_config(cos: Cos) -> HmacCredentials:
    """The HMAC key pair the config names: a Prefect Secret block holding
    {access_key_id, secret_access_key}, else the two environment variables."""
    if cos.hmac_block:
        pair = resolve_json(cos.hmac_block, "COS HMAC key")
        missing = [k for k in ("access_key_id", "secret_access_key") if not pair.get(k)]
        if missing:
            raise ValueError(f"Prefect Secret block {cos.hmac_block!r}: missing {', '.join(missing)}")
        origin = f"Prefect Secret block {cos.hmac_block!r}"
        return HmacCredentials(Secret(pair["access_key_id"], origin), Secret(pair["secret_access_key"], origin))
    return HmacCredentials(
        resolve(env=cos.hmac_access_key_id_env, what="COS HMAC access key id"),
        resolve(env=cos.hmac_secret_access_key_env, what="COS HMAC secret access key"),
    )


def make_client(endpoint: str, region: str, credentials: Credentials, settings: ClientSettings | None = None) -> Any:
    """An ibm_boto3 S3 client; HMAC keys sign with s3v4 (presigning works), an API key with IAM tokens."""
    settings = settings or ClientSettings()
    common: dict[str, Any] = {
        "retries": {"max_attempts": settings.max_attempts, "mode": "standard"},
        "connect_timeout": settings.connect_timeout_s,
        "read_timeout": settings.read_timeout_s,
        "max_pool_connections": settings.max_pool_connections,
        # parts carry Content-MD5; no aws-chunked trailing checksums, which COS does not take
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
        "s3": {"addressing_style": "path"},
    }
    session = ibm_boto3.session.Session()
    if isinstance(credentials, HmacCredentials):
        return session.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=credentials.access_key_id.reveal(),
            aws_secret_access_key=credentials.secret_access_key.reveal(),
            config=ClientConfig(signature_version="s3v4", **common),
        )
    return session.client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        ibm_api_key_id=credentials.api_key.reveal(),
        ibm_service_instance_id=credentials.service_instance_id,
        ibm_auth_endpoint=credentials.token_url,
        config=ClientConfig(signature_version="oauth", **common),
    )


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


class CosStore(ObjectStore):
    """One bucket through an ibm_boto3 client."""

    def __init__(self, client: Any, bucket: str, *, can_presign: bool = True):
        self.client = client
        self.bucket = bucket
        self.can_presign = can_presign

    @classmethod
    def connect(
        cls,
        cos: Cos,
        credentials: Credentials | None = None,
        endpoint: str | None = None,
        settings: ClientSettings | None = None,
    ) -> CosStore:
        """The configured bucket; HMAC credentials from the config unless given; `endpoint`
        overrides the config's (tests)."""
        creds = credentials or hmac_from_config(cos)
        client = make_client(endpoint or cos.direct_endpoint, cos.region, creds, settings)
        return cls(client, cos.bucket, can_presign=isinstance(creds, HmacCredentials))

    def describe(self, key: str = "") -> str:
        return f"cos://{self.bucket}/{key}"

    def _call(self, operation: str, key: str, call: Callable[..., T], **params: Any) -> T:
        try:
            return call(Bucket=self.bucket, **params)
        except ClientError as exc:
            code = _code(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            cls = ObjectNotFound if code in _NOT_FOUND else ObjectStoreError
            raise cls(operation, self.describe(key), code, message) from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(operation, self.describe(key), type(exc).__name__, str(exc)) from exc

    # --- objects ---

    def head(self, key: str) -> ObjectInfo | None:
        try:
            found = self._call("head", check_key(key), self.client.head_object, Key=key)
        except ObjectNotFound:
            return None
        return ObjectInfo(
            key,
            int(found["ContentLength"]),
            found.get("ContentType"),
            dict(found.get("Metadata") or {}),
            str(found.get("ETag", "")).strip('"') or None,
        )

    def put_bytes(
        self,
        key: str,
        data: bytes,
        content_type: str = objects.OCTETS,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        meta = sha256_metadata(data, metadata)
        found = self._call(
            "put",
            check_key(key),
            self.client.put_object,
            Key=key,
            Body=data,
            ContentType=content_type,
            Metadata=meta,
            ContentMD5=content_md5(hashlib.md5(data).digest()),
        )
        return ObjectInfo(key, len(data), content_type, meta, str(found.get("ETag", "")).strip('"') or None)

    def get_bytes(self, key: str) -> bytes:
        found = self._call("get", check_key(key), self.client.get_object, Key=key)
        try:
            return found["Body"].read()
        except BotoCoreError as exc:
            raise ObjectStoreError("get", self.describe(key), type(exc).__name__, str(exc)) from exc
        finally:
            found["Body"].close()

    def list(self, prefix: str = "") -> list[ObjectEntry]:
        entries: list[ObjectEntry] = []
        token: dict[str, str] = {}
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, Prefix=prefix, **token)
            entries.extend(ObjectEntry(o["Key"], int(o["Size"])) for o in page.get("Contents", []))
            if not page.get("IsTruncated"):
                return sorted(entries, key=lambda e: e.key)
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete(self, key: str) -> None:
        self._call("delete", check_key(key), self.client.delete_object, Key=key)

    def copy_object(self, source: str, key: str) -> ObjectInfo:
        origin = self.head(check_key(source))
        if origin is None:
            raise ObjectNotFound("copy", self.describe(source), "NoSuchKey")
        # the managed copy goes in UploadPartCopy parts past its threshold (one CopyObject stops at 5 GB);
        # parts take no metadata from the source, so it is given again
        extra = {"ContentType": origin.content_type or objects.OCTETS, "Metadata": dict(origin.metadata)}
        self._call("copy", check_key(key), self.client.copy,
                   CopySource={"Bucket": self.bucket, "Key": source}, Key=key, ExtraArgs=extra)
        found = self.head(key)
        if found is None:
            raise ObjectStoreError("copy", self.describe(key), "Missing", f"no object after the copy of {source}")
        return found

    # --- multipart ---

    def create_multipart(self, key: str, content_type: str, metadata: Mapping[str, str]) -> str:
        found = self._call(
            "create multipart upload",
            check_key(key),
            self.client.create_multipart_upload,
            Key=key,
            ContentType=content_type,
            Metadata=check_metadata(metadata),
        )
        return str(found["UploadId"])

    def pending_uploads(self, key: str) -> list[PendingUpload]:
        uploads: list[PendingUpload] = []
        markers: dict[str, str] = {}
        while True:
            page = self._call(
                "list multipart uploads", check_key(key), self.client.list_multipart_uploads, Prefix=key, **markers
            )
            uploads.extend(
                PendingUpload(key, u["UploadId"], u.get("Initiated"))
                for u in page.get("Uploads", [])
                if u["Key"] == key
            )
            if not page.get("IsTruncated"):
                return uploads
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo]:
        parts: list[PartInfo] = []
        marker: dict[str, int] = {}
        while True:
            page = self._call(
                "list parts", check_key(key), self.client.list_parts, Key=key, UploadId=upload_id, **marker
            )
            parts.extend(
                PartInfo(int(p["PartNumber"]), int(p["Size"]), str(p["ETag"]).strip('"')) for p in page.get("Parts", [])
            )
            if not page.get("IsTruncated"):
                return parts
            marker = {"PartNumberMarker": int(page["NextPartNumberMarker"])}

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes, md5: bytes) -> str:
        found = self._call(
            f"upload part {check_part_number(number)}",
            check_key(key),
            self.client.upload_part,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            ContentLength=len(data),
            ContentMD5=content_md5(md5),
        )
        return str(found["ETag"]).strip('"')

    def complete_multipart(self, key: str, upload_id: str, parts: list[PartInfo] | None = None) -> ObjectInfo:
        try:
            chosen = sorted(self.list_parts(key, upload_id) if parts is None else parts, key=lambda p: p.number)
            self._call(
                "complete multipart upload",
                check_key(key),
                self.client.complete_multipart_upload,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in chosen]
                },
            )
        except ObjectStoreError as exc:
            # the data mover may have completed it through its presigned URL already
            present = self.head(key) if exc.code == "NoSuchUpload" else None
            if present is None:
                raise
            return present
        info = self.head(key)
        if info is None:
            raise ObjectNotFound("complete multipart upload", self.describe(key), "NoSuchKey", "gone after completion")
        return info

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            abort = self.client.abort_multipart_upload
            self._call("abort multipart upload", check_key(key), abort, Key=key, UploadId=upload_id)
        except ObjectStoreError as exc:
            if exc.code != "NoSuchUpload":
                raise

    # --- presigned URLs ---

    def _presign(self, operation: str, method: str, expires_s: int, **params: Any) -> str:
        if not self.can_presign:
            raise ObjectStoreError(
                f"presign {operation}", self.describe(params.get("Key", "")), "NeedsHmac",
                "presigned URLs need HMAC credentials; IAM API keys cannot sign them",
            )
        check_expiry(expires_s)
        return str(
            self.client.generate_presigned_url(
                operation, Params={"Bucket": self.bucket, **params}, ExpiresIn=expires_s, HttpMethod=method
            )
        )

    def presign_get(self, key: str, expires_s: int) -> str:
        return self._presign("get_object", "GET", expires_s, Key=check_key(key))

    def presign_put(self, key: str, expires_s: int) -> str:
        return self._presign("put_object", "PUT", expires_s, Key=check_key(key))

    def presign_part(self, key: str, upload_id: str, part_number: int, expires_s: int) -> str:
        number = check_part_number(part_number)
        return self._presign("upload_part", "PUT", expires_s, Key=check_key(key), UploadId=upload_id, PartNumber=number)

    def presign_complete(self, key: str, upload_id: str, expires_s: int) -> str:
        return self._presign("complete_multipart_upload", "POST", expires_s, Key=check_key(key), UploadId=upload_id)

    def presign_abort(self, key: str, upload_id: str, expires_s: int) -> str:
        return self._presign("abort_multipart_upload", "DELETE", expires_s, Key=check_key(key), UploadId=upload_id)


def open_object_store(
    cos: Cos,
    credentials: Credentials | None = None,
    endpoint: str | None = None,
    settings: ClientSettings | None = None,
) -> ObjectStore:
    """The store the config names: a local directory (`cos.local_directory`, demo) or the COS bucket."""
    if cos.local_directory:
        return LocalObjectStore(cos.local_directory)
    return CosStore.connect(cos, credentials, endpoint, settings)
