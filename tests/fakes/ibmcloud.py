"""A stateful fake of the IBM Cloud APIs zimage uses, served over real HTTP on 127.0.0.1.

One base URL plays IAM (`/identity/token`, `/v1/policies`), the VPC API (`/v1/...`), Resource
Manager and Resource Controller (`/v2/...`) and the instance metadata service. Clients under test
use the real SDKs pointed at `fake.url`. Request bodies are checked with the ibm-vpc models;
resources get ids, CRNs and status that move on as clients poll them.

Test-side controls (Python, not HTTP): `inject()` error responses, `inject_delay()`, `stick()`
a kind in a state, `on_instance_created()` to emulate what runs on a new VSI, `requests` (every
request, secrets redacted), `resources()` and `leftovers()`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fakes.ibmcloud_platform import PlatformApi
from tests.fakes.ibmcloud_state import (
    Entry,
    FakeApiError,
    FaultRule,
    RecordedRequest,
    StickRule,
    Store,
    redact,
)
from tests.fakes.ibmcloud_vpc import Handler, Request, VpcApi

log = logging.getLogger(__name__)

# Kinds whose survivors after a test are leaks. Images and snapshots are the products; policies,
# resource groups and the COS instance are account set-up.
TEMPORARY_KINDS = (
    "instances",
    "floating_ips",
    "volumes",
    "subnets",
    "security_groups",
    "keys",
    "vpcs",
    "resource_keys",
    "reserved_ips",
)
PRODUCT_KINDS = ("images", "snapshots")
_TRUNCATE = "x-fake-truncate"  # internal: _serve cuts the body short
UNAUTHENTICATED = (re.compile(r"^/identity/token$"), re.compile(r"(^/_instances/[^/]+)?/(instance_identity|metadata)/"))


@dataclass(frozen=True)
class AttachmentView:
    name: str
    device_id: str
    volume_id: str
    volume_name: str
    capacity_gb: int


@dataclass(frozen=True)
class InstanceView:
    """What an instance-created hook receives: enough to act as the new VSI."""

    id: str
    name: str
    profile: str
    image: str
    user_data: str | None
    boot: AttachmentView
    volume_attachments: list[AttachmentView]
    metadata_url: str  # base URL of this instance's metadata service


@dataclass
class _Hooks:
    on_instance: list[Callable[[InstanceView], None]] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


def s3_object_checker(s3_client: Any) -> Callable[[str, str, str], bool]:
    """A `cos_object_exists` hook backed by a boto3/ibm_boto3 S3 client (e.g. on a moto server)."""

    def exists(region: str, bucket: str, key: str) -> bool:
        try:
            s3_client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:  # botocore ClientError: 404 / NoSuchBucket
            log.info("COS object %s/%s not readable: %s", bucket, key, exc)
            return False
        return True

    return exists


class FakeIbmCloud:
    def __init__(
        self,
        *,
        api_key: str = "fake-api-key-0123456789",
        region: str = "jp-tok",
        account_id: str = "0123456789abcdef0123456789abcdef",
        polls_to_ready: int = 1,
        polls_to_delete: int = 1,
        token_ttl: int = 3600,
        cos_object_exists: Callable[[str, str, str], bool] | None = None,
    ) -> None:
        self.api_key = api_key
        self.region = region
        self.account_id = account_id
        self.token_ttl = token_ttl
        self.cos_object_check = cos_object_exists
        self.url = ""
        self.metadata_instance_id: str | None = None
        self.store = Store(polls_to_ready, polls_to_delete)
        self.requests: list[RecordedRequest] = []
        self._faults: list[FaultRule] = []
        self._hooks = _Hooks()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.platform = PlatformApi(self)
        self.vpc = VpcApi(self)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            (method, re.compile(f"^{pattern}$"), handler)
            for method, pattern, handler in self.platform.routes() + self.vpc.routes()
        ]

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> FakeIbmCloud:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                try:
                    fake._serve(self)
                except (BrokenPipeError, ConnectionResetError):  # the client hung up (a killed run, a timeout)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:  # quiet: requests are recorded
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-ibmcloud", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeIbmCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def vpc_url(self) -> str:
        return f"{self.url}/v1"

    # ---------------------------------------------------------------- test controls
    def inject(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next `times` requests matching `method` ("*" = any) and the `path` regex with
        `status`. `after=True` handles the request first (the change happens, the client sees an
        error), as when a response is lost."""
        with self.store.lock:
            self._faults.append(FaultRule(method, re.compile(path), status, times, retry_after, after))

    def inject_delay(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next `times` matching requests for `seconds` before handling them."""
        with self.store.lock:
            self._faults.append(FaultRule(method, re.compile(path), 0, times, delay=seconds))

    def inject_truncated(self, method: str, path: str, *, times: int = 1) -> None:
        """Handle the next `times` matching requests, then answer with a body shorter than its
        Content-Length and close: the client sees a broken stream (requests' ChunkedEncodingError)."""
        with self.store.lock:
            self._faults.append(FaultRule(method, re.compile(path), 200, times, after=True, truncate=True))

    def stick(self, kind: str, status: str, name: str | None = None) -> None:
        """Keep resources of `kind` (whose name matches the `name` regex) in `status` for good."""
        with self.store.lock:
            self.store.stuck.append(StickRule(kind, status, re.compile(name) if name else None))

    def unstick(self) -> None:
        with self.store.lock:
            self.store.stuck.clear()

    def set_status(self, kind: str, rid: str, status: str) -> None:
        """Force a state, e.g. the emulated mover powering its instance off ("stopped")."""
        with self.store.lock:
            entry = self.store.get(kind, rid)
            entry.set_status(status)
            entry.ready_status = None

    def on_instance_created(self, hook: Callable[[InstanceView], None]) -> None:
        """Run `hook` in a thread for every instance created from now on; its exceptions are kept
        and raised by `check_hooks()`."""
        self._hooks.on_instance.append(hook)

    def join_hooks(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in list(self._hooks.threads):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                raise TimeoutError(f"instance hook {thread.name} still running after {timeout}s")

    def check_hooks(self) -> None:
        if self._hooks.errors:
            raise RuntimeError(f"an instance hook failed: {self._hooks.errors[0]!r}") from self._hooks.errors[0]

    def add_image_to_cos_authorization(self, cos_instance_guid: str | None = None) -> str:
        return self.platform.add_image_to_cos_authorization(cos_instance_guid)

    def expire_tokens(self) -> None:
        """Make every issued access token invalid (the server side of an expiry)."""
        self.platform.expire_tokens()

    @property
    def resource_groups(self) -> dict[str, str]:
        return dict(self.platform.resource_groups)

    def cos_instance(self, name: str = "cos-wazi") -> dict[str, Any]:
        return next(self.store.public(e) for e in self.store.entries("resource_instances") if e.res["name"] == name)

    # ---------------------------------------------------------------- inspection
    def resources(self, kind: str) -> list[dict[str, Any]]:
        """Every stored resource of `kind` (including those still deleting), as the API shows them."""
        return [self.store.public(e) for e in self.store.entries(kind) if not e.private.get("catalog")]

    def leftovers(self, products: bool = False) -> list[str]:
        """Temporary resources that still exist, as "kind name (id) status" lines (empty = clean);
        with `products`, the account's own custom images and snapshots too."""
        out = []
        for kind in TEMPORARY_KINDS + (PRODUCT_KINDS if products else ()):
            for e in self.store.entries(kind):
                if e.private.get("default") or e.private.get("catalog"):
                    continue  # a VPC's default security group goes with the VPC (which is listed)
                out.append(f"{kind} {e.res.get('name')} ({e.res['id']}) {e.status or ''}".rstrip())
        return out

    def lag_lists(self, seconds: float) -> None:
        """From now on a new resource shows in list results only `seconds` after its create."""
        with self.store.lock:
            self.store.list_lag, self.store.lag_from = seconds, time.monotonic()

    def recorded(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        pattern = re.compile(path) if path else None
        return [
            r
            for r in list(self.requests)
            if (method is None or r.method == method) and (pattern is None or pattern.search(r.path))
        ]

    # ---------------------------------------------------------------- context for the APIs
    def resource_group_ref(self, rid: str | None) -> dict[str, Any]:
        return self.platform.resource_group_ref(rid)

    def cos_object_exists(self, region: str, bucket: str, key: str) -> bool:
        return True if self.cos_object_check is None else self.cos_object_check(region, bucket, key)

    def instance_created(self, entry: Entry) -> None:
        self.metadata_instance_id = entry.res["id"]
        if not self._hooks.on_instance:
            return
        view = self._instance_view(entry)

        def run() -> None:
            for hook in self._hooks.on_instance:
                try:
                    hook(view)
                except BaseException as exc:
                    log.exception("instance hook for %s failed", view.name)
                    self._hooks.errors.append(exc)

        thread = threading.Thread(target=run, name=f"instance-hook-{view.name}", daemon=True)
        self._hooks.threads.append(thread)
        thread.start()

    def _instance_view(self, entry: Entry) -> InstanceView:
        with self.store.lock:
            atts = []
            for att in entry.res["volume_attachments"]:
                vol = self.store.get("volumes", att["volume"]["id"]).res
                atts.append(AttachmentView(att["name"], att["device"]["id"], vol["id"], vol["name"], vol["capacity"]))
            return InstanceView(
                id=entry.res["id"],
                name=entry.res["name"],
                profile=entry.res["profile"]["name"],
                image=entry.res["image"]["name"],
                user_data=entry.private.get("user_data"),
                boot=atts[0],
                volume_attachments=atts[1:],
                metadata_url=f"{self.url}/_instances/{entry.res['id']}",
            )

    # ---------------------------------------------------------------- HTTP
    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in h.headers.items()}
        body: Any = None
        if raw:
            ctype = headers.get("content-type", "")
            try:
                body = dict(parse_qsl(raw.decode())) if "x-www-form-urlencoded" in ctype else json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                body = {"_unparsable": len(raw)}
        req = Request(h.command, split.path, query, body, headers)
        status, extra_headers, payload = self.dispatch(req)
        self.requests.append(RecordedRequest(req.method, req.path, query, redact(body), status))
        if extra_headers.pop(_TRUNCATE, None):
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "1000")
            h.end_headers()
            h.wfile.write(b'{"id": "')
            h.close_connection = True
            return
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(status)
        for name, value in extra_headers.items():
            h.send_header(name, value)
        if data:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        with self.store.lock:
            for rule in self._faults:
                if rule.matches(method, path):
                    rule.times -= 1
                    return rule
            return None

    def dispatch(self, req: Request) -> tuple[int, dict[str, str], Any]:
        fault = self._take_fault(req.method, req.path)
        if fault and fault.delay:
            time.sleep(fault.delay)
            fault = None
        if fault and not fault.after:
            return self._fault_response(fault)
        try:
            status, payload = self._handle(req)
            headers: dict[str, str] = {}
        except FakeApiError as exc:
            status, headers, payload = exc.status, exc.headers, exc.body()
        if fault:
            return self._fault_response(fault)
        return status, headers, payload

    @staticmethod
    def _fault_response(fault: FaultRule) -> tuple[int, dict[str, str], Any]:
        if fault.truncate:
            return 200, {_TRUNCATE: "1"}, None
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        err = FakeApiError(fault.status, "injected_fault", f"injected {fault.status} response")
        return fault.status, headers, err.body()

    def _handle(self, req: Request) -> tuple[int, Any]:
        allowed: list[str] = []
        for method, pattern, handler in self._routes:
            m = pattern.match(req.path)
            if not m:
                continue
            if method != req.method:
                allowed.append(method)
                continue
            req.params = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
            public = any(p.search(req.path) for p in UNAUTHENTICATED)
            if not public and not self.platform.authorized(req.headers.get("authorization")):
                raise FakeApiError(401, "not_authorized", "The token is missing, invalid or expired")
            if req.path.startswith("/v1/") and not req.path.startswith("/v1/policies"):
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", req.query.get("version", "")):
                    raise FakeApiError(400, "validation_required_field_missing", "version query parameter is required")
                if req.query.get("generation", "2") != "2":
                    raise FakeApiError(400, "validation_failed", "only generation 2 is supported")
            return handler(req)
        if allowed:
            raise FakeApiError(405, "method_not_allowed", f"{req.method} is not allowed on {req.path}")
        raise FakeApiError(404, "not_found", f"no such API path {req.path}")
