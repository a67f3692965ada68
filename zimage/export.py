"""An export of a Wazi aaS server's volumes (DESIGN.md §17): object keys, the mover's inventory,
its check against the config, the part plan of each upload, and the YAML of a missing component.

Everything of one export lives under `<instance>/builds/<build_id>/` in the bucket and is deleted
when the export ends; what stays is the new generation on the storage server.
"""

from __future__ import annotations

import math
from typing import Annotated

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from zimage import devices, names, objects
from zimage.config import Component
from zimage.manifests import ManifestMismatch

MIB = 1 << 20
MIN_PART = 5 * MIB  # S3's smallest part but the last
MAX_PARTS = 10_000
PART_SIZE = 64 * MIB
ATTACHMENT = "zimage-export"  # the attachment name of the volume made from the snapshot
OBJECTS = ("export-config.json", "inventory.json", "plan.json", objects.PROGRESS, objects.REPORT)


def prefix(instance: str, build: str) -> str:
    """`<instance>/builds/<build_id>/`: like a deploy's mover outputs, under the server's name."""
    return objects.build_prefix(instance, build)


def key(instance: str, build: str, name: str) -> str:
    if name not in OBJECTS:
        raise ValueError(f"{name!r} is not an object of an export; expected one of {', '.join(OBJECTS)}")
    return prefix(instance, build) + name


def volume_key(instance: str, build: str, volser: str) -> str:
    return f"{prefix(instance, build)}volumes/{names.volser(volser)}.gz"


class InventoryVolume(BaseModel):
    """One volume as the mover found it on the data volume."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    volser: Annotated[str, AfterValidator(names.volser)]
    devnum: Annotated[str, AfterValidator(names.devnum)]
    devtype: str
    cu: str
    path: str
    bytes: int = Field(ge=0)
    cylinders: int | None = None
    label: str = ""


class Inventory(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    devmap: str
    volumes: list[InventoryVolume] = Field(min_length=1)

    @property
    def bytes(self) -> int:
        return sum(v.bytes for v in self.volumes)


def check_inventory(inventory: Inventory, component: Component) -> None:
    """The data volume must hold exactly the component's volumes, at the configured device numbers."""
    found = {v.volser: v for v in inventory.volumes}
    wanted = {v.volser: v for v in component.volumes}
    problems = []
    if missing := sorted(set(wanted) - set(found)):
        problems.append(f"not on the data volume: {', '.join(missing)}")
    if extra := sorted(set(found) - set(wanted)):
        problems.append(f"not in the config: {', '.join(extra)}")
    problems += [
        f"volume {v}: device {found[v].devnum} in the server's devmap, {wanted[v].devnum} in the config"
        for v in sorted(set(found) & set(wanted))
        if found[v].devnum != wanted[v].devnum
    ]
    if problems:
        detail = "; ".join(problems)
        raise ManifestMismatch(f"component {component.name!r} does not match the server's devmap: {detail}")


def part_plan(size: int, part_size: int = PART_SIZE) -> tuple[int, int]:
    """(part size, parts to presign) for the gzip of a volume of `size` bytes: gzip can grow
    incompressible data by a few bytes per 16 KiB block, plus its header and trailer."""
    bound = size + size // 1000 + MIB
    part = max(part_size, MIN_PART, math.ceil(bound / MAX_PARTS / MIB) * MIB)
    return part, max(1, math.ceil(bound / part))


def model_of(volume: InventoryVolume) -> tuple[str, int | None]:
    """The smallest 3390 model that holds the volume's cylinders (given explicitly when fewer)."""
    family = volume.devtype.split("-")[0]
    cylinders = volume.cylinders
    if family != "3390" or not cylinders:
        return volume.devtype, None
    for model in sorted(devices.MODELS.values(), key=lambda m: m.cylinders):
        if model.cylinders >= cylinders:
            return model.devtype, (None if model.cylinders == cylinders else cylinders)
    return volume.devtype, cylinders


def component_yaml(name: str, system: str, kind: str, inventory: Inventory) -> str:
    """The `components:` entry to add to the config for an exported component it does not name."""
    volumes = []
    for vol in inventory.volumes:
        devtype, cylinders = model_of(vol)
        entry: dict[str, object] = {"volser": vol.volser, "devnum": vol.devnum, "devtype": devtype}
        if cylinders:
            entry["cylinders"] = cylinders
        volumes.append(entry)
    doc = {"components": [{"name": name, "source": system, "type": kind, "volumes": volumes}]}
    return yaml.safe_dump(doc, sort_keys=False)
