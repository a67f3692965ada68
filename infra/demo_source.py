"""The demo's simulated source: 3390 volumes made by Hercules `dasdinit` when it is installed,
else written by zimage's own CKD generator (same header and VOL1 label). Data volumes get
deterministic data records on some tracks so that compression and digests have work to do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from zimage import ckd, devices


class DemoSourceError(RuntimeError):
    pass


def make_volume(path: Path, volser: str, cylinders: int, data_every: int = 0) -> str:
    """Write one volume image; returns what made it. A complete existing file is kept."""
    if path.exists() and path.stat().st_size == ckd.volume_size(cylinders):
        return "kept"
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    dasdinit = shutil.which("dasdinit")
    if dasdinit:
        # -a: an uncompressed CKD_P370 image, the format the mover checks
        done = subprocess.run(
            [dasdinit, "-a", str(tmp), "3390-1", volser, str(cylinders)], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise DemoSourceError(f"dasdinit failed for {volser}: {done.stdout[-500:]}{done.stderr[-500:]}")
        if data_every:
            _add_data(tmp, volser, cylinders, data_every)
        made = "dasdinit"
    else:
        with tmp.open("wb") as out:
            for track in ckd.volume_tracks(volser, cylinders, data_every=data_every):
                out.write(track)
        made = "zimage"
    if tmp.stat().st_size != ckd.volume_size(cylinders):
        raise DemoSourceError(f"{volser}: {tmp} has {tmp.stat().st_size} bytes, expected {ckd.volume_size(cylinders)}")
    tmp.rename(path)
    return made


def _add_data(path: Path, volser: str, cylinders: int, every: int) -> None:
    # Track images have a fixed slot each, so a track can be rewritten in place.
    with path.open("r+b") as out:
        for number in range(every, cylinders * devices.TRACKS_PER_CYLINDER, every):
            cyl, head = divmod(number, devices.TRACKS_PER_CYLINDER)
            out.seek(ckd.DEVICE_HEADER + number * ckd.TRACK_SIZE)
            out.write(ckd.data_track(cyl, head, ckd.payload(volser, cyl, head)))
