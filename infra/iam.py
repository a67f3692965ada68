"""IBM Cloud IAM and the plumbing every IBM Cloud adapter shares.

- `iam_authenticator`: an IAM API-key authenticator for the SDK clients.
- `IbmCloudError` and `call_api`: one error type naming the operation, the resource, the HTTP
  status and the API's message; bounded retries with exponential backoff and jitter for 429, 5xx
  and connection errors, honouring Retry-After.
- `PlatformClient`: a small SDK-core client for the platform APIs that have no SDK installed here
  (IAM policies, Resource Manager, Resource Controller).
- `has_image_to_cos_authorization`: whether the VPC image service may read from COS.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from ibm_cloud_sdk_core import ApiException, BaseService, DetailedResponse
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator

log = logging.getLogger(__name__)

DEFAULT_IAM_ENDPOINT = "https://iam.cloud.ibm.com"
T = TypeVar("T")


class IbmCloudError(Exception):
    """An IBM Cloud API call failed; says what was attempted on what, and what the API answered."""

    def __init__(self, operation: str, resource: str, status: int | None, message: str, code: str | None = None):
        self.operation = operation
        self.resource = resource
        self.status = status
        self.message = message
        self.code = code
        where = f"HTTP {status}" if status is not None else "no response"
        detail = f"{code}: {message}" if code else message
        super().__init__(f"{operation} {resource} failed ({where}): {detail}")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure (429, 5xx, connection, timeout)."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # jitter: parallel callers do not retry in step


def iam_authenticator(api_key: str, iam_endpoint: str = DEFAULT_IAM_ENDPOINT) -> IAMAuthenticator:
    """The caller reads the key (environment variable or Prefect Secret) and passes its value."""
    if not api_key or not api_key.strip():
        raise ValueError("the IBM Cloud API key is empty")
    return IAMAuthenticator(api_key.strip(), url=iam_endpoint.rstrip("/"))


def _error_code(exc: ApiException) -> str | None:
    try:
        body = exc.http_response.json() if exc.http_response is not None else {}
    except ValueError:
        return None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return errors[0].get("code")
    return body.get("errorCode") if isinstance(body, dict) else None


def _retry_after(exc: ApiException) -> float | None:
    value = exc.http_response.headers.get("Retry-After") if exc.http_response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def is_name_conflict(exc: ApiException) -> bool:
    return exc.code == 409 or (exc.code == 400 and _error_code(exc) == "validation_unique_failed")


def call_api(
    fn: Callable[[], DetailedResponse],
    *,
    operation: str,
    resource: str,
    retry: RetryPolicy,
    error: type[IbmCloudError] = IbmCloudError,
    retry_conflict: bool = False,
    recover_conflict: Callable[[], T | None] | None = None,
) -> Any:
    """Call `fn` and return the response's result, retrying transient failures.

    A 4xx is final except 429, and 409 when `retry_conflict` (a dependent still going away).
    After an attempt whose outcome is unknown (5xx, timeout, lost connection), a create may have
    happened: if a retry then hits a name conflict, `recover_conflict` fetches the resource the
    lost attempt made instead of failing."""
    maybe_done = False
    for attempt in range(retry.attempts):
        last = attempt == retry.attempts - 1
        try:
            return fn().get_result()
        except ApiException as exc:
            code = _error_code(exc)
            if maybe_done and recover_conflict is not None and is_name_conflict(exc):
                found = recover_conflict()
                if found is not None:
                    log.info("%s %s: an earlier attempt had succeeded; using it", operation, resource)
                    return found
            transient = exc.code == 429 or exc.code >= 500 or (retry_conflict and exc.code == 409)
            if not transient or last:
                raise error(operation, resource, exc.code, exc.message or "no message", code) from exc
            maybe_done = maybe_done or exc.code >= 500
            wait = retry.delay(attempt, _retry_after(exc))
            log.warning(
                "%s %s: HTTP %s (%s); retry %d/%d in %.1fs",
                operation,
                resource,
                exc.code,
                exc.message,
                attempt + 1,
                retry.attempts - 1,
                wait,
            )
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            if last:
                raise error(operation, resource, None, f"{type(exc).__name__}: {exc}") from exc
            maybe_done = True
            wait = retry.delay(attempt, None)
            log.warning(
                "%s %s: %s; retry %d/%d in %.1fs",
                operation,
                resource,
                type(exc).__name__,
                attempt + 1,
                retry.attempts - 1,
                wait,
            )
        time.sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


class PlatformClient(BaseService):
    """Authenticated JSON calls to an IBM Cloud platform API (IAM policies, Resource Controller)."""

    def __init__(self, authenticator: IAMAuthenticator, service_url: str, timeout: float = 60.0) -> None:
        super().__init__(service_url=service_url.rstrip("/"), authenticator=authenticator)
        self.set_http_config({"timeout": timeout})

    def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: dict[str, Any] | None = None
    ) -> DetailedResponse:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self.prepare_request(
            method=method, url=path, headers=headers, params=params, data=None if body is None else json.dumps(body)
        )
        return self.send(request)


def account_id(authenticator: IAMAuthenticator, retry: RetryPolicy) -> str:
    """The account the API key belongs to, read from the IAM access token's claims."""
    token = call_api(
        lambda: DetailedResponse(response=authenticator.token_manager.get_token()),
        operation="get IAM token for",
        resource="the API key",
        retry=retry,
    )
    claims = _jwt_claims(token)
    account = (claims.get("account") or {}).get("bss")
    if not account:
        raise IbmCloudError("read account id from", "IAM token", None, "the token has no account.bss claim")
    return str(account)


def _jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: IAM signed it and we only read our own account id."""
    try:
        payload = token.split(".")[1]
        return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
    except (IndexError, ValueError, TypeError) as exc:
        raise IbmCloudError("read claims of", "IAM token", None, "the access token is not a JWT") from exc


def _attrs(items: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{a.get("name", ""): a.get("value", "") for a in item.get("attributes", [])} for item in items]


def has_image_to_cos_authorization(
    client: PlatformClient, account: str, retry: RetryPolicy, cos_instance_guid: str | None = None
) -> bool:
    """True when an authorization lets the VPC image service (is/image) read COS (the whole
    service in the account, or the given instance)."""
    result = call_api(
        lambda: client.call("GET", "/v1/policies", params={"account_id": account, "type": "authorization"}),
        operation="list",
        resource="IAM authorization policies",
        retry=retry,
    )
    for policy in result.get("policies", []):
        subjects = _attrs(policy.get("subjects", []))
        targets = _attrs(policy.get("resources", []))
        from_images = any(s.get("serviceName") == "is" and s.get("resourceType") in (None, "image") for s in subjects)
        to_cos = any(
            t.get("serviceName") == "cloud-object-storage" and t.get("serviceInstance") in (None, cos_instance_guid)
            for t in targets
        )
        if from_images and to_cos:
            return True
    return False
