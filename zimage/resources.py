"""Names and order of the temporary cloud resources of one build (DESIGN.md §10).

Every temporary resource is named `zimage-<build_id>-<role>` so that a crashed build's leftovers
are recognisable even when tags could not be attached.
"""

from __future__ import annotations

import re
import secrets

PREFIX = "zimage-"
BUILD_ID_RE = re.compile(r"^[a-z][a-z0-9]{7}$")

# Deletion order: floating IP -> instance -> volumes -> subnet -> security group -> key -> VPC.
# The mover reaches COS through presigned URLs only, so there are no per-build credentials.
TEARDOWN_ORDER = (
    "floating_ip",
    "instance",
    "volume",
    "subnet",
    "security_group",
    "key",
    "vpc",
)


def new_build_id() -> str:
    # A letter first keeps every derived name VPC-valid.
    return "b" + secrets.token_hex(4)[:7]


def check_build_id(build_id: str) -> str:
    if not BUILD_ID_RE.fullmatch(build_id):
        raise ValueError(f"build id {build_id!r}: expected a letter and 7 of a-z 0-9")
    return build_id


def name(build_id: str, role: str) -> str:
    return f"{PREFIX}{check_build_id(build_id)}-{role}"


def build_of(resource_name: str) -> str | None:
    """The build id a resource name carries, or None for names zimage did not make."""
    match = re.match(rf"^{PREFIX}([a-z][a-z0-9]{{7}})-", resource_name)
    return match.group(1) if match else None


def teardown_rank(kind: str) -> int:
    try:
        return TEARDOWN_ORDER.index(kind)
    except ValueError:
        raise ValueError(f"unknown resource kind {kind!r}") from None
