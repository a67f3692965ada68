"""S3 server for tests: moto's ThreadedMotoServer on 127.0.0.1 at a free port, used through
ibm-cos-sdk with HMAC-style credentials (DESIGN.md §13).

Fixtures: `s3_server` (session: the endpoint URL), `s3_bucket` (a fresh bucket per test, with its
credentials), `cos_store` (an `infra.cos.CosStore` on that bucket).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "jp-tok"


@dataclass(frozen=True)
class S3Bucket:
    endpoint: str
    bucket: str
    region: str
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict[str, str]:
        """The environment variables a config's target.cos names by default."""
        return {
            "COS_HMAC_ACCESS_KEY_ID": self.access_key_id,
            "COS_HMAC_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def cos_config(self) -> dict[str, Any]:
        """A `target.cos` section pointing at this bucket."""
        return {"instance_name": "cos-test", "bucket": self.bucket, "region": self.region, "endpoint": self.endpoint}

    def client(self) -> Any:
        """A plain ibm_boto3 client, for looking at the bucket from the outside."""
        from infra.cos import HmacCredentials, make_client
        from infra.secrets import Secret

        creds = HmacCredentials(Secret(self.access_key_id, "test"), Secret(self.secret_access_key, "test"))
        return make_client(self.endpoint, self.region, creds)

    def pending_uploads(self) -> list[dict[str, Any]]:
        return list(self.client().list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str) -> S3Bucket:
    bucket = S3Bucket(
        endpoint=s3_server,
        bucket=f"zimage-test-{uuid.uuid4().hex[:12]}",
        region=REGION,
        access_key_id=secrets.token_hex(16),
        secret_access_key=secrets.token_hex(24),
    )
    bucket.client().create_bucket(Bucket=bucket.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return bucket


@pytest.fixture
def cos_store(s3_bucket: S3Bucket) -> Any:
    from infra.cos import CosStore, HmacCredentials, make_client
    from infra.secrets import Secret

    creds = HmacCredentials(Secret(s3_bucket.access_key_id, "test"), Secret(s3_bucket.secret_access_key, "test"))
    return CosStore(make_client(s3_bucket.endpoint, s3_bucket.region, creds), s3_bucket.bucket)
