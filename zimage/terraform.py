"""Import the existing builder's Terraform variables (variables.tf defaults, *.tfvars values).

Only text goes in (the caller reads the files); python-hcl2 parses it. The API key variable is
never carried over: the config names an environment variable instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import hcl2

# config path in `target` (or `image.*`) -> the variable names the builder's versions used for it
MAPPING: dict[str, tuple[str, ...]] = {
    "region": ("region", "ibmcloud_region", "vpc_region"),
    "zone": ("zone", "zone_number"),
    "resource_group": ("resource_group", "resource_group_name"),
    "iam_endpoint": ("iam_endpoint", "ibmcloud_iam_endpoint", "iam_url"),
    "vpc_endpoint": ("vpc_endpoint", "is_endpoint", "vpc_url"),
    "cos.instance_name": ("cos_instance_name", "cos_instance", "cos_service_instance_name"),
    "cos.bucket": ("cos_bucket_name", "cos_bucket", "bucket_name"),
    "cos.region": ("cos_bucket_region", "cos_region", "bucket_region"),
    "cos.endpoint": ("cos_endpoint", "cos_bucket_endpoint", "cos_direct_endpoint"),
    "mover.profile": ("data_mover_profile", "mover_profile", "vsi_profile", "instance_profile"),
    "mover.image": ("data_mover_image", "mover_image", "vsi_image_name", "image_name_regex", "image_regex"),
    "mover.volume_profile": ("volume_profile", "data_volume_profile"),
    "encryption_key_crn": ("encryption_key_crn", "kms_key_crn", "root_key_crn", "boot_volume_encryption_key"),
    "image.name": ("custom_image_name", "image_name"),
    "image.os": ("custom_image_os", "custom_image_os_name", "os_name"),
}
SECRET_VARIABLES = ("ibmcloud_api_key", "ibm_api_key", "api_key", "apikey")
IGNORED_VARIABLES = ("ssh_key", "ssh_public_key", "prefix", "tags")


class TerraformError(ValueError):
    pass


@dataclass
class Imported:
    target: dict[str, Any]
    image: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)


def _unquote(value: Any) -> Any:
    # Some python-hcl2 versions keep the quotes of string literals.
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


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
                    values[name] = _unquote(body["default"])
    else:
        values = {k: _unquote(v) for k, v in parsed.items()}
        declared = set(values)
    return values, declared


def import_variables(files: list[tuple[str, str]]) -> Imported:
    """Merge files in order (later wins, so list variables.tf first) into config sections."""
    values: dict[str, Any] = {}
    declared: set[str] = set()
    for origin, text in files:
        file_values, file_declared = variables_from(text, origin)
        values.update(file_values)
        declared |= file_declared
    notes: list[str] = []
    used: set[str] = set()
    picked: dict[str, Any] = {}
    for path, candidates in MAPPING.items():
        for name in candidates:
            if name in values and values[name] not in (None, ""):
                value = values[name]
                if isinstance(value, str) and "${" in value:
                    notes.append(f"{name} is an expression ({value}); set {path} by hand")
                else:
                    picked[path] = value
                used.add(name)
                break
    for name in sorted(declared & set(SECRET_VARIABLES)):
        used.add(name)
        notes.append(f"{name} is not copied: the config names the environment variable IBMCLOUD_API_KEY instead")
    for name in sorted(set(declared) - used - set(IGNORED_VARIABLES)):
        if any(name in c for c in MAPPING.values()):
            continue
        notes.append(f"variable {name} has no zimage equivalent and was not imported")
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


def _zone(value: Any, region: str) -> int:
    # The builder took either a number or a full zone name such as jp-tok-1.
    text = str(value)
    if text.startswith(f"{region}-"):
        text = text[len(region) + 1 :]
    try:
        return int(text)
    except ValueError:
        raise TerraformError(f"zone {value!r} is neither a zone number nor a zone of {region}") from None
