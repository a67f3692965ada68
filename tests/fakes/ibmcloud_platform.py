"""The platform part of the IBM Cloud fake: IAM tokens and authorization policies, Resource Manager
resource groups, Resource Controller instances and HMAC keys, and the instance metadata service."""

from __future__ import annotations

import secrets
import time
from typing import Any, Protocol

import jwt

from tests.fakes.ibmcloud_state import Entry, FakeApiError, Store, new_id, now_iso
from tests.fakes.ibmcloud_vpc import Handler, Request

APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"
JWT_SECRET = "zimage-fake-iam-signing-key-0123456789"  # HS256; clients decode without verifying


class PlatformContext(Protocol):
    url: str
    region: str
    account_id: str
    api_key: str
    token_ttl: int
    store: Store


class IamError(FakeApiError):
    """IAM answers errors in its own shape (errorCode/errorMessage), which the SDK reads."""

    def body(self) -> dict[str, Any]:
        return {"errorCode": self.code, "errorMessage": self.message, "context": {"requestId": new_id("")}}


class PlatformApi:
    def __init__(self, ctx: PlatformContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.tokens: dict[str, float] = {}  # access token → expiry (epoch seconds)
        self.refresh_tokens: set[str] = set()
        self.metadata_tokens: dict[str, tuple[str, float]] = {}  # token → (instance id, expiry)
        self.resource_groups = {"Default": new_id(""), "zimage": new_id("")}
        guid = new_id("")
        crn = f"crn:v1:bluemix:public:cloud-object-storage:global:a/{ctx.account_id}:{guid}::"
        self.add_cos_instance("cos-wazi", guid, crn)

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", r"/identity/token", self.token),
            ("GET", r"/v1/policies", self.list_policies),
            ("POST", r"/v1/policies", self.create_policy),
            ("DELETE", r"/v1/policies/(?P<id>[^/]+)", self.delete_policy),
            ("GET", r"/v2/resource_groups", self.list_resource_groups),
            ("GET", r"/v2/resource_instances", self.list_instances),
            ("GET", r"/v2/resource_instances/(?P<id>[^/]+)", self.get_instance),
            ("GET", r"/v2/resource_keys", self.list_keys),
            ("POST", r"/v2/resource_keys", self.create_key),
            ("GET", r"/v2/resource_keys/(?P<id>[^/]+)", self.get_key),
            ("DELETE", r"/v2/resource_keys/(?P<id>[^/]+)", self.delete_key),
            ("PUT", r"(?:/_instances/(?P<inst>[^/]+))?/instance_identity/v1/token", self.metadata_token),
            ("GET", r"(?:/_instances/(?P<inst>[^/]+))?/metadata/v1/instance", self.metadata_get),
        ]

    # ---------------------------------------------------------------- IAM
    def issue(self) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iam_id": "iam-ServiceId-fake",
            "sub": "ServiceId-fake",
            "iat": now,
            "exp": now + self.ctx.token_ttl,
            "iss": f"{self.ctx.url}/identity",
            "grant_type": APIKEY_GRANT,
            "scope": "ibm openid",
            "account": {"bss": self.ctx.account_id, "valid": True},
            "jti": new_id(""),
        }
        access = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        refresh = secrets.token_urlsafe(24)
        self.tokens[access] = claims["exp"]
        self.refresh_tokens.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": self.ctx.token_ttl,
            "expiration": claims["exp"],
            "scope": "ibm openid",
        }

    def token(self, req: Request) -> tuple[int, Any]:
        form = req.body if isinstance(req.body, dict) else {}
        grant = form.get("grant_type")
        if grant == APIKEY_GRANT:
            if not form.get("apikey") or not secrets.compare_digest(form["apikey"], self.ctx.api_key):
                raise IamError(400, "BXNIM0415E", "Provided API key could not be found.")
        elif grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                raise IamError(400, "BXNIM0407E", "Provided refresh token is invalid.")
            self.refresh_tokens.discard(form["refresh_token"])
        else:
            raise IamError(400, "BXNIM0109E", f"Property grant_type {grant!r} is not supported.")
        return 200, self.issue()

    def authorized(self, header: str | None) -> bool:
        token = (header or "").removeprefix("Bearer ").strip()
        return self.tokens.get(token, 0) > time.time()

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def list_policies(self, req: Request) -> tuple[int, Any]:
        if req.query.get("account_id") != self.ctx.account_id:
            raise FakeApiError(403, "forbidden", "account_id is missing or not the token's account")
        items = [
            self.store.public(e)
            for e in self.store.entries("policies")
            if req.query.get("type") in (None, e.res["type"])
        ]
        return 200, {"policies": items}

    def create_policy(self, req: Request) -> tuple[int, Any]:
        body = req.body if isinstance(req.body, dict) else {}
        if body.get("type") not in ("access", "authorization") or not body.get("subjects") or not body.get("resources"):
            raise FakeApiError(400, "invalid_body", "a policy needs type, subjects and resources")
        pid = new_id("")
        res = {
            **body,
            "id": pid,
            "href": f"{self.ctx.url}/v1/policies/{pid}",
            "created_at": now_iso(),
            "state": "active",
        }
        self.store.add(Entry("policies", res), pending=False)
        return 201, dict(res)

    def delete_policy(self, req: Request) -> tuple[int, Any]:
        self.store.remove(self.store.get("policies", req.params["id"]))
        return 204, None

    def add_image_to_cos_authorization(self, cos_instance_guid: str | None = None) -> str:
        """Seed the authorization a real account needs before VPC can read images from COS."""
        target = [
            {"name": "accountId", "value": self.ctx.account_id},
            {"name": "serviceName", "value": "cloud-object-storage"},
        ]
        if cos_instance_guid:
            target.append({"name": "serviceInstance", "value": cos_instance_guid})
        body = {
            "type": "authorization",
            "subjects": [
                {
                    "attributes": [
                        {"name": "accountId", "value": self.ctx.account_id},
                        {"name": "serviceName", "value": "is"},
                        {"name": "resourceType", "value": "image"},
                    ]
                }
            ],
            "roles": [{"role_id": "crn:v1:bluemix:public:iam::::serviceRole:Reader"}],
            "resources": [{"attributes": target}],
        }
        return self.create_policy(Request("POST", "/v1/policies", {}, body))[1]["id"]

    # ---------------------------------------------------------------- Resource Manager / Controller
    def list_resource_groups(self, req: Request) -> tuple[int, Any]:
        groups = [self.resource_group(name) for name in self.resource_groups if req.query.get("name") in (None, name)]
        return 200, {"resources": groups}

    def resource_group(self, name: str) -> dict[str, Any]:
        rid = self.resource_groups[name]
        return {
            "id": rid,
            "name": name,
            "default": name == "Default",
            "state": "ACTIVE",
            "account_id": self.ctx.account_id,
            "crn": f"crn:v1:bluemix:public:resource-controller::a/{self.ctx.account_id}::resource-group:{rid}",
        }

    def resource_group_ref(self, rid: str | None) -> dict[str, Any]:
        for name, gid in self.resource_groups.items():
            if gid == (rid or self.resource_groups["Default"]):
                return {"id": gid, "name": name, "href": f"{self.ctx.url}/v2/resource_groups/{gid}"}
        raise FakeApiError(400, "validation_failed", f"resource group {rid} cannot be found")

    def add_cos_instance(self, name: str, guid: str, crn: str) -> None:
        res = {
            "id": crn,
            "guid": guid,
            "crn": crn,
            "name": name,
            "state": "active",
            "type": "service_instance",
            "resource_id": "dff97f5c-bc5e-4455-b470-411c3edbe49c",
            "region_id": "global",
            "resource_group_id": self.resource_groups["Default"],
            "created_at": now_iso(),
        }
        self.store.add(Entry("resource_instances", res), pending=False)

    def _rc_page(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        return 200, {"rows_count": len(items), "next_url": None, "resources": items}

    def list_instances(self, req: Request) -> tuple[int, Any]:
        return self._rc_page(
            [
                self.store.public(e)
                for e in self.store.entries("resource_instances")
                if req.query.get("name") in (None, e.res["name"])
            ]
        )

    def _instance(self, ident: str) -> Entry:
        for e in self.store.entries("resource_instances"):
            if ident in (e.res["guid"], e.res["crn"]):
                return e
        raise FakeApiError(404, "not_found", f"resource instance {ident} cannot be found")

    def get_instance(self, req: Request) -> tuple[int, Any]:
        return 200, self.store.public(self._instance(req.params["id"]))

    def _key(self, ident: str) -> Entry:
        for e in self.store.entries("resource_keys"):
            if ident in (e.res["guid"], e.res["id"]):
                return e
        raise FakeApiError(404, "not_found", f"resource key {ident} cannot be found")

    def create_key(self, req: Request) -> tuple[int, Any]:
        body = req.body if isinstance(req.body, dict) else {}
        if not body.get("name") or not body.get("source"):
            raise FakeApiError(400, "invalid_body", "a resource key needs name and source")
        inst = self._instance(body["source"])
        role = body.get("role", "Writer")
        role_crn = role if role.startswith("crn:") else f"crn:v1:bluemix:public:iam::::serviceRole:{role}"
        guid = new_id("")
        crn = inst.res["crn"].rstrip(":") + f":resource-key:{guid}"
        credentials: dict[str, Any] = {
            "apikey": secrets.token_urlsafe(32),
            "iam_role_crn": role_crn,
            "resource_instance_id": inst.res["crn"],
            "iam_apikey_name": body["name"],
        }
        if (body.get("parameters") or {}).get("HMAC") is True:
            credentials["cos_hmac_keys"] = {
                "access_key_id": secrets.token_hex(16),
                "secret_access_key": secrets.token_hex(24),
            }
        res = {
            "id": crn,
            "guid": guid,
            "crn": crn,
            "name": body["name"],
            "state": "active",
            "source_crn": inst.res["crn"],
            "role": role_crn,
            "credentials": credentials,
            "created_at": now_iso(),
            "resource_group_id": inst.res["resource_group_id"],
        }
        self.store.add(Entry("resource_keys", res), pending=False)
        return 201, dict(res)

    @staticmethod
    def _without_credentials(res: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in res.items() if k != "credentials"}

    def list_keys(self, req: Request) -> tuple[int, Any]:
        return self._rc_page(
            [
                self._without_credentials(e.res)
                for e in self.store.entries("resource_keys")
                if req.query.get("name") in (None, e.res["name"])
            ]
        )

    def get_key(self, req: Request) -> tuple[int, Any]:
        return 200, self._without_credentials(self._key(req.params["id"]).res)

    def delete_key(self, req: Request) -> tuple[int, Any]:
        self.store.remove(self._key(req.params["id"]))
        return 204, None

    # ---------------------------------------------------------------- metadata service
    def metadata_token(self, req: Request) -> tuple[int, Any]:
        if req.headers.get("metadata-flavor") != "ibm":
            raise FakeApiError(400, "bad_request", "Metadata-Flavor: ibm header is required")
        inst = self._metadata_instance(req.params.get("inst"))
        ttl = int((req.body or {}).get("expires_in", 300)) if isinstance(req.body, dict) else 300
        token = secrets.token_urlsafe(24)
        self.metadata_tokens[token] = (inst.res["id"], time.time() + ttl)
        return 200, {"access_token": token, "created_at": now_iso(), "expires_in": ttl}

    def metadata_get(self, req: Request) -> tuple[int, Any]:
        inst = self._metadata_instance(req.params.get("inst"))
        token = req.headers.get("authorization", "").removeprefix("Bearer ").strip()
        owner, expiry = self.metadata_tokens.get(token, ("", 0.0))
        if owner != inst.res["id"] or expiry < time.time():
            raise FakeApiError(401, "unauthorized", "missing or invalid instance identity token")
        view = self.store.public(inst)
        view.pop("primary_network_interface", None)
        return 200, view

    def _metadata_instance(self, instance_id: str | None) -> Entry:
        instance_id = instance_id or getattr(self.ctx, "metadata_instance_id", None)
        entry = self.store.find("instances", instance_id or "")
        if entry is None or not entry.res["metadata_service"]["enabled"]:
            raise FakeApiError(404, "not_found", "the metadata service is not enabled for this instance")
        return entry
