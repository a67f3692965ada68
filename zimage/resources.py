"""Names and order of the cloud resources of one build (DESIGN.md §10).

Every temporary resource is named `zimage-<build_id>-<role>` so that a crashed build's leftovers
are recognisable even when tags could not be attached. A build id is exactly what
`new_build_id()` makes (`b` and 7 hex digits) and a role one of `ROLES`: a user's
`zimage-frontend-vpc` is not a build's. A name alone never proves a resource is zimage's: reaping
also asks for a ledger of the build or its build tag.
"""

from __future__ import annotations

import re
import secrets

PREFIX = "zimage-"
BUILD_ID_RE = re.compile(r"^b[0-9a-f]{7}$")
# the suffixes of the names tasks/mover_vsi.py gives; `mover-root` is the instance's own boot volume;
# an export (tasks/export.py) adds `snap` (the server's data snapshot) and `export` (the volume made from it)
ROLES = ("vpc", "subnet", "sg", "key", "data", "boot", "qcow2", "mover", "mover-root", "fip", "snap", "export")
_NAME_RE = re.compile(rf"^{PREFIX}(b[0-9a-f]{{7}})-({'|'.join(map(re.escape, ROLES))})$")

# Deletion order: unfinished products (an image still importing, a snapshot still being taken
# holds its source volume) -> floating IP -> instance -> volumes -> subnet -> security group -> key -> VPC.
# The mover reaches COS through presigned URLs only, so there are no per-build credentials.
TEARDOWN_ORDER = (
    "image",
    "snapshot",
    "floating_ip",
    "instance",
    "volume",
    "subnet",
    "security_group",
    "key",
    "vpc",
)
PRODUCT_KINDS = frozenset({"image", "snapshot"})  # kept once ready; deleted by teardown only unfinished


def new_build_id() -> str:
    # A letter first keeps every derived name VPC-valid.
    return "b" + secrets.token_hex(4)[:7]


def check_build_id(build_id: str) -> str:
    if not BUILD_ID_RE.fullmatch(build_id):
        raise ValueError(f"build id {build_id!r}: expected 'b' and 7 of 0-9 a-f (as zimage makes them)")
    return build_id


def name(build_id: str, role: str) -> str:
    return f"{PREFIX}{check_build_id(build_id)}-{role}"


def build_of(resource_name: str) -> str | None:
    """The build id a resource name carries, or None for names zimage does not make."""
    match = _NAME_RE.fullmatch(resource_name)
    return match.group(1) if match else None


def teardown_rank(kind: str) -> int:
    try:
        return TEARDOWN_ORDER.index(kind)
    except ValueError:
        raise ValueError(f"unknown resource kind {kind!r}") from None
