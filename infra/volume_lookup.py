"""Read data sets and members of staged volumes where they lie: on the storage server, over SSH.

The data mover's zipapp (with its data set modules) is copied to the staging root under a name of
its own and run there as `python3 <zipapp> lookup --request R --out A`; request and answer are JSON
files beside it, read back over SFTP. Nothing but those files is written, and they are removed
whatever happens. A storage server with transport `local` is this machine: the mover's code runs
in-process. Volumes are never pulled to the orchestrator.

`check_ipl_chain` drives zimage.ipl_chain: list every volume, then read what the chain asks for,
until it asks for nothing more.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import posixpath
import secrets
import shlex
from dataclasses import dataclass, field

from datamover.lookup import answer
from datamover.package import build_zipapp
from infra import ssh
from zimage import staging
from zimage.config import Config, Storage
from zimage.ipl_chain import (
    ChainInput,
    Evaluation,
    MemberRead,
    MemberRef,
    VolumeListing,
    chain_input,
    evaluate,
    first_guesses,
    member_key,
)
from zimage.ipl_report import IplReport, VolumeRead
from zimage.manifests import ComponentManifest

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT = 6 * 3600.0  # a whole-volume pass of many large volumes, in the worst case
MAX_ROUNDS = 4  # listing, LOADxx, parmlib members, TCP/IP members


class VolumeLookupError(RuntimeError):
    """The lookup could not run on the storage server; `retryable` as for SSH errors."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class VolumeFile:
    volser: str
    path: str  # on the storage server
    gz_bytes: int | None = None  # as the extraction recorded it


@dataclass
class VolumeStats:
    volser: str
    file_size: int = 0
    read_bytes: int = 0
    seconds: float = 0.0


class VolumeLookup:
    """Runs lookups on the storage server (or here, for transport local). Use as a context manager."""

    def __init__(self, storage: Storage, timeouts: ssh.Timeouts = ssh.Timeouts(), timeout: float = LOOKUP_TIMEOUT):
        self.storage = storage
        self.timeout = timeout
        self._session: ssh.SshSession | None = None
        self._zipapp: str | None = None
        if storage.transport != "local":
            self._session = ssh.connect(storage, timeouts)
            self._prefix = posixpath.join(storage.root, f".zimage-lookup-{secrets.token_hex(6)}")

    def where(self) -> str:
        return "this machine" if self._session is None else ssh.where(self.storage)

    def ask(self, request: dict) -> dict:
        if self._session is None:
            return answer(request)
        sftp = self._session.open_sftp()
        request_path, answer_path = self._prefix + ".request.json", self._prefix + ".answer.json"
        try:
            if self._zipapp is None:
                with sftp.open(self._prefix + ".pyz", "wb") as f:
                    f.write(build_zipapp(mode="lookup"))
                self._zipapp = self._prefix + ".pyz"
            with sftp.open(request_path, "wb") as f:
                f.write(json.dumps(request).encode())
            argv = [self.storage.python, self._zipapp, "lookup", "--request", request_path, "--out", answer_path]
            result = self._session.run(" ".join(shlex.quote(a) for a in argv), self.timeout)
            if result.status != 0:
                raise VolumeLookupError(
                    f"the data mover's lookup on {self.where()} exited with status {result.status}: "
                    f"{result.stderr_text or 'no message'}"
                )
            with sftp.open(answer_path, "rb") as f:
                f.prefetch()
                return json.loads(f.read())
        finally:
            for path in (request_path, answer_path):
                with contextlib.suppress(FileNotFoundError):  # not written yet
                    sftp.remove(path)
            sftp.close()

    def close(self) -> None:
        if self._session is None:
            return
        try:
            if self._zipapp is not None:
                sftp = self._session.open_sftp()
                try:
                    sftp.remove(self._zipapp)
                finally:
                    sftp.close()
        finally:
            self._session.close()

    def __enter__(self) -> VolumeLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ChainResult:
    evaluation: Evaluation
    stats: list[VolumeStats] = field(default_factory=list)
    rounds: int = 0


