"""The mover VSI's user data: a shell script that cloud-init runs once at first boot.

It carries the data mover as a base64 zipapp and one short-lived URL to the mover's full
configuration object (presigned URLs for hundreds of volumes do not fit in 64 KiB). It never
carries an API key or an HMAC secret.
"""

from __future__ import annotations

import base64
import textwrap

from zimage.config import Config

USER_DATA_LIMIT = 64 * 1024
PLACEHOLDER_URL = "https://s3.example.invalid/<bucket>/<image>/mover-config.json?<presigned-get-url>"


class UserDataError(ValueError):
    pass


def render_user_data(zipapp: bytes, config_url: str, mode: str = "vsi") -> str:
    """`mode` is the mover's subcommand: `vsi` (deploy-image) or `export` (export-instance)."""
    if mode not in ("vsi", "export"):
        raise UserDataError(f"mover mode {mode!r}: expected vsi or export")
    if "'" in config_url or "\n" in config_url or not config_url.startswith(("https://", "http://")):
        raise UserDataError("the mover configuration URL must be an http(s) URL without quotes or newlines")
    payload = "\n".join(textwrap.wrap(base64.b64encode(zipapp).decode(), 76))
    # ZIMAGE_HOME lets a local emulation of the VSI run the same script without writing to /opt.
    script = f"""#!/bin/sh
# zimage data mover: converts the staged volumes, then reports to the bucket. No secrets here.
set -eu
home="${{ZIMAGE_HOME:-/opt/zimage}}"
mkdir -p "$home"
base64 -d > "$home/mover.pyz" <<'ZIMAGE_MOVER'
{payload}
ZIMAGE_MOVER
if ! command -v qemu-img >/dev/null 2>&1 || ! command -v mke2fs >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-utils e2fsprogs
fi
exec python3 "$home/mover.pyz" {mode} --workdir "$home/work" --config-url '{config_url}' >> "$home/mover.log" 2>&1
"""
    size = len(script.encode())
    if size > USER_DATA_LIMIT:
        raise UserDataError(f"user data is {size} bytes; IBM Cloud allows {USER_DATA_LIMIT}")
    return script


def placeholder_user_data(cfg: Config, image: str) -> str:
    """The user data a deploy of `image` would send, with a placeholder for its presigned URL."""
    from datamover.package import build_zipapp

    cfg.image(image)
    return render_user_data(build_zipapp(mode="vsi"), PLACEHOLDER_URL)  # as infra.mover_config.user_data
