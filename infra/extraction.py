"""Running a source's extraction command for one volume, over SSH or locally.

The command template comes from the config (`sources[].extraction.command`). Every placeholder
value is validated against what it may be (VOLSER, devnum, host name, absolute path, ...) and
shell-quoted before it is put in, so no value can change the shell command's meaning. The
command prints one JSON line (`bytes`, `gz_bytes`, `sha256`, `gz_sha256`); anything else, a
non-zero exit, a timeout or a dropped connection is an `ExtractionError` that carries the tail
of the command's stderr and says whether a retry may help.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra import cancellation, ssh
from infra.staging_store import (
    RECORD_SUFFIX,
    StagingStore,
    VerificationFailed,
    find_manifest,
    verify_file,
)
from zimage import devices, names, staging
from zimage.config import Component, Config, Source, Storage, Volume
from zimage.denial import access_denial
from zimage.manifests import StagedVolume

_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]+$")
_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@#$-]{0,31}$")
_PATH = re.compile(r"^/[A-Za-z0-9_.@#$+/-]*$")
AGENT_MARKERS = ("zimage-extract", "infra.extract_agent")
STDERR_LINES = 15
CANCEL_POLL_SECONDS = 0.5
logger = logging.getLogger(__name__)


class ExtractionError(RuntimeError):
    def __init__(self, message: str, *, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


class ExtractionReport(BaseModel):
    """What the extraction command reports for one volume (extra keys are allowed and kept out)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bytes: int = Field(ge=0)
    gz_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    gz_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class StagingTarget:
    """Where the extraction command puts the volume file."""

    path: str
    host: str | None = None  # None: the storage is a local directory
    port: int = 22
    user: str | None = None

    @property
    def url(self) -> str:
        if self.host is None:
            return self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{self.user}@{host}:{self.port}{self.path}"


def staging_target(storage: Storage, path: str) -> StagingTarget:
    if storage.transport == "local":
        return StagingTarget(path)
    return StagingTarget(path, storage.host, storage.port, storage.username)


def _checked(kind: str, value: str, pattern: re.Pattern[str], hint: str) -> str:
    if not pattern.fullmatch(value) or ".." in value.split("/"):
        raise ExtractionError(f"{kind} {value!r} cannot go into the extraction command: expected {hint}",
                              retryable=False)
    return value


def placeholder_values(source: Source, volume: Volume, target: StagingTarget) -> dict[str, str]:
    """Every placeholder's value, validated (not yet quoted)."""
    try:
        values = {
            "volser": names.volser(volume.volser),
            "devnum": names.devnum(volume.devnum),
            "devtype": devices.model(volume.devtype).devtype,
        }
    except ValueError as exc:
        raise ExtractionError(str(exc), retryable=False) from None
    path = _checked("target path", target.path, _PATH, "an absolute path of A-Z a-z 0-9 _ . @ # $ + - /")
    values |= {"target_path": path, "target": path, "target_host": "", "target_port": "", "target_user": ""}
    if target.host is not None:
        host = target.host
        if not (_HOST.fullmatch(host) or (":" in host and _IPV6.fullmatch(host))):
            raise ExtractionError(f"storage host {host!r} cannot go into the extraction command: expected a "
                                  "host name or an IP address", retryable=False)
        values |= {
            "target_host": host,
            "target_port": str(int(target.port)),
            "target_user": _checked("storage user", target.user or "", _USER, "a user name of letters, digits, _ . -"),
            "target": target.url,
        }
    home = source.extraction.utility_home or ""
    if home:
        _checked("utility_home", home, _PATH, "an absolute path of A-Z a-z 0-9 _ . @ # $ + - /")
    values["utility_home"] = home
    return values


def render_command(source: Source, volume: Volume, target: StagingTarget) -> str:
    """The shell command for one volume, every value quoted."""
    values = placeholder_values(source, volume, target)
    return source.extraction.command.format_map({k: shlex.quote(v) for k, v in values.items()})


