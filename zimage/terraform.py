"""Import the existing builder's Terraform variables (variables.tf defaults, *.tfvars values).

Only text goes in (the caller reads the files); python-hcl2 parses it. Every variable that has a
zimage equivalent is carried into the config; every other one is named in the notes with the
reason. The API key variable is never carried over: the config names an environment variable.
The builder writes "null" (a string) for unset values; it reads as null here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hcl2

# config path in `target` (or `image.*`) -> the variable names the builder's versions used for it,
# the names of zos-vpc-custom-image-builder's variables.tf first
MAPPING: dict[str, tuple[str, ...]] = {
    "region": ("region", "ibmcloud_region", "vpc_region"),
    "zone": ("zone", "zone_number"),
    "resource_group": ("cos_resource_group", "resource_group", "resource_group_name"),
    "iam_endpoint": ("iam_endpoint_url", "iam_endpoint", "ibmcloud_iam_endpoint", "iam_url"),
    "vpc_endpoint": ("vpc_endpoint", "is_endpoint", "vpc_url"),
    "cos.instance_name": ("cos_instance_name", "cos_instance", "cos_service_instance_name"),
    "cos.bucket": ("cos_bucket_name", "cos_bucket", "bucket_name"),
    "cos.region": ("cos_bucket_region", "cos_region", "bucket_region"),
    "cos.endpoint": ("cos_endpoint", "cos_bucket_endpoint", "cos_direct_endpoint"),
    "mover.profile": ("mover_profile", "data_mover_profile", "vsi_profile", "instance_profile"),
    "mover.image": ("mover_image_name", "data_mover_image", "mover_image", "vsi_image_name", "image_regex"),
    "mover.volume_profile": ("volume_purpose", "volume_profile", "data_volume_profile"),
    "encryption_key_crn": (
        "customer_root_key_crn",
        "encryption_key_crn",
        "kms_key_crn",
        "root_key_crn",
        "boot_volume_encryption_key",
    ),
    "image.name": ("custom_image_name", "image_name"),
    "image.os": ("custom_image_os", "custom_image_os_name", "os_name"),
}
SECRET_VARIABLES = ("ibmcloud_api_key", "ibm_api_key", "api_key", "apikey")
ENCRYPTION_TYPE = "encryption_type"  # user_managed (the builder's default) | provider_managed
# Variables of the builder that zimage has no setting for, and why.
NOT_CARRIED: dict[str, str] = {
    "custom_vsi": "zimage creates a Wazi aaS server from the image with `zimage run create-instance` "
    "(or `zimage run refresh --create-instance`)",
    "cos_bucket_type": "zimage reads a regional bucket through target.cos.region and target.cos.endpoint",
    "ssh_private_key": "zimage makes a key pair for each build and needs no SSH session to the mover "
    "(target.mover.ssh_access: true opens one for debugging)",
    "ssh_public_key": "zimage makes a key pair for each build and needs no SSH session to the mover "
    "(target.mover.ssh_access: true opens one for debugging)",
    "total_ipv4_address_count": "the mover's subnet always has 256 addresses",
    "prefix": "zimage names its temporary resources zimage-<build>-<role>",
    "tags": "zimage tags its temporary resources with the build",
}


class TerraformError(ValueError):
    pass


@dataclass
class Imported:
    target: dict[str, Any]
    image: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def _value(value: Any) -> Any:
    # Some python-hcl2 versions keep the quotes of string literals; the builder's "null" means null.
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return None if value == "null" else value


def variables_from(text: str, origin: str) -> tuple[dict[str, Any], set[str]]:
    """(values, names) of one file: a variables.tf gives defaults, a tfvars file gives values."""
    try:
        parsed = hcl2.loads(text)
    except Exception as exc:  # hcl2 raises lark errors of several classes
        raise TerraformError(f"{origin}: not valid HCL: {exc}") from None
    values: dict[str, Any] = {}
    declared: set[str] = set()
    if "variable" in parsed:
        for block in parsed["variable"]:
            for name, body in block.items():
                declared.add(name)
                if isinstance(body, dict) and "default" in body:
                    values[name] = _value(body["default"])
    else:
        values = {k: _value(v) for k, v in parsed.items()}
        declared = set(values)
    return values, declared


def _pick(values: dict[str, Any], notes: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """config path -> value, and variable -> config path for each variable used."""
    picked: dict[str, Any] = {}
    used: dict[str, str] = {}
    for path, candidates in MAPPING.items():
        chosen = None
        for name in (n for n in candidates if n in values):
            used[name] = path
            value = values[name]
            if value in (None, ""):
                continue  # unset here: another name may hold it
            if chosen is not None:
                notes.append(f"{name} is not carried: {chosen} already sets {path}")
            elif isinstance(value, str) and "${" in value:
                notes.append(f"{name} is an expression ({value}); set {path} by hand")
                chosen = name
            else:
                picked[path], chosen = value, name
    return picked, used


def _encryption(values: dict[str, Any], picked: dict[str, Any], notes: list[str]) -> None:
    # The builder uses the customer root key only with encryption_type user_managed (its default).
    kind = values.get(ENCRYPTION_TYPE) or "user_managed"
    if kind not in ("user_managed", "provider_managed"):
        raise TerraformError(f"{ENCRYPTION_TYPE} {kind!r}: expected user_managed or provider_managed")
    if kind == "provider_managed" and "encryption_key_crn" in picked:
        del picked["encryption_key_crn"]
        notes.append(
            "customer_root_key_crn is not carried: encryption_type is provider_managed, so the volumes and the "
            "snapshot use IBM's key (set target.encryption_key_crn to use the customer key)"
        )


def import_variables(files: list[tuple[str, str]]) -> Imported:
    """Merge files in order (later wins, so list variables.tf first) into config sections."""
    values: dict[str, Any] = {}
    declared: set[str] = set()
    for origin, text in files:
        file_values, file_declared = variables_from(text, origin)
        values.update(file_values)
        declared |= file_declared
    notes: list[str] = []
    picked, used = _pick(values, notes)
    _encryption(values, picked, notes)
    mapped = {name: path for path, names in MAPPING.items() for name in names}
    for name in sorted(declared - set(used) - {ENCRYPTION_TYPE}):
        if name in mapped:  # declared without a default, and no tfvars file gives it
            notes.append(f"{name} has no value in these files: it would set {_config_key(mapped[name])}")
        elif name in SECRET_VARIABLES:
            notes.append(f"{name} is not copied: the config names the environment variable IBMCLOUD_API_KEY instead")
        elif name in NOT_CARRIED:
            notes.append(f"{name} is not carried: {NOT_CARRIED[name]}")
        else:
            notes.append(f"{name} is not carried: zimage has no equivalent setting")
    if "region" not in picked:
        raise TerraformError("no region found (looked for: " + ", ".join(MAPPING["region"]) + ")")
    target: dict[str, Any] = {"region": picked["region"], "zone": _zone(picked.get("zone", 1), picked["region"])}
    for key in ("resource_group", "iam_endpoint", "vpc_endpoint", "encryption_key_crn"):
        if key in picked:
            target[key] = picked[key]
    target["api_key_env"] = "IBMCLOUD_API_KEY"
    cos: dict[str, Any] = {}
    for key in ("instance_name", "bucket", "region", "endpoint"):
        if f"cos.{key}" in picked:
            cos[key] = picked[f"cos.{key}"]
    cos.setdefault("region", target["region"])
    for key in ("instance_name", "bucket"):
        if key not in cos:
            notes.append(f"target.cos.{key} not found in the variables: fill it in")
    target["cos"] = cos
    mover = {key: picked[f"mover.{key}"] for key in ("profile", "image", "volume_profile") if f"mover.{key}" in picked}
    if mover:
        target["mover"] = mover
    image = None
    if "image.name" in picked:
        image = {"name": picked["image.name"]}
        if "image.os" in picked:
            image["os"] = picked["image.os"]
    return Imported(target=target, image=image, notes=notes)


def _config_key(path: str) -> str:
    """A mapping path as the config's key: cos.* and mover.* lie under target, image.* under images[]."""
    return f"images[].{path[6:]}" if path.startswith("image.") else f"target.{path}"


def _zone(value: Any, region: str) -> int:
    # The builder took either a number or a full zone name such as jp-tok-1.
    text = str(value)
    if text.startswith(f"{region}-"):
        text = text[len(region) + 1 :]
    try:
        return int(text)
    except ValueError:
        raise TerraformError(f"zone {value!r} is neither a zone number nor a zone of {region}") from None
