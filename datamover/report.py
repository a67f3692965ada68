"""The run report (report.json): per volume bytes, sha256, seconds, MB/s, checks; totals; errors."""

import datetime
import json
import time
from typing import Any, Optional

from datamover import __version__
from datamover.convert import VolumeResult
from datamover.progress import MB

SCHEMA = "zimage-mover-report/1"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Report:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.started = _now()
        self._start = time.monotonic()
        self.image: Optional[str] = None
        self.build: Optional[str] = None
        self.layout: Optional[str] = None
        self.inflate: Optional[str] = None
        self.jobs: Optional[int] = None
        self.volumes: list[VolumeResult] = []
        self.outputs: dict[str, Any] = {}
        self.phases: dict[str, float] = {}
        self.error: Optional[str] = None

    def as_json(self) -> dict[str, Any]:
        seconds = round(time.monotonic() - self._start, 3)
        ok = [v for v in self.volumes if v.state == "succeeded"]
        total = sum(v.bytes for v in ok)
        convert_seconds = self.phases.get("convert")
        skipped = sorted({f"{k}: {v.name}" for v in ok for k, c in v.checks.items() if c.startswith("skipped")})
        return {
            "schema": SCHEMA,
            "mover-version": __version__,
            "status": "failed" if self.error else "succeeded",
            "error": self.error,
            "mode": self.mode,
            "image": self.image,
            "build": self.build,
            "layout": self.layout,
            "inflate": self.inflate,
            "jobs": self.jobs,
            "started": self.started,
            "finished": _now(),
            "seconds": seconds,
            "phases": self.phases,
            "volumes-succeeded": [v.name for v in ok],
            "volumes-failed": [v.name for v in self.volumes if v.state == "failed"],
            "volumes": [v.as_json() for v in self.volumes],
            "totals": {
                "volumes": len(self.volumes),
                "succeeded": len(ok),
                "bytes": total,
                "written": sum(v.written for v in ok),
                "gz-bytes": sum(v.gz_bytes for v in ok),
                "convert-seconds": convert_seconds,
                "mb-per-s": round(total / MB / convert_seconds, 1) if convert_seconds else None,
            },
            "checks-skipped": skipped,
            "outputs": self.outputs,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.as_json(), indent=2).encode() + b"\n"
