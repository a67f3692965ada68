"""On an emulator host: install one deployed set of an image (DESIGN.md §15).

Run as `python3 -c BOOTSTRAP` over SSH: the bootstrap reads this package as a zipapp from stdin into
an anonymous memory file (nothing of the tool is written to the host's disks) and calls
`datamover host`, which reads one JSON job line from stdin.

`probe` only reads: Python, the owner, the root, free space, the current set, the sets and their
open files, whether the storage server answers. `deploy` builds `<root>/<image>/sets/<set>/` beside
the current set: every volume pulled from the storage server (OpenSSH `ssh` + SFTP, with a
short-lived key held in memory only), read from a local path, or received on stdin (relay), then
decompressed, sha256- and VOL1-checked and written sparse; a volume whose bytes in the current set
are still those deployed from the same extraction is copied on the host instead (reflink where the
file system can). `current` is switched (rename of a symlink) only when the whole set is verified;
the sets the orchestrator names are then removed unless a process holds one of their files open.

`stage` runs on the storage server instead: one staged file uploaded into COS through presigned part
URLs (datamover.stage).

Answers go to stdout as JSON lines (`{"need": VOLSER}` asks the relay for a volume, then one
`{"result": ...}` or `{"error": ...}`); log and progress lines go to stderr.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import pwd
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Optional

from datamover.codec import inflate_module
from datamover.convert import Settings, convert_volume
from datamover.errors import MoverError
from datamover.manifest import VolumeEntry
from datamover.names import check_image_name, check_object_name, check_volser
from datamover.progress import Progress, Ticker, log
from datamover.rewrite import apply_jobs, member_jobs
from datamover.sftp import SftpConnection, SftpError
from datamover.sources import LocalSource
from datamover.stage import Unreachable, check_reachable, stage

SET_FILE = "zimage-set.json"
LOCK_FILE = ".zimage-deploy.lock"
MIN_PYTHON = (3, 8)
FREE_MARGIN = 1 << 20
_SET_NAME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}_[0-9]{2}_[0-9]{2}-[0-9a-f]{8}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_OWNER_IDS = re.compile(r"([0-9]+):([0-9]+)")

# Run by `python3 -c`: the zipapp's length on the first line of stdin, then its bytes.
BOOTSTRAP = (
    "import os,sys\n"
    "if sys.version_info<(3,8):\n"
    " sys.stderr.write('datamover: error: Python %d.%d on this host; 3.8 or later is needed\\n'%sys.version_info[:2])\n"
    " sys.exit(3)\n"
    "r=sys.stdin.buffer;n=int(r.readline());z=r.read(n)\n"
    "fd=os.memfd_create('zimage-datamover',0);os.write(fd,z)\n"
    "sys.path.insert(0,'/proc/self/fd/%d'%fd)\n"
    "from datamover.cli import main\n"
    "sys.exit(main(['host']))\n"
)


class HostError(MoverError):
    """A refusal or failure here; `retryable`: whether the orchestrator's next try may pass (a
    mistake in the job or the host stays one, a lost stream may not)."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


# what another try meets again: the disk is full, the file system read-only, access denied
_FINAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def retryable(exc: BaseException) -> bool:
    """Whether the error the mover answers with may pass on the orchestrator's next try."""
    flag = getattr(exc, "retryable", None)
    if flag is not None:
        return bool(flag)
    if isinstance(exc, SftpError):  # the connection to the storage server
        return True
    return isinstance(exc, OSError) and exc.errno not in _FINAL_ERRNOS


