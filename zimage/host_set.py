"""Deployed sets on an emulator host (DESIGN.md §15), pure: names, layout, `zimage-set.json`, the plan.

`<root>/<image>/sets/<set>/` holds one set: a file per volume named by VOLSER, `devmap` (device paths
under `<root>/<image>/current/`, so they never change), `ipl` and `zimage-set.json`. `current` is a
symlink to the set in use. A set's name is its newest generation and a digest of everything that
decides its bytes, so a re-run of the same deploy finds (and resumes) the same set.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from zimage import devmap
from zimage.build import BuiltImage
from zimage.config import Devmap, Host, Image, Network
from zimage.sizing import human

SET_FILE = "zimage-set.json"
DEVMAP_FILE = "devmap"
IPL_FILE = "ipl"
CURRENT = "current"
SETS = "sets"
# devmap, ipl, zimage-set.json and the file system's own rounding
FREE_MARGIN = 1 << 20


def image_dir(host: Host, image: str) -> str:
    return posixpath.join(host.root, image)


def current_dir(host: Host, image: str) -> str:
    return posixpath.join(image_dir(host, image), CURRENT)


def network_of(host: Host, image: Image) -> Network:
    return host.network or image.network


def ipl_command(image: Image) -> str:
    """The zPDT command that IPLs the image, e.g. `ipl 0a80 parm 0a82csm1`."""
    return f"ipl {image.ipl.device.lower()} parm {image.ipl.loadparm.lower()}\n"


def host_devmap(host: Host, image: Image, built: BuiltImage) -> str:
    """The image's devmap with the host's settings, every device under `<root>/<image>/current/`."""
    settings = Devmap(
        system=host.devmap.system or image.devmap.system,
        path_prefix=current_dir(host, image.name),
        managers=image.devmap.managers if host.devmap.managers is None else host.devmap.managers,
    )
    return devmap.render(settings, [devmap.DevmapVolume(v.name, v.devnum, v.devtype) for v in built.volumes])


def set_name(built: BuiltImage, devmap_text: str, ipl: str, network: Network, symbols: str) -> str:
    """`<newest generation>-<8 hex digits>`: equal inputs give the same name (a re-run resumes it)."""
    decided = {
        "volumes": [(v.name, v.devnum, v.sha256) for v in built.volumes],
        "devmap": devmap_text,
        "ipl": ipl,
        "network": network.model_dump(),
        "symbols": symbols,
    }
    digest = hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:8]
    return f"{max(built.generations.values())}-{digest}"


# --- zimage-set.json ----------------------------------------------------------------------------


class SetVolume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    volser: str
    devnum: str
    devtype: str
    component: str
    generation: str
    size: int
    extracted_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    deployed_sha256: str | None = Field(None, description="sha256 of the file as deployed (after any rewrite)")
    origin: Literal["transferred", "reused"] | None = None


class DeployedSet(BaseModel):
    """`zimage-set.json`: what a set holds; written last, so a set without it is incomplete."""

    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = 1
    image: str
    set: str
    host: str
    created: datetime | None = None
    generations: dict[str, str]
    ipl: str
    network: dict[str, str]
    network_symbols: str = Field(description="written, or why the symbols were not written")
    volumes: list[SetVolume]


def new_set(host: Host, image: Image, built: BuiltImage, devmap_text: str, symbols: str) -> DeployedSet:
    """The document of the set a deploy builds; deployed sha256 and origin are filled on the host."""
    ipl = ipl_command(image)
    network = network_of(host, image)
    components = {v.component: built.generations[v.component] for v in built.volumes}
    return DeployedSet(
        image=image.name,
        set=set_name(built, devmap_text, ipl, network, symbols),
        host=host.name,
        generations=built.generations,
        ipl=ipl.strip(),
        network=network.model_dump(),
        network_symbols=symbols,
        volumes=[
            SetVolume(
                volser=v.name,
                devnum=v.devnum,
                devtype=v.devtype,
                component=v.component,
                generation=components[v.component],
                size=v.size,
                extracted_sha256=v.sha256,
            )
            for v in built.volumes
        ],
    )


# --- what the host reports, and the plan ----------------------------------------------------------


class HostSet(BaseModel):
    name: str
    complete: bool
    created: datetime | None = None
    allocated: int = 0
    open_by: list[int] = Field(default_factory=list, description="pids holding a file of the set open")


class HostState(BaseModel):
    """The host's answer to a probe (read only)."""

    python: str
    user: str
    owner_uid: int
    owner_gid: int
    free_bytes: int
    current: str | None = None
    current_set: DeployedSet | None = None
    allocated: dict[str, int] = Field(default_factory=dict, description="current set: VOLSER -> allocated bytes")
    sets: list[HostSet] = Field(default_factory=list)
    storage_reachable: bool = False
    storage_error: str | None = None
    local_address: str | None = None


