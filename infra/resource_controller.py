"""Resource Manager and Resource Controller: resource groups, the COS instance, and the
short-lived HMAC key a build gives the mover (created for the build, deleted at teardown)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from ibm_cloud_sdk_core import ApiException
from pydantic import BaseModel, ConfigDict, SecretStr

from infra.iam import IbmCloudError, PlatformClient, RetryPolicy, call_api

log = logging.getLogger(__name__)

DEFAULT_RESOURCE_CONTROLLER = "https://resource-controller.cloud.ibm.com"


class ResourceControllerError(IbmCloudError):
    pass


class CosInstance(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    guid: str
    crn: str
    name: str
    state: str


class ResourceKeyRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    guid: str
    name: str


class HmacKey(BaseModel):
    """An HMAC credential; the secret stays hidden in repr/str/logs (pydantic SecretStr)."""

    model_config = ConfigDict(frozen=True)
    key_id: str
    key_guid: str
    name: str
    access_key_id: str
    secret_access_key: SecretStr


class ResourceController:
    def __init__(self, client: PlatformClient, *, retry: RetryPolicy | None = None) -> None:
        self.client = client
        self.retry = retry or RetryPolicy()

    def _call(
        self,
        method: str,
        path: str,
        operation: str,
        resource: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        return call_api(
            lambda: self.client.call(method, path, params=params, body=body),
            operation=operation,
            resource=resource,
            retry=self.retry,
            error=ResourceControllerError,
        )

    def find_resource_group(self, name: str) -> str:
        """The id of the resource group called `name`."""
        result = self._call("GET", "/v2/resource_groups", "find", f"resource group {name!r}", params={"name": name})
        ids = [g["id"] for g in result.get("resources", []) if g.get("name") == name]
        if len(ids) != 1:
            found = "no" if not ids else f"{len(ids)}"
            raise ResourceControllerError(
                "find", f"resource group {name!r}", None, f"{found} resource groups have that name in the account"
            )
        return str(ids[0])

    def find_cos_instance(self, name: str) -> CosInstance:
        result = self._call(
            "GET",
            "/v2/resource_instances",
            "find",
            f"COS instance {name!r}",
            params={"name": name, "type": "service_instance"},
        )
        rows = [r for r in result.get("resources", []) if r.get("name") == name and r.get("state") == "active"]
        if len(rows) != 1:
            raise ResourceControllerError(
                "find",
                f"COS instance {name!r}",
                None,
                f"expected one active instance with that name, found {len(rows)}",
            )
        return CosInstance.model_validate(rows[0])

    def create_hmac_key(self, name: str, instance: CosInstance, role: str = "Writer") -> HmacKey:
        """A service credential with HMAC keys on `instance` (role Writer: read and write objects)."""
        body = {"name": name, "source": instance.guid, "role": role, "parameters": {"HMAC": True}}
        result = self._call("POST", "/v2/resource_keys", "create", f"HMAC key {name!r}", body=body)
        hmac = (result.get("credentials") or {}).get("cos_hmac_keys") or {}
        if not hmac.get("access_key_id") or not hmac.get("secret_access_key"):
            raise ResourceControllerError(
                "create", f"HMAC key {name!r}", None, "the resource key came back without cos_hmac_keys"
            )
        log.info("created HMAC key %s (%s) on COS instance %s", name, result["guid"], instance.name)
        return HmacKey(
            key_id=result["id"],
            key_guid=result["guid"],
            name=name,
            access_key_id=hmac["access_key_id"],
            secret_access_key=SecretStr(hmac["secret_access_key"]),
        )

    def list_keys(self, name: str | None = None) -> list[ResourceKeyRef]:
        params = {"name": name} if name else None
        result = self._call("GET", "/v2/resource_keys", "list", f"resource keys named {name!r}", params=params)
        return [ResourceKeyRef.model_validate(r) for r in result.get("resources", [])]

    def delete_key(self, key_id: str) -> bool:
        """Delete a resource key by id or guid; False when it was already gone (404/410)."""
        try:
            # A key's id is its CRN, which holds "/" and ":": it must travel encoded in the path.
            self._call("DELETE", f"/v2/resource_keys/{quote(key_id, safe='')}", "delete", f"resource key {key_id}")
        except ResourceControllerError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.status in (404, 410):
                return False
            raise
        log.info("deleted resource key %s", key_id)
        return True
