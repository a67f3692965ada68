"""Progress of a run: counters shared by the volume workers, log lines and periodic snapshots."""

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

MB = 1e6


def log(message: str) -> None:
    print(f"datamover: {message}", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass
class _Volume:
    size: Optional[int]  # uncompressed, when the manifest says
    gz_total: int
    done: int = 0
    gz_done: int = 0
    state: str = "pending"
    attempts: int = 0


class Progress:
    """Thread-safe counters; the ETA is taken from the compressed bytes read, always known."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._volumes: dict[str, _Volume] = {}
        self._start = time.monotonic()
        self.phase = "starting"

    def add_volume(self, name: str, gz_total: int, size: Optional[int]) -> None:
        with self._lock:
            self._volumes[name] = _Volume(size, gz_total)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        log(f"phase: {phase}")

    def begin(self, name: str) -> None:
        with self._lock:
            vol = self._volumes[name]
            vol.done = vol.gz_done = 0
            vol.state = "running"
            vol.attempts += 1

    def advance(self, name: str, done: int, gz_done: int) -> None:
        with self._lock:
            vol = self._volumes[name]
            vol.done += done
            vol.gz_done += gz_done

    def end(self, name: str, state: str) -> None:
        with self._lock:
            self._volumes[name].state = state

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            vols = {n: dict(v.__dict__) for n, v in self._volumes.items()}
        elapsed = time.monotonic() - self._start
        done = sum(v["done"] for v in vols.values())
        gz_done = sum(v["gz_done"] for v in vols.values())
        gz_total = sum(v["gz_total"] for v in vols.values())
        sizes = [v["size"] for v in vols.values()]
        fraction = gz_done / gz_total if gz_total else 0.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        return {
            "phase": self.phase,
            "elapsed_seconds": round(elapsed, 1),
            "bytes_done": done,
            "bytes_total": sum(sizes) if sizes and None not in sizes else None,  # type: ignore[arg-type]
            "gz_bytes_done": gz_done,
            "gz_bytes_total": gz_total,
            "mb_per_s": round(done / MB / elapsed, 1) if elapsed > 0 else 0.0,
            "eta_seconds": None if eta is None else round(eta),
            "volumes": vols,
        }

    def line(self) -> str:
        snap = self.snapshot()
        states = [v["state"] for v in snap["volumes"].values()]
        total = snap["bytes_total"]
        amount = f"{snap['bytes_done'] / MB:,.1f}" + (f"/{total / MB:,.1f} MB" if total else " MB")
        pct = 100 * snap["gz_bytes_done"] / snap["gz_bytes_total"] if snap["gz_bytes_total"] else 0.0
        eta = "?" if snap["eta_seconds"] is None else duration(snap["eta_seconds"])
        return (
            f"progress: {amount} ({pct:.1f}%) {snap['mb_per_s']:.1f} MB/s ETA {eta}; "
            f"volumes {states.count('succeeded')}/{len(states)} done, {states.count('running')} running"
        )


class Ticker:
    """Logs a progress line every `every` seconds and hands a snapshot to `publish` (the VSI's
    progress.json upload) every `publish_every` seconds, until stopped."""

    def __init__(
        self,
        progress: Progress,
        every: float,
        publish: Optional[Callable[[dict[str, Any]], None]] = None,
        publish_every: float = 15.0,
    ) -> None:
        self._progress = progress
        self._every = every
        self._publish = publish
        self._publish_every = publish_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> "Ticker":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        log(self._progress.line())  # the final count, however short the run

    def _run(self) -> None:
        last_publish = time.monotonic()
        self.publish_now()
        while not self._stop.wait(self._every):
            if self._progress.phase == "converting":
                log(self._progress.line())
            if self._publish and time.monotonic() - last_publish >= self._publish_every:
                last_publish = time.monotonic()
                self.publish_now()

    def publish_now(self) -> None:
        if self._publish is None:
            return
        try:
            self._publish(self._progress.snapshot())
        except Exception as exc:  # progress is advisory: say so, never stop the conversion for it
            log(f"warning: progress upload failed: {exc}")