def _answer(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def run_host(job_file: Optional[str]) -> int:
    """Exit status 0 with a result line, 1 with an error line."""
    try:
        if job_file:
            with open(job_file, "rb") as handle:
                raw = handle.readline()
        else:
            raw = sys.stdin.buffer.readline()
        job = _job(raw)
        if job["action"] == "stage":  # on a storage server: upload where the bytes lie
            _watch_stdin()
            result = stage(job)
        elif job["action"] == "reach":  # preflight: could this server upload to the object store?
            url = job.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise HostError(f"reach job: url {url!r}: expected an http(s) URL")
            check_reachable(url)
            result = {"python": "%d.%d.%d" % sys.version_info[:3]}
        else:
            result = probe(job) if job["action"] == "probe" else Deploy(job).run()
    except (MoverError, OSError) as exc:
        log(f"error: {exc}")
        _answer({
            "error": str(exc), "retryable": retryable(exc),
            **({"unreachable": True} if isinstance(exc, Unreachable) else {}),
        })  # fmt: skip
        return 1
    _answer({"result": result})
    return 0


# --- the job ------------------------------------------------------------------------------------


def _job(raw: bytes) -> dict[str, Any]:
    try:
        job = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HostError(f"job: not valid JSON: {exc}") from None
    if not isinstance(job, dict) or job.get("action") not in ("probe", "deploy", "stage", "reach"):
        raise HostError("job: expected an object with action probe, deploy, stage or reach")
    if job["action"] in ("stage", "reach"):
        return job  # checked where they run (datamover.stage; the reach URL above)
    root = job.get("root")
    if not isinstance(root, str) or not root.startswith("/") or ".." in root.split("/"):
        raise HostError(f"root {root!r} must be an absolute path without '..'")
    job["root"] = os.path.normpath(root)
    check_image_name(job.get("image"), "image")
    if job["action"] == "deploy":
        if not isinstance(job.get("set"), str) or not _SET_NAME.fullmatch(job["set"]):
            raise HostError(f"set {job.get('set')!r} is not a set name")
        for i, vol in enumerate(job.get("volumes") or []):
            check_volser(vol.get("volser"), f"volumes[{i}].volser")
            check_object_name(vol.get("file_name"), f"volumes[{i}].file_name")
            for key in ("sha256", "gz_sha256"):
                if not isinstance(vol.get(key), str) or not _SHA256.fullmatch(vol[key]):
                    raise HostError(f"volumes[{i}].{key} is not a sha256 digest")
        for name in job.get("remove") or []:
            if not _SET_NAME.fullmatch(name):
                raise HostError(f"remove: {name!r} is not a set name")
    return job


def owner_ids(owner: object) -> tuple[int, int]:
    """(uid, gid) of a user name or `uid:gid`; the user must exist here."""
    if not isinstance(owner, str) or not owner:
        raise HostError(f"owner {owner!r}: expected a user name or uid:gid")
    ids = _OWNER_IDS.fullmatch(owner)
    if ids:
        return int(ids.group(1)), int(ids.group(2))
    try:
        entry = pwd.getpwnam(owner)
    except KeyError:
        raise HostError(f"owner {owner!r} does not exist on this host (no such user)") from None
    return entry.pw_uid, entry.pw_gid


def _check_owner(uid: int, gid: int, owner: str) -> None:
    if os.geteuid() == 0:
        return
    if uid != os.geteuid() or (gid != os.getegid() and gid not in os.getgroups()):
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise HostError(
            f"user {me} cannot give files to owner {owner!r} ({uid}:{gid}): only root can; "
            "log in as root or as that user"
        )


def _existing_parent(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _check_root(root: str) -> str:
    """The nearest existing directory of root, which this user must be able to write."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise HostError(f"root {root} exists and is not a directory")
    base = _existing_parent(root)
    if not os.path.isdir(base) or not os.access(base, os.W_OK | os.X_OK):
        raise HostError(f"root {root}: {base} is not a directory this user can write")
    return base


def free_bytes(path: str) -> int:
    st = os.statvfs(_existing_parent(path))
    return st.f_bavail * st.f_frsize


# --- sets ----------------------------------------------------------------------------------------


def _read_set(directory: str) -> Optional[dict[str, Any]]:
    try:
        with open(os.path.join(directory, SET_FILE), "rb") as handle:
            doc = json.loads(handle.read(16 << 20))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise HostError(f"{directory}/{SET_FILE} cannot be read: {exc}") from None
    return doc if isinstance(doc, dict) else None


def _current(image_dir: str) -> Optional[str]:
    try:
        target = os.readlink(os.path.join(image_dir, "current"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise HostError(f"{image_dir}/current is not a symlink; zimage owns what is below the root") from None
        raise
    return os.path.basename(target.rstrip("/"))


def _allocated(path: str) -> int:
    total = 0
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_blocks * 512
    return total


def open_files(directories: list[str]) -> dict[str, list[int]]:
    """directory -> pids holding a file below it open (as far as /proc shows this user)."""
    found: dict[str, list[int]] = {d: [] for d in directories}
    prefixes = [(d, os.path.realpath(d) + "/") for d in directories]
    me = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or pid == me:
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            for directory, prefix in prefixes:
                if target.startswith(prefix) and int(pid) not in found[directory]:
                    found[directory].append(int(pid))
    return found


def _sets(image_dir: str) -> list[dict[str, Any]]:
    sets_dir = os.path.join(image_dir, "sets")
    try:
        names = sorted(n for n in os.listdir(sets_dir) if _SET_NAME.fullmatch(n))
    except FileNotFoundError:
        return []
    busy = open_files([os.path.join(sets_dir, n) for n in names])
    out = []
    for name in names:
        path = os.path.join(sets_dir, name)
        doc = _read_set(path)
        out.append(
            {
                "name": name,
                "complete": doc is not None,
                "created": (doc or {}).get("created"),
                "allocated": _allocated(path),
                "open_by": busy[path],
            }
        )
    return out


def _storage_reach(storage: Optional[dict[str, Any]]) -> dict[str, Any]:
    if not storage:
        return {}
    try:
        with socket.create_connection((storage["host"], int(storage["port"])), timeout=5) as sock:
            banner = sock.recv(64)
            address = sock.getsockname()[0]
    except (OSError, KeyError, ValueError) as exc:
        return {"storage_reachable": False, "storage_error": f"{storage.get('host')}:{storage.get('port')}: {exc}"}
    if not banner.startswith(b"SSH-"):
        return {"storage_reachable": False, "storage_error": "the storage address does not answer as an SSH server"}
    return {"storage_reachable": True, "local_address": address}


def probe(job: dict[str, Any]) -> dict[str, Any]:
    uid, gid = owner_ids(job.get("owner"))
    _check_owner(uid, gid, job["owner"])
    _check_root(job["root"])
    image_dir = os.path.join(job["root"], job["image"])
    current = _current(image_dir)
    current_set = _read_set(os.path.join(image_dir, "current")) if current else None
    allocated = {}
    if current_set:
        for vol in current_set.get("volumes", []):
            try:
                st = os.stat(os.path.join(image_dir, "current", check_volser(vol.get("volser"), "volser")))
                allocated[vol["volser"]] = st.st_blocks * 512
            except FileNotFoundError:
                pass
    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "owner_uid": uid,
        "owner_gid": gid,
        "free_bytes": free_bytes(job["root"]),
        "current": current,
        "current_set": current_set,
        "allocated": allocated,
        "sets": _sets(image_dir),
        **_storage_reach(job.get("storage")),
    }


# --- where a volume's bytes come from --------------------------------------------------------------


class _Secrets:
    """The short-lived key and the storage's known_hosts, in anonymous memory files: they vanish with
    this process, however it ends, and never reach a disk."""

    def __init__(self, key: str, known_hosts: str) -> None:
        self._fds = [self._memory(key), self._memory(known_hosts)]
        # ssh closes inherited descriptors, so it opens ours through this process's /proc entry
        self.key, self.known_hosts = (f"/proc/{os.getpid()}/fd/{fd}" for fd in self._fds)

    @staticmethod
    def _memory(text: str) -> int:
        fd = os.memfd_create("zimage", os.MFD_CLOEXEC)
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode() if text.endswith("\n") else (text + "\n").encode())
        return fd

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


class StorageSource:
    """Volumes pulled from the storage server over one SSH connection (system OpenSSH client)."""

    def __init__(self, storage: dict[str, Any], directory_of: dict[str, str]) -> None:
        self._storage = storage
        self._directory_of = directory_of
        self._secrets = _Secrets(storage["private_key"], storage["known_hosts"])
        self._conn: Optional[SftpConnection] = None

    def describe(self) -> str:
        return f"{self._storage['username']}@{self._storage['host']}:{self._storage['port']}"

    def _connection(self) -> SftpConnection:
        if self._conn is None:
            options = [
                "IdentitiesOnly=yes", "IdentityAgent=none", "BatchMode=yes", "StrictHostKeyChecking=yes",
                f"UserKnownHostsFile={self._secrets.known_hosts}", "GlobalKnownHostsFile=/dev/null",
                "ConnectTimeout=15", "ServerAliveInterval=15", "ForwardAgent=no", "ClearAllForwardings=yes",
                # AES-GCM first: with AES instructions it costs both ends less CPU than ChaCha20
                "Ciphers=aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr",
            ]  # fmt: skip
            argv = ["ssh", "-i", self._secrets.key, *(x for o in options for x in ("-o", o))]
            argv += ["-p", str(int(self._storage["port"])), "-l", self._storage["username"]]
            argv += ["-s", self._storage["host"], "sftp"]
            self._conn = SftpConnection(argv, f"storage server {self.describe()}")
        return self._conn

    def _path(self, name: str) -> str:
        return self._directory_of[check_object_name(name, "volume file")] + "/" + name

    def size(self, name: str) -> int:
        return self._connection().size(self._path(name))

    def open(self, name: str) -> Any:
        try:
            return self._connection().open(self._path(name))
        except MoverError:
            self._drop()  # a retry starts a fresh connection
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()
        self._secrets.close()


class _RelayReader:
    def __init__(self, stream: Any, length: int) -> None:
        self._stream = stream
        self._left = length

    def read(self, size: int) -> bytes:
        if self._left <= 0:
            return b""
        data = self._stream.read(min(size, self._left))
        if not data:
            raise HostError(f"relay: the stream ended {self._left} bytes early", retryable=True)
        self._left -= len(data)
        return data

    def close(self) -> None:
        while self._left > 0:  # the rest of an abandoned volume, so that the next header is in place
            if not self.read(1 << 20):
                break


class RelaySource:
    """Volumes sent by the orchestrator on stdin, each asked for with a `need` line."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self._sizes = sizes

    def describe(self) -> str:
        return "the orchestrator (relay)"

    def size(self, name: str) -> int:
        return self._sizes[name]

    def open(self, name: str) -> _RelayReader:
        _answer({"need": name})
        header = json.loads(sys.stdin.buffer.readline() or b"null")
        if not isinstance(header, dict) or header.get("file") != name or not isinstance(header.get("bytes"), int):
            raise HostError(f"relay: expected the bytes of {name}, got {header!r}", retryable=True)
        return _RelayReader(sys.stdin.buffer, header["bytes"])

    def close(self) -> None:
        pass


class _LocalFiles:
    """Volumes read where they lie: storage and host are one machine."""

    def __init__(self, directory_of: dict[str, str]) -> None:
        self._sources = {name: LocalSource(d) for name, d in directory_of.items()}

    def describe(self) -> str:
        return "local files"

    def size(self, name: str) -> int:
        return self._sources[name].size(name)

    def open(self, name: str) -> Any:
        return self._sources[name].open(name)

    def close(self) -> None:
        pass


# --- deploy ---------------------------------------------------------------------------------------


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return round(usage.ru_utime + usage.ru_stime, 2)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while True:
            block = handle.read(1 << 20)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes, owner: tuple[int, int]) -> None:
    temp = path + ".tmp"
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chown(temp, *owner)
    os.chmod(temp, 0o644)
    os.replace(temp, path)


def _watch_stdin() -> None:
    """Without the orchestrator the run stops: the next run resumes it (current is untouched)."""

    def watch() -> None:
        while os.read(0, 1 << 16):  # the raw descriptor: a buffered reader's lock would block shutdown
            pass
        log("the orchestrator's connection is gone: stopping (a re-run resumes what was done)")
        os._exit(75)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


class Deploy:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.owner = owner_ids(job.get("owner"))
        self.image_dir = os.path.join(job["root"], job["image"])
        self.sets_dir = os.path.join(self.image_dir, "sets")
        self.set = job["set"]
        self.set_dir = os.path.join(self.sets_dir, self.set)
        self.volumes: list[dict[str, Any]] = job.get("volumes") or []
        self.outcome: dict[str, dict[str, Any]] = {}
        self.rewrites = member_jobs(job.get("rewrites"), "deploy job: rewrites")

    def run(self) -> dict[str, Any]:
        _check_owner(*self.owner, self.job["owner"])
        _check_root(self.job["root"])
        current = _current(self.image_dir)
        current_doc = _read_set(os.path.join(self.image_dir, "current")) if current else None
        if current == self.set and current_doc is not None:
            log(f"set {self.set} is already current")
            return self._result(switched=False, removed=self._prune(current))
        complete = _read_set(self.set_dir) is not None  # built and verified; only the switch was missing
        done = self._done() if os.path.isdir(self.set_dir) and not complete else {}
        reuse = {} if complete else self._reusable(current_doc, done)
        if not complete:
            self._check_space(done, reuse)
        if self.job.get("data_path") != "relay":
            _watch_stdin()
        self._make_dirs()
        with open(os.path.join(self.image_dir, LOCK_FILE), "a") as lock:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HostError(f"another deploy of {self.job['image']} is running on this host") from None
            if not complete:
                self._build(done, reuse)
            self._switch()
            return self._result(switched=True, removed=self._prune(self.set))

    # --- decisions before the first byte ---------------------------------------------------------

    def _done(self) -> dict[str, dict[str, Any]]:
        """Volumes an interrupted run of this set finished (resume)."""
        out = {}
        for vol in self.volumes:
            record = os.path.join(self.set_dir, f".{vol['volser']}.done")
            try:
                with open(record, "rb") as handle:
                    doc = json.loads(handle.read())
                size = os.stat(os.path.join(self.set_dir, vol["volser"])).st_size
            except (OSError, ValueError):
                continue
            if doc.get("extracted_sha256") == vol["sha256"] and size == vol["size"]:
                out[vol["volser"]] = doc
        return out

    def _reusable(self, current_doc: Optional[dict[str, Any]], done: dict[str, Any]) -> dict[str, str]:
        """VOLSER -> deployed sha256 for volumes the current set holds from the same extraction."""
        if not current_doc:
            return {}
        recorded = {v.get("volser"): v for v in current_doc.get("volumes", []) if isinstance(v, dict)}
        out = {}
        for vol in self.volumes:
            old = recorded.get(vol["volser"])
            fresh = vol["volser"] not in done and old and old.get("extracted_sha256") == vol["sha256"]
            if fresh and isinstance(old.get("deployed_sha256"), str) and _SHA256.fullmatch(old["deployed_sha256"]):
                out[vol["volser"]] = old["deployed_sha256"]
        return out

    def _check_space(self, done: dict[str, Any], reuse: dict[str, str]) -> None:
        need = FREE_MARGIN
        for vol in self.volumes:
            if vol["volser"] in done:
                continue
            if vol["volser"] in reuse:
                need += os.stat(os.path.join(self.image_dir, "current", vol["volser"])).st_blocks * 512
            else:
                need += vol["size"]
        have = free_bytes(self.job["root"])
        if need > have:
            raise HostError(
                f"not enough free space in {self.job['root']} on this host: {need:,} bytes needed for set "
                f"{self.set}, {have:,} available; nothing was written"
            )

    # --- writing ---------------------------------------------------------------------------------

    def _make_dirs(self) -> None:
        for path in (self.job["root"], self.image_dir, self.sets_dir, self.set_dir):
            if not os.path.isdir(path):
                os.makedirs(path, 0o755)
                os.chown(path, *self.owner)

    def _build(self, done: dict[str, Any], reuse: dict[str, str]) -> None:
        for volser, record in done.items():
            log(f"volume {volser}: finished by an earlier run of set {self.set}")
            self.outcome[volser] = {
                "origin": record.get("origin", "transferred"),
                "moved": 0,
                "resumed": True,
                "deployed_sha256": record["deployed_sha256"],
            }
        for vol in self.volumes:
            if vol["volser"] in reuse:
                self._copy(vol, reuse[vol["volser"]])
        pending = [v for v in self.volumes if v["volser"] not in self.outcome]
        if pending:
            self._transfer(pending)
        self._finish()

    def _copy(self, vol: dict[str, Any], deployed: str) -> None:
        volser = vol["volser"]
        source = os.path.join(self.image_dir, "current", volser)
        part = os.path.join(self.set_dir, volser + ".part")
        start = time.monotonic()
        subprocess.run(
            ["cp", "--reflink=auto", "--sparse=always", "--", source, part],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        digest = sha256_file(part)
        if digest != deployed:
            os.unlink(part)
            log(f"volume {volser}: the file in the current set changed since it was deployed; transferring it")
            return
        self._place(vol, part, digest, "reused", 0)
        log(
            f"volume {volser}: {vol['size'] / 1e6:,.1f} MB copied on the host in {time.monotonic() - start:.2f} s "
            "(same extraction, file unchanged)"
        )

    def _source(self) -> Any:
        directory_of = {v["file_name"]: v["directory"] for v in self.volumes}
        kind = self.job.get("data_path")
        if kind == "direct":
            return StorageSource(self.job["storage"], directory_of)
        if kind == "local":
            return _LocalFiles(directory_of)
        if kind == "relay":
            return RelaySource({v["file_name"]: v["gz_size"] for v in self.volumes})
        raise HostError(f"data_path {kind!r}: expected direct, local or relay")

    def _transfer(self, pending: list[dict[str, Any]]) -> None:
        relay = self.job.get("data_path") == "relay"
        # every volume's sha256 is in the job: the compressed bytes need no hash of their own
        settings = Settings(inflate_module()[1], retries=0 if relay else 2, retry_delay=2.0, sync=True)
        progress = Progress()
        for vol in pending:
            progress.add_volume(vol["volser"], vol["gz_size"], vol["size"])
        progress.set_phase("converting")
        source = self._source()
        try:
            with Ticker(progress, float(self.job.get("progress_every", 2.0))):
                for vol in pending:
                    self._transfer_one(vol, source, progress, settings)
        finally:
            source.close()

    def _transfer_one(self, vol: dict[str, Any], source: Any, progress: Progress, settings: Settings) -> None:
        entry = VolumeEntry(
            name=vol["volser"],
            file_name=vol["file_name"],
            compression="gzip",
            boot=False,
            devnum=vol["devnum"],
            devtype=vol["devtype"],
            size=vol["size"],
            sha256=vol["sha256"],
            gz_sha256=vol["gz_sha256"],
        )
        part = os.path.join(self.set_dir, vol["volser"] + ".part")
        result = convert_volume(entry, "data", source, part, progress, threading.Event(), settings)
        if result.state != "succeeded":
            raise HostError(result.error or f"volume {vol['volser']}: {result.state}", result.retryable)
        self._place(vol, part, result.sha256 or "", "transferred", result.gz_bytes, result.seconds)

    def _place(
        self, vol: dict[str, Any], part: str, digest: str, origin: str, moved: int, seconds: float = 0.0
    ) -> None:
        final = os.path.join(self.set_dir, vol["volser"])
        digest = self._rewrite(vol["volser"], part, digest)
        os.chown(part, *self.owner)
        os.chmod(part, 0o644)
        os.replace(part, final)
        record = {"extracted_sha256": vol["sha256"], "deployed_sha256": digest, "origin": origin}
        _write_file(os.path.join(self.set_dir, f".{vol['volser']}.done"), json.dumps(record).encode(), self.owner)
        self.outcome[vol["volser"]] = {"origin": origin, "moved": moved, "deployed_sha256": digest, "seconds": seconds}

    def _rewrite(self, volser: str, part: str, digest: str) -> str:
        """The host's network symbols into this volume's IEASYMxx members (in place); the new sha256."""
        return apply_jobs(part, volser, self.rewrites) or digest

    def _finish(self) -> None:
        files = self.job.get("files") or {}
        for name in ("devmap", "ipl"):
            _write_file(os.path.join(self.set_dir, name), str(files.get(name, "")).encode(), self.owner)
        doc = dict(self.job["set_document"])
        doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for vol in doc["volumes"]:
            vol["deployed_sha256"] = self.outcome[vol["volser"]]["deployed_sha256"]
            vol["origin"] = self.outcome[vol["volser"]]["origin"]
        _write_file(os.path.join(self.set_dir, SET_FILE), (json.dumps(doc, indent=2) + "\n").encode(), self.owner)
        for vol in self.volumes:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.set_dir, f".{vol['volser']}.done"))
        _fsync_dir(self.set_dir)
        log(f"set {self.set}: every volume verified")

    def _switch(self) -> None:
        link = os.path.join(self.image_dir, "current")
        temp = os.path.join(self.image_dir, f".current-{self.set}")
        if os.path.lexists(temp):
            os.unlink(temp)
        os.symlink(os.path.join("sets", self.set), temp)
        os.lchown(temp, *self.owner)
        os.replace(temp, link)  # rename of a symlink: readers see the old set or the new one
        _fsync_dir(self.image_dir)
        log(f"current -> sets/{self.set}")

    def _prune(self, current: Optional[str]) -> dict[str, list[str]]:
        names = [n for n in self.job.get("remove") or [] if n not in (self.set, current)]
        paths = {n: os.path.join(self.sets_dir, n) for n in names if os.path.isdir(os.path.join(self.sets_dir, n))}
        busy = open_files(list(paths.values()))
        removed, kept_busy = [], []
        for name, path in paths.items():
            if busy[path]:
                log(f"set {name}: left in place, files open by pid {', '.join(map(str, busy[path]))}")
                kept_busy.append(name)
                continue
            shutil.rmtree(path)
            removed.append(name)
            log(f"set {name}: removed (beyond keep)")
        return {"removed": removed, "busy": kept_busy}

    def _result(self, switched: bool, removed: dict[str, list[str]]) -> dict[str, Any]:
        sizes = {v["volser"]: v["size"] for v in self.volumes}
        return {
            "set": self.set,
            "switched": switched,
            "volumes": [{"volser": k, "bytes": sizes.get(k, 0), **v} for k, v in self.outcome.items()],
            "moved_bytes": sum(v["moved"] for v in self.outcome.values()),
            "reused_bytes": sum(sizes.get(k, 0) for k, v in self.outcome.items() if v["origin"] == "reused"),
            "free_bytes": free_bytes(self.job["root"]),
            "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "cpu_seconds": {"mover": _cpu(resource.RUSAGE_SELF), "ssh": _cpu(resource.RUSAGE_CHILDREN)},
            **removed,
        }
