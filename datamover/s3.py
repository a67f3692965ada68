"""S3 API (IBM COS, AWS, moto) with HMAC credentials: Signature V4 in the standard library.

Path-style addressing, payloads sent as UNSIGNED-PAYLOAD (the transport is TLS) except the small
XML bodies, which are hashed.
"""

import datetime
import hashlib
import hmac
import http.client
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional
from xml.sax.saxutils import escape

from datamover import http as web

UNSIGNED = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str  # e.g. https://s3.jp-tok.cloud-object-storage.appdomain.cloud
    region: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never show the secret
        return f"S3Credentials(endpoint={self.endpoint!r}, bucket={self.bucket!r})"


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="-_.~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class S3Client:
    def __init__(self, creds: S3Credentials) -> None:
        self.creds = creds
        parts = urllib.parse.urlsplit(creds.endpoint.rstrip("/"))
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc
        self._root = parts.path

    def _signed(
        self,
        method: str,
        key: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        payload_hash: str,
        now: Optional[datetime.datetime] = None,
    ) -> tuple[str, dict[str, str]]:
        """(url, headers) of a request signed with AWS Signature Version 4."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        scope = f"{amz_date[:8]}/{self.creds.region}/s3/aws4_request"
        path = f"{self._root}/{self.creds.bucket}/{key}" if key else f"{self._root}/{self.creds.bucket}"
        uri = urllib.parse.quote(path, safe="/-_.~")
        canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
        all_headers = {k.lower(): str(v).strip() for k, v in headers.items()}
        all_headers.update({"host": self._host, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
        names = sorted(all_headers)
        canonical = "\n".join(
            [
                method,
                uri,
                canonical_query,
                "".join(f"{n}:{all_headers[n]}\n" for n in names),
                ";".join(names),
                payload_hash,
            ]
        )
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signing_key = b"AWS4" + self.creds.secret_access_key.encode()
        for part in (amz_date[:8], self.creds.region, "s3", "aws4_request"):
            signing_key = _hmac(signing_key, part)
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        all_headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.creds.access_key_id}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        del all_headers["host"]  # http.client sends it
        url = self._base + uri + (f"?{canonical_query}" if canonical_query else "")
        return url, all_headers

    def open(
        self,
        method: str,
        key: str,
        query: Optional[Mapping[str, str]] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: web.Body = None,
        payload_hash: str = UNSIGNED,
    ) -> http.client.HTTPResponse:
        url, signed = self._signed(method, key, query or {}, headers or {}, payload_hash)
        return web.request(method, url, signed, body)

    def call(
        self,
        method: str,
        key: str,
        what: str,
        query: Optional[Mapping[str, str]] = None,
        body: bytes = b"",
        ok: tuple[int, ...] = (200,),
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """A small request, signed anew at each try, retried on transient failures."""

        def once() -> tuple[http.client.HTTPResponse, bytes]:
            headers = {"Content-Length": str(len(body))} if method in ("PUT", "POST") else {}
            resp = self.open(method, key, query, headers, body or None, hashlib.sha256(body).hexdigest())
            web.expect(resp, what, ok)
            data = resp.read()
            resp.close()
            return resp, data

        return web.retry(what, 4, once)

    def where(self, key: str) -> str:
        return f"s3://{self.creds.bucket}/{key}"

    def size(self, key: str) -> int:
        resp, _ = self.call("HEAD", key, f"object {self.where(key)}")
        return int(resp.getheader("Content-Length") or 0)

    def get(self, key: str, offset: int = 0) -> http.client.HTTPResponse:
        resp = self.open("GET", key, headers=web.range_header(offset))
        web.expect(resp, f"object {self.where(key)}", (206,) if offset else (200,))
        return resp

    def put(self, key: str, data: bytes, content_type: str) -> None:
        def once() -> None:
            headers = {"Content-Length": str(len(data)), "Content-Type": content_type}
            resp = self.open("PUT", key, None, headers, data, hashlib.sha256(data).hexdigest())
            web.expect(resp, f"upload {self.where(key)}")
            resp.read()
            resp.close()

        web.retry(f"upload {self.where(key)}", 4, once)

    def create_multipart(self, key: str) -> str:
        _, data = self.call("POST", key, f"create multipart upload {self.where(key)}", {"uploads": ""})
        match = re.search(rb"<UploadId>([^<]+)</UploadId>", data)
        if not match:
            raise web.HttpError(f"create multipart upload {self.where(key)}: no UploadId in the answer")
        return match.group(1).decode()

    def part_url(self, key: str, upload_id: str, number: int) -> tuple[str, dict[str, str]]:
        return self._signed("PUT", key, {"partNumber": str(number), "uploadId": upload_id}, {}, UNSIGNED)

    def complete_multipart(self, key: str, upload_id: str, etags: list[str]) -> None:
        _, data = self.call(
            "POST", key, f"complete multipart upload {self.where(key)}", {"uploadId": upload_id},
            complete_body(etags),
        )
        check_complete_answer(data, self.where(key))

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self.call("DELETE", key, f"abort multipart upload {self.where(key)}", {"uploadId": upload_id},
                  ok=(200, 204))


def complete_body(etags: list[str]) -> bytes:
    parts = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(tag)}</ETag></Part>"
        for n, tag in enumerate(etags, start=1)
    )
    return f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()


def check_complete_answer(data: bytes, where: str) -> None:
    """S3 may answer 200 and still report an error in the body of CompleteMultipartUpload."""
    if b"<Error>" in data:
        raise web.HttpError(f"complete multipart upload {where}: {data[:300].decode('utf-8', 'replace')}")