def agent_volume_path(command: str) -> str | None:
    """The --volume argument when the command runs the reference agent (zimage-extract), else None."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if not any(marker in arg for arg in argv for marker in AGENT_MARKERS):
        return None
    for i, arg in enumerate(argv):
        if arg == "--volume" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--volume="):
            return arg.split("=", 1)[1]
    return None


def _tail(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return "\n  ".join(lines[-STDERR_LINES:]) or "(empty)"


def parse_report(stdout: bytes, stderr: bytes, what: str) -> ExtractionReport:
    """The last non-empty stdout line must be the JSON report."""
    lines = [line for line in stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        raise ExtractionError(f"{what}: the command printed no JSON report; stderr:\n  {_tail(stderr)}",
                              retryable=False)
    try:
        return ExtractionReport.model_validate(json.loads(lines[-1]))
    except (json.JSONDecodeError, ValidationError) as exc:
        brief = str(exc).splitlines()[0]
        raise ExtractionError(
            f"{what}: the command's last output line is not a valid JSON report ({brief}): {lines[-1][:300]!r}; "
            f"stderr:\n  {_tail(stderr)}",
            retryable=False,
        ) from None


def run_command(source: Source, command: str, timeout: float) -> tuple[int, bytes, bytes]:
    """(exit status, stdout, stderr tail) of a shell command on the source."""
    if source.transport == "local":
        return _run_local(command, timeout)
    with ssh.connect(source) as session:
        result = session.run(command, timeout)
    return result.status, result.stdout, result.stderr_tail


def _run_local(command: str, timeout: float) -> tuple[int, bytes, bytes]:
    process = subprocess.Popen(
        ["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, so a timeout ends the whole pipeline
    )
    deadline = time.monotonic() + timeout
    while True:
        try:  # short waits, so that a cancelled run stops the command at once
            stdout, stderr = process.communicate(timeout=min(CANCEL_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
            break
        except subprocess.TimeoutExpired:
            if cancellation.requested() or time.monotonic() >= deadline:
                os.killpg(process.pid, signal.SIGKILL)
                _, stderr = process.communicate()
                cancellation.check("local command")
                raise ssh.CommandTimeout(
                    f"command did not finish within {timeout:.0f} s; stderr:\n  {_tail(stderr)}"
                ) from None
    return process.returncode, stdout, stderr[-ssh.STDERR_TAIL:]


def run_extraction(source: Source, volume: Volume, target: StagingTarget) -> ExtractionReport:
    """Run the extraction of one volume and return its report."""
    what = f"extraction of {volume.volser} on {source.name}"
    command = render_command(source, volume, target)
    try:
        status, stdout, stderr = run_command(source, command, source.extraction.timeout_seconds)
    except ssh.SshError as exc:
        raise ExtractionError(f"{what}: {exc}", retryable=exc.retryable) from None
    if status != 0:
        denied = access_denial(stderr.decode("utf-8", "replace"))
        if denied:  # the same on every try: say so at once
            raise ExtractionError(
                f"{what}: access denied (exit status {status}): {denied}; grant {source.username} the access "
                "the command needs, a retry will not help",
                retryable=False,
            )
        raise ExtractionError(f"{what}: exit status {status}; stderr:\n  {_tail(stderr)}", retryable=True)
    return parse_report(stdout, stderr, what)


def volume_sizes(source: Source, paths: list[str]) -> dict[str, int | None]:
    """Size of each file on the source (None when missing or unreadable), for the agent's volumes."""
    if source.transport == "local":
        return {p: (Path(p).stat().st_size if os.access(p, os.R_OK) else None) for p in paths}
    sizes: dict[str, int | None] = {}
    with ssh.connect(source) as session:
        for path in paths:
            result = session.run(f"test -r {shlex.quote(path)} && stat -L -c %s -- {shlex.quote(path)}", 60)
            out = result.stdout.decode().strip()
            sizes[path] = int(out) if result.status == 0 and out.isdigit() else None
    return sizes


def probe_source(source: Source) -> None:
    """Connect (host key verified) and run `true`: the source answers commands."""
    if source.transport == "local":
        return
    with ssh.connect(source) as session:
        result = session.run("true", 60)
    if result.status != 0:
        raise ExtractionError(
            f"source {source.name} ({ssh.where(source)}) cannot run commands: `true` exited {result.status}: "
            f"{result.stderr_text}",
            retryable=True,
        )


# --- one volume, staged and verified -------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    volume: StagedVolume
    sent: bool  # False: it was already staged and verified in this generation

    @property
    def seconds(self) -> float:
        return max((self.volume.finished - self.volume.started).total_seconds(), 0.0)


def _already_staged(
    store: StagingStore, directory: str, volume: Volume, generation: str, component: str
) -> StagedVolume | None:
    """The volume's facts when this generation already holds it verified (a retry or a resumed run);
    the file is verified again on the storage server before it is trusted."""
    name = staging.volume_file_name(volume.volser, generation)
    candidates: list[StagedVolume] = []
    manifest = find_manifest(store, directory, component, generation)
    if manifest:
        candidates += [v for v in manifest.volumes if v.file_name == name]
    record = posixpath.join(directory, name + RECORD_SUFFIX)
    if not candidates and store.stat(record):
        try:
            candidates.append(StagedVolume.model_validate_json(store.read_bytes(record)))
        except ValidationError:
            return None
    for facts in candidates:
        if facts.devnum != volume.devnum or facts.volser != volume.volser:
            return None
        try:
            verify_file(store, posixpath.join(directory, name), facts.gz_bytes, facts.gz_sha256)
        except VerificationFailed:
            return None
        return facts
    return None


def discard_volume(store: StagingStore, directory: str, volser: str, generation: str) -> list[str]:
    """Remove whatever an attempt left of the volume in this generation (temporary, unverified)."""
    name = staging.volume_file_name(volser, generation)
    gone = []
    for leftover in (name + staging.TEMP_SUFFIX, name + RECORD_SUFFIX, name):
        if store.delete(posixpath.join(directory, leftover)):
            gone.append(leftover)
    return gone


