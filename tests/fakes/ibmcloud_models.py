"""Request-body checks for the VPC fake, done with the ibm-vpc SDK's own models.

The VPC API's prototypes are `oneOf` unions: the SDK models them as an abstract class whose
concrete subclasses each have `from_dict`. A body is accepted when one concrete variant parses it
and every property of the body is one that variant knows (a misspelt key is an error, as it should
be for a client under test)."""

from __future__ import annotations

import inspect
import re
from functools import cache
from typing import Any

from ibm_vpc import vpc_v1

from tests.fakes.ibmcloud_state import FakeApiError

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@cache
def _variants(model: type) -> tuple[type, ...]:
    """Concrete classes able to parse a body of `model` (itself, or its leaf subclasses)."""
    if "from_dict" in model.__dict__:
        return (model,)
    found: list[type] = []
    for sub in model.__subclasses__():
        found.extend(_variants(sub))
    return tuple(found)


def _unknown(body: Any, parsed: Any, where: str = "") -> list[str]:
    if isinstance(body, dict) and isinstance(parsed, dict):
        out: list[str] = []
        for key, value in body.items():
            path = f"{where}.{key}" if where else key
            if key not in parsed:
                out.append(path)
            else:
                out.extend(_unknown(value, parsed[key], path))
        return out
    if isinstance(body, list) and isinstance(parsed, list):
        return [u for i, (b, p) in enumerate(zip(body, parsed, strict=False)) for u in _unknown(b, p, f"{where}[{i}]")]
    return []


def validate(body: Any, model: type, what: str) -> str:
    """Parse `body` as `model`; return the matching variant's name or raise a 400."""
    if not isinstance(body, dict):
        raise FakeApiError(400, "bad_request", f"{what}: request body must be a JSON object")
    problems: list[tuple[int, str]] = []
    for variant in _variants(model):
        try:
            parsed = variant.from_dict(body).to_dict()
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            problems.append((len(body.keys() & _properties(variant)), str(exc)))
            continue
        unknown = _unknown(body, parsed)
        if unknown:
            problems.append((len(body.keys() & _properties(variant)), f"unknown properties {unknown}"))
            continue
        return variant.__name__
    # Report against the variant the client most likely meant: the one knowing most of its keys.
    raise FakeApiError(400, "validation_failed", f"{what}: {max(problems, key=lambda p: p[0])[1]}")


@cache
def _properties(variant: type) -> frozenset[str]:
    return frozenset(inspect.signature(variant.__init__).parameters) - {"self", "kwargs"}


def validate_fields(body: Any, what: str, *, required: set[str], allowed: set[str]) -> dict[str, Any]:
    """For operations the SDK sends without a prototype model (create_vpc, create_key, ...)."""
    if not isinstance(body, dict):
        raise FakeApiError(400, "bad_request", f"{what}: request body must be a JSON object")
    missing = sorted(required - body.keys())
    if missing:
        raise FakeApiError(400, "missing_field", f"{what}: missing required property {missing[0]!r}")
    extra = sorted(body.keys() - allowed - required)
    if extra:
        raise FakeApiError(400, "validation_failed", f"{what}: unknown property {extra[0]!r}")
    return body


def check_name(name: Any, what: str) -> None:
    if name is None:
        return
    if not isinstance(name, str) or len(name) > 63 or not NAME_RE.match(name):
        raise FakeApiError(
            400, "validation_invalid_name", f"{what}: name {name!r} must match {NAME_RE.pattern}, ≤ 63 characters"
        )


M = vpc_v1  # short alias for the model classes used by the handlers
