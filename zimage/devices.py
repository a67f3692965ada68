"""3390 device geometry and the capacity of each model (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import dataclass

TRACKS_PER_CYLINDER = 15
BYTES_PER_TRACK = 56_664
CONTROL_UNIT = "3990"


@dataclass(frozen=True)
class DeviceModel:
    devtype: str  # as written in the config, e.g. "3390-9"
    cylinders: int  # nominal (largest for 3390-A)

    @property
    def family(self) -> str:
        return self.devtype.split("-", 1)[0]


MODELS: dict[str, DeviceModel] = {
    m.devtype: m
    for m in (
        DeviceModel("3390-1", 1_113),
        DeviceModel("3390-2", 2_226),
        DeviceModel("3390-3", 3_339),
        DeviceModel("3390-9", 10_017),
        DeviceModel("3390-27", 32_760),
        DeviceModel("3390-54", 65_520),
        DeviceModel("3390-A", 1_182_006),
    )
}


def model(devtype: str) -> DeviceModel:
    try:
        return MODELS[devtype.upper()]
    except KeyError:
        raise ValueError(
            f"device type {devtype!r}: expected one of {', '.join(MODELS)}"
        ) from None


def capacity_bytes(cylinders: int) -> int:
    return cylinders * TRACKS_PER_CYLINDER * BYTES_PER_TRACK