def stage_volume(
    store: StagingStore, storage: Storage, source: Source, volume: Volume, *,
    generation: str, component: str, log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
) -> Staged:
    """Extract one volume into `generation` on the storage server and verify it there.

    Idempotent: a volume this generation already holds verified is not sent again. On failure
    nothing of the attempt stays behind that could pass for a staged file.
    """
    directory = staging.volume_dir(storage.root, source.name)
    name = staging.volume_file_name(volume.volser, generation)
    path = posixpath.join(directory, name)
    done = _already_staged(store, directory, volume, generation, component)
    if done:
        log.info("%s: already staged and verified in generation %s (%s); not sent again",
                 volume.volser, generation, name)
        return Staged(done, sent=False)
    for leftover in discard_volume(store, directory, volume.volser, generation):
        log.info("%s: removed %s left by an earlier attempt", volume.volser, leftover)
    started = datetime.now(UTC)
    log.info("%s: extracting %s (%s) on %s to %s", volume.volser, volume.devnum, volume.devtype, source.name, name)
    try:
        report = run_extraction(source, volume, staging_target(storage, path))
        verify_file(store, path, report.gz_bytes, report.gz_sha256)
        finished = datetime.now(UTC)
        facts = StagedVolume(
            volser=volume.volser, devnum=volume.devnum, devtype=volume.devtype, file_name=name,
            bytes=report.bytes, gz_bytes=report.gz_bytes, sha256=report.sha256, gz_sha256=report.gz_sha256,
            started=started, finished=finished,
        )
        store.write_atomic(path + RECORD_SUFFIX, (facts.model_dump_json(indent=2) + "\n").encode())
    except BaseException:
        try:
            discard_volume(store, directory, volume.volser, generation)
        except Exception as cleanup:  # the connection may be gone; the next attempt tidies up first
            log.warning("%s: could not remove what the failed attempt left: %s", volume.volser, cleanup)
        raise
    staged = Staged(facts, sent=True)
    log.info(
        "%s: staged and verified: %s bytes -> %s gz bytes (ratio %.2f) in %.1f s, %.1f MB/s",
        volume.volser, f"{facts.bytes:,}", f"{facts.gz_bytes:,}", ratio(facts), staged.seconds,
        facts.bytes / 1e6 / max(staged.seconds, 1e-3),
    )
    return staged


def ratio(facts: StagedVolume) -> float:
    return facts.bytes / facts.gz_bytes if facts.gz_bytes else 0.0


# --- before any side effect --------------------------------------------------------------------


@dataclass(frozen=True)
class Preflight:
    directory: str
    free_bytes: int
    needed_bytes: int
    volume_files: dict[str, str]  # VOLSER -> path on the source, for the reference agent


def preflight(cfg: Config, component: Component, generation: str, store: StagingStore) -> Preflight:
    """Everything that can be checked before a byte moves: every command renders, the source
    answers (host key verified), the agent's volume files exist, the staging directory is
    writable and has room. Raises with every problem found in one message."""
    staging.generation_time(generation)
    source = cfg.source(component.source)
    directory = staging.volume_dir(cfg.storage.root, source.name)
    problems: list[str] = []
    files: dict[str, str] = {}
    for volume in component.volumes:
        name = staging.volume_file_name(volume.volser, generation)
        target = staging_target(cfg.storage, posixpath.join(directory, name))
        try:
            if path := agent_volume_path(render_command(source, volume, target)):
                files[volume.volser] = path
        except ExtractionError as exc:
            problems.append(f"{volume.volser}: {exc}")
    sizes: dict[str, int | None] = {}
    if files:
        sizes = volume_sizes(source, list(files.values()))
        problems += [
            f"{volser}: volume file {path} does not exist or is not readable on {source.name}"
            for volser, path in files.items() if sizes[path] is None
        ]
    else:
        probe_source(source)
    store.check_writable(directory)
    listing = set(store.listdir(directory))
    previous = _latest_sizes(store, directory, component, generation, listing)
    needed = 0
    for volume in component.volumes:
        if staging.volume_file_name(volume.volser, generation) in listing:
            continue  # resuming: already there
        if volume.volser in previous:
            needed += int(previous[volume.volser] * 1.1)
        elif volume.volser in files and sizes.get(files[volume.volser]) is not None:
            needed += sizes[files[volume.volser]] or 0  # incompressible worst case
        else:
            needed += volume.size_bytes
    free = store.free_bytes(directory)
    if free < needed:
        problems.append(
            f"staging directory {directory} on {store.where()} has {free:,} bytes free, the extraction may need "
            f"{needed:,} (the last generation's compressed sizes + 10%, else the volumes' full size)"
        )
    if problems:
        raise ExtractionError(
            f"component {component.name} cannot be extracted:\n  " + "\n  ".join(problems), retryable=False
        )
    return Preflight(directory, free, needed, files)


def _latest_sizes(
    store: StagingStore, directory: str, component: Component, generation: str, listing: set[str]
) -> dict[str, int]:
    older = [g for g in staging.generations(sorted(listing), component.name) if g != generation]
    if not older:
        return {}
    manifest = find_manifest(store, directory, component.name, older[-1])
    return {v.volser: v.gz_bytes for v in manifest.volumes} if manifest else {}