def _request(
    files: list[VolumeFile], wanted: list[MemberRef], listing: bool, entries: dict[str, dict[str, dict]]
) -> dict:
    volumes = [{"volser": f.volser, "path": f.path, "size": f.gz_bytes} for f in files]
    members = []
    for r in wanted:
        member = {"volser": r.volser, "dsn": r.dsn, "member": r.member}
        entry = entries.get(r.volser, {}).get(r.dsn)
        if entry is not None:
            member["dataset"] = entry  # where the data set lies: the VTOC is not read again
        members.append(member)
    return {"list": listing, "volumes": volumes, "members": members}


def check_ipl_chain(lookup: VolumeLookup, chain: ChainInput, files: list[VolumeFile]) -> ChainResult:
    """The chain's findings, reading on the storage server only what it needs, round by round."""
    result = ChainResult(evaluation=Evaluation(findings=[], wanted=[], unreadable=False, steps=[]))
    stats = {f.volser: VolumeStats(f.volser) for f in files}
    volumes: dict[str, VolumeListing] = {}
    members: dict[tuple[str, str, str], MemberRead] = {}
    wanted = first_guesses(chain)  # read with the listing: one round trip (one pass) fewer
    entries: dict[str, dict[str, dict]] = {}  # volser -> data set name -> its listing entry
    for round_ in range(MAX_ROUNDS):
        listing = round_ == 0
        # after the first round only the volumes that hold wanted members are opened again
        subset = files if listing else [f for f in files if any(r.volser == f.volser for r in wanted)]
        got = lookup.ask(_request(subset, wanted, listing, entries))
        result.rounds += 1
        for vol in got["volumes"]:
            s = stats[vol["volser"]]
            s.file_size = vol.get("file_size", 0)
            s.read_bytes += vol.get("read_bytes", 0)
            s.seconds += vol.get("seconds", 0.0)
            if listing:
                entries[vol["volser"]] = {d["name"]: d for d in vol.get("datasets", [])}
                volumes[vol["volser"]] = VolumeListing(
                    volser=vol["volser"],
                    label=vol.get("label"),
                    error=vol.get("error"),
                    datasets={d["name"]: d["dsorg"] for d in vol.get("datasets", [])},
                )
        for m in got["members"]:
            ref = MemberRef(volser=m["volser"], dsn=m["dsn"], member=m["member"])
            members[member_key(ref)] = MemberRead(
                ref=ref,
                status=m["status"],
                message=m.get("message", ""),
                records=[base64.b64decode(r) for r in m.get("records", [])],
            )
        evaluation = evaluate(chain, volumes, members)
        result.evaluation = evaluation
        wanted = [r for r in evaluation.wanted if member_key(r) not in members]
        if not wanted:
            break
    else:
        raise VolumeLookupError(f"the IPL chain of {chain.image} still wanted members after {MAX_ROUNDS} rounds")
    result.stats = list(stats.values())
    for s in result.stats:
        log.info(
            "volume %s: read %s of %s bytes on %s in %.1f s",
            s.volser,
            f"{s.read_bytes:,}",
            f"{s.file_size:,}",
            lookup.where(),
            s.seconds,
        )
    return result


def volume_files(cfg: Config, manifests: dict[str, ComponentManifest]) -> list[VolumeFile]:
    """The staged files of the chosen generations, in the image's order."""
    files = []
    for name, manifest in manifests.items():
        directory = staging.volume_dir(cfg.storage.root, cfg.component(name).source)
        files += [VolumeFile(v.volser, posixpath.join(directory, v.file_name), v.gz_bytes) for v in manifest.volumes]
    return files


def ipl_report(
    cfg: Config, image: str, manifests: dict[str, ComponentManifest], timeouts: ssh.Timeouts = ssh.Timeouts()
) -> IplReport:
    """Check the IPL chain of `image` on the staged volumes of `manifests`, read on the storage server."""
    chain = chain_input(cfg, image)
    with VolumeLookup(cfg.storage, timeouts) as lookup:
        result = check_ipl_chain(lookup, chain, volume_files(cfg, manifests))
        where = lookup.where()
    ev = result.evaluation
    return IplReport(
        image=image,
        where=where,
        generations={c: m.generation for c, m in manifests.items()},
        findings=ev.findings,
        steps=ev.steps,
        unreadable=ev.unreadable,
        volumes=[
            VolumeRead(volser=s.volser, file_size=s.file_size, read_bytes=s.read_bytes, seconds=s.seconds)
            for s in result.stats
        ],
    )
