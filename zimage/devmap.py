"""The zPDT device map (DESIGN.md §7)."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass

from zimage import devices
from zimage.config import Devmap


@dataclass(frozen=True)
class DevmapVolume:
    volser: str
    devnum: str
    family: str  # "3390"


def render(settings: Devmap, volumes: Iterable[DevmapVolume], manager_id: str = "0001") -> str:
    """One `device` line per volume, in the order given; extra managers appended."""
    system = settings.system
    lines = [
        "[system]",
        f"memory {system.memory}",
        f"3270port {system.port_3270}",
        f"processors {system.processors}",
        "",
        "[manager]",
        f"name awsckd {manager_id}",
    ]
    lines += [
        f"device {v.devnum} {v.family} {devices.CONTROL_UNIT} {posixpath.join(settings.path_prefix, v.volser)}"
        for v in volumes
    ]
    for manager in settings.managers:
        lines += ["", "[manager]", f"name {manager.name} {manager.id.upper()}"]
        lines += [f"device {line.strip()}" for line in manager.devices]
    return "\n".join(lines) + "\n"
