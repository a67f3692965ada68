"""Finding the attached volumes' devices through the VPC instance metadata service.

ZIMAGE_METADATA_URL (default http://169.254.169.254) and ZIMAGE_DEVICE_DIR (default
/dev/disk/by-id) may point elsewhere, e.g. at a test's emulation of a VSI.
"""

import json
import os
import time

from datamover import http as web
from datamover.errors import MoverError

VERSION = "2022-03-01"
DEVICE_PREFIX = "virtio-"
DEVICE_ID_CHARS = 20  # the by-id name carries the first 20 characters of the attachment's device id


def metadata_url() -> str:
    return os.environ.get("ZIMAGE_METADATA_URL", "http://169.254.169.254").rstrip("/")


def device_dir() -> str:
    return os.environ.get("ZIMAGE_DEVICE_DIR", "/dev/disk/by-id")


def instance_attachments() -> dict[str, str]:
    """Volume attachment name -> device id, from the instance's metadata."""
    base = metadata_url()
    _, raw = web.call(
        "PUT", f"{base}/instance_identity/v1/token?version={VERSION}", "metadata service token",
        {"Metadata-Flavor": "ibm", "Content-Type": "application/json"}, json.dumps({"expires_in": 3600}).encode(),
        ok=(200, 201),
    )
    try:
        token = json.loads(raw)["access_token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise MoverError(f"metadata service token: unexpected answer ({exc})") from None
    instance = web.get_json(
        f"{base}/metadata/v1/instance?version={VERSION}", "instance metadata", {"Authorization": f"Bearer {token}"}
    )
    found = {}
    for attachment in instance.get("volume_attachments") or []:
        device = (attachment.get("device") or {}).get("id")
        if attachment.get("name") and device:
            found[attachment["name"]] = device
    return found


def attachment_devices(names: dict[str, str], wait: float = 300.0) -> dict[str, str]:
    """Role -> device path for the attachments named by role; waits for the devices to appear
    (a volume attached moments ago may not have its by-id link yet)."""
    attachments = instance_attachments()
    missing = sorted(n for n in names.values() if n not in attachments)
    if missing:
        raise MoverError(
            f"volume attachment(s) {', '.join(missing)} not found in the instance metadata "
            f"(attached: {', '.join(sorted(attachments)) or 'none'})"
        )
    paths = {
        role: os.path.join(device_dir(), DEVICE_PREFIX + attachments[name][:DEVICE_ID_CHARS])
        for role, name in names.items()
    }
    deadline = time.monotonic() + wait
    while True:
        absent = [f"{role} ({p})" for role, p in paths.items() if not os.path.exists(p)]
        if not absent:
            return {role: os.path.realpath(p) for role, p in paths.items()}
        if time.monotonic() > deadline:
            raise MoverError(f"device(s) of attachment(s) {', '.join(absent)} did not appear within {wait:.0f} s")
        time.sleep(2.0)