class PlannedVolume(BaseModel):
    volser: str
    action: Literal["transfer", "reuse"]
    size: int
    gz_size: int
    needs: int = Field(description="bytes of free space this volume may take")


class HostPlan(BaseModel):
    image: str
    host: str
    set: str
    already_current: bool
    volumes: list[PlannedVolume]
    free_needed: int
    free_bytes: int
    kept: list[str]
    removed: list[str]
    busy: list[str] = Field(default_factory=list, description="sets beyond keep left because their files are open")

    @property
    def fits(self) -> bool:
        return self.free_needed <= self.free_bytes

    @property
    def transfer_bytes(self) -> int:
        return sum(v.gz_size for v in self.volumes if v.action == "transfer")

    @property
    def reuse_bytes(self) -> int:
        return sum(v.size for v in self.volumes if v.action == "reuse")

    def text(self) -> str:
        lines = [
            f"deploy-host plan: image {self.image} on host {self.host}, set {self.set}"
            + (" (already current: nothing to write)" if self.already_current else ""),
            "",
            f"{'volser':<8} {'action':<9} {'size':>12} {'transfer':>12}",
        ]
        for v in self.volumes:
            moved = human(v.gz_size) if v.action == "transfer" else "-"
            lines.append(f"{v.volser:<8} {v.action:<9} {human(v.size):>12} {moved:>12}")
        lines += [
            "",
            f"transfer: {human(self.transfer_bytes)} compressed; reused on the host: {human(self.reuse_bytes)}",
            f"free space: {human(self.free_needed)} needed, {human(self.free_bytes)} available"
            + ("" if self.fits else "  ** NOT ENOUGH **"),
            f"sets kept: {', '.join(self.kept) or 'none'}",
            f"sets removed: {', '.join(self.removed) or 'none'}",
        ]
        if self.busy:
            lines.append(f"sets beyond keep left in place (files open): {', '.join(self.busy)}")
        return "\n".join(lines) + "\n"


def reusable(current: DeployedSet | None, volser: str, extracted_sha256: str) -> bool:
    """The current set holds this volume from an extraction with the same sha256 (its file's bytes are
    checked against the recorded deployed sha256 on the host before it is copied)."""
    if current is None:
        return False
    return any(
        v.volser == volser and v.extracted_sha256 == extracted_sha256 and v.deployed_sha256 for v in current.volumes
    )


def prune_order(
    sets: list[HostSet], current: str | None, new: str, keep: int
) -> tuple[list[str], list[str], list[str]]:
    """(kept, removed, busy) once `new` is current: `new` and the newest `keep - 1` other complete sets
    (the one that was current first) stay; older ones and incomplete leftovers go, but never a set
    whose files are open (busy)."""
    others = [s for s in sets if s.name != new]
    ordered = sorted(
        (s for s in others if s.complete),
        key=lambda s: (s.name == current, s.created.timestamp() if s.created else 0.0, s.name),
        reverse=True,
    )
    kept = [new] + [s.name for s in ordered[: keep - 1]]
    drop = [s for s in others if s.name not in kept]
    return kept, [s.name for s in drop if not s.open_by], [s.name for s in drop if s.open_by]


def plan(host: Host, built: BuiltImage, document: DeployedSet, state: HostState) -> HostPlan:
    """Per volume transfer or reuse, the free space needed, and what `keep` does afterwards."""
    already = state.current == document.set and state.current_set is not None
    volumes: list[PlannedVolume] = []
    for v in built.volumes:
        reuse = reusable(state.current_set, v.name, v.sha256)
        needs = state.allocated.get(v.name, v.size) if reuse else v.size
        volumes.append(
            PlannedVolume(
                volser=v.name,
                action="reuse" if reuse else "transfer",
                size=v.size,
                gz_size=v.gz_size,
                needs=0 if already else needs,
            )
        )
    kept, removed, busy = prune_order(state.sets, state.current, document.set, host.keep)
    return HostPlan(
        image=built.image,
        host=host.name,
        set=document.set,
        already_current=already,
        volumes=volumes,
        free_needed=0 if already else sum(v.needs for v in volumes) + FREE_MARGIN,
        free_bytes=state.free_bytes,
        kept=kept,
        removed=removed,
        busy=busy,
    )
