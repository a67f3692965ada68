"""Fixtures for the data mover's tests: object directories, ext2/qcow2 inspection, a small HTTP
server standing in for presigned COS URLs and the VSI metadata service, and a VSI emulation whose
"devices" are image files mounted with -o loop."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_datamover(
    *args: str, python: str = sys.executable, zipapp: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The mover's command line as a user runs it: `python -m datamover ...` (or a zipapp)."""
    command = [python, str(zipapp)] if zipapp else [python, "-m", "datamover"]
    return subprocess.run(
        [*command, *args], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


@dataclass
class MoverObjects:
    """An object directory as the orchestrator stages it: gzip'd volumes, image-metadata.json, devmap."""

    root: Path
    raw: dict[str, Path] = field(default_factory=dict)  # VOLSER -> uncompressed volume
    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, volser: str, raw: Path, boot: bool = False, devnum: str = "0A80", **override: Any) -> dict[str, Any]:
        data = raw.read_bytes()
        packed = gzip.compress(data, compresslevel=1, mtime=0)
        file_name = f"{volser}_2024-06-13_18_44_13.gz"
        (self.root / file_name).write_bytes(packed)
        entry = {
            "name": volser, "file-name": file_name, "compression": "gzip", "boot": boot, "devnum": devnum,
            "devtype": "3390", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "gz-sha256": hashlib.sha256(packed).hexdigest(), **override,
        }
        self.raw[volser] = raw
        self.entries.append(entry)
        return entry

    def write(
        self, image: str | None = "zos25-dev", env_overrides: bytes | None = None, properties: bytes | None = None
    ) -> Path:
        """image None: image-metadata.json names no image, as the reference builder's does not."""
        sizes = [e.get("size", 0) for e in self.entries]
        doc = {"image": {"name": image, "size": sum(sizes), "boot-size": 0}, "volumes": self.entries}
        if image is None:
            del doc["image"]["name"]
        (self.root / "image-metadata.json").write_text(json.dumps(doc, indent=1))
        devmap = "[system]\nmemory 16g\n\n[manager]\nname awsckd 0001\n" + "".join(
            f"device {e.get('devnum', '0A80')} 3390 3990 /volumes/{e['name']}\n" for e in self.entries
        )
        (self.root / "devmap").write_text(devmap)
        for name, content in (("env-overrides", env_overrides), ("properties.json", properties)):
            if content is not None:
                (self.root / name).write_bytes(content)
        return self.root


@pytest.fixture
def mover_objects(tmp_path: Path) -> MoverObjects:
    root = tmp_path / "objects"
    root.mkdir()
    return MoverObjects(root)


# --- inspecting ext2 images and qcow2 files with the real tools ---


def _tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=120)


def e2fsck_clean(image: Path) -> str:
    done = _tool("e2fsck", "-fn", str(image))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def ext2_label(image: Path) -> str:
    done = _tool("dumpe2fs", "-h", str(image))
    match = re.search(r"^Filesystem volume name:\s*(\S*)", done.stdout, re.M)
    assert match, done.stderr
    return match.group(1)


def ext2_stat(image: Path, path: str) -> dict[str, int]:
    """uid, gid, size and 512-byte blocks of a file inside the image (debugfs stat)."""
    out = _tool("debugfs", "-R", f'stat "{path}"', str(image)).stdout
    match = re.search(r"User:\s*(\d+)\s+Group:\s*(\d+).*?Size:\s*(\d+)", out, re.S)
    blocks = re.search(r"Blockcount:\s*(\d+)", out)
    assert match and blocks, f"debugfs stat {path}: {out}"
    return {"uid": int(match[1]), "gid": int(match[2]), "size": int(match[3]), "blocks": int(blocks[1])}


def ext2_names(image: Path, directory: str = "/") -> set[str]:
    out = _tool("debugfs", "-R", f'ls -p "{directory}"', str(image)).stdout
    return {line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6} - {".", ".."}


def ext2_dump(image: Path, path: str, dest: Path) -> bytes:
    done = _tool("debugfs", "-R", f'dump "{path}" "{dest}"', str(image))
    assert dest.exists(), done.stderr
    return dest.read_bytes()


def qcow2_check(path: Path) -> None:
    done = _tool("qemu-img", "check", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    info = json.loads(_tool("qemu-img", "info", "--output=json", str(path)).stdout)
    assert info["format"] == "qcow2"


def qcow2_to_raw(path: Path, dest: Path) -> Path:
    done = _tool("qemu-img", "convert", "-O", "raw", str(path), str(dest))
    assert done.returncode == 0, done.stderr
    return dest


# --- an HTTP server for presigned URLs and the instance metadata service ---


@dataclass
class ServerState:
    objects: dict[str, bytes] = field(default_factory=dict)  # path -> body served by GET
    uploads: dict[str, bytes] = field(default_factory=dict)  # path (with query) -> last body PUT/POSTed
    upload_order: list[str] = field(default_factory=list)  # paths without query, in order of arrival
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> cut the first GET after N bytes
    instance: dict[str, Any] | None = None  # the metadata service's instance document
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path.split("?", 1)[0]
        if path == "/metadata/v1/instance" and state.instance is not None:
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                return self._reply(401, b"no token")
            return self._reply(200, json.dumps(state.instance).encode())
        body = state.objects.get(path)
        if body is None:
            return self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>")
        start, end, status = 0, len(body) - 1, 200
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match:
            start, status = int(match[1]), 206
            end = min(end, int(match[2])) if match[2] else end
            if start >= len(body):
                return self._reply(416)
        part = body[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Length", str(len(part)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        self.end_headers()
        with state.lock:
            cut = state.drop_after.pop(path, None)
        if cut is not None:  # a connection that breaks in the middle of the body
            self.wfile.write(part[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(part)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_PUT(self) -> None:
        state = self.server.state
        body = self._body()
        if self.path.startswith("/instance_identity/v1/token"):
            if self.headers.get("Metadata-Flavor") != "ibm":
                return self._reply(400, b"Metadata-Flavor: ibm missing")
            return self._reply(200, json.dumps({"access_token": state.token}).encode())
        with state.lock:
            state.uploads[self.path] = body
            state.upload_order.append(self.path.split("?", 1)[0])
        self._reply(200, headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

    def do_POST(self) -> None:
        state = self.server.state
        body = self._body()
        with state.lock:
            state.uploads[self.path] = body
            state.upload_order.append(self.path.split("?", 1)[0])
        self._reply(200, b"<CompleteMultipartUploadResult/>")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


@dataclass
class ObjectServer:
    url: str
    state: ServerState

    def serve_dir(self, root: Path, prefix: str = "/objects/") -> dict[str, str]:
        """Serve every file under root; returns object name -> a presigned-looking URL."""
        urls = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            self.state.objects[prefix + name] = path.read_bytes()
            urls[name] = f"{self.url}{prefix}{name}?X-Amz-Signature=secret-{uuid.uuid4().hex[:8]}"
        return urls


@pytest.fixture
def object_server() -> Iterator[ObjectServer]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ServerState()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ObjectServer(f"http://127.0.0.1:{server.server_address[1]}", server.state)
    finally:
        server.shutdown()
        server.server_close()


# --- the mover VSI, emulated: image files as attached volumes, loop mounts ---


@dataclass
class VsiEmulation:
    devices: dict[str, Path]  # role -> image file standing for the attached volume
    attachments: dict[str, str]  # role -> attachment name
    env: dict[str, str]
    workdir: Path


def _loop_mounts_work(tmp: Path) -> str | None:
    """None when this machine lets us mount an image file with -o loop, else why not."""
    if os.geteuid() != 0:
        return "needs root for mount"
    for tool in ("mount", "umount", "mke2fs"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    image, point = tmp / "probe.img", tmp / "probe"
    point.mkdir()
    made = _tool("mke2fs", "-q", "-F", "-t", "ext2", str(image), "1024")
    if made.returncode != 0:
        return f"mke2fs failed: {made.stderr.strip()}"
    mounted = _tool("mount", "-o", "loop", str(image), str(point))
    if mounted.returncode != 0:
        return f"loop mounts are not allowed here: {mounted.stderr.strip()}"
    _tool("umount", str(point))
    return None


@pytest.fixture
def vsi_emulation(tmp_path: Path, object_server: ObjectServer) -> Iterator[VsiEmulation]:
    reason = _loop_mounts_work(tmp_path)
    if reason:
        pytest.skip(reason)
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    devices, attachments, volume_attachments = {}, {}, []
    for role, size in (("data", 256 << 20), ("boot", 128 << 20), ("scratch", 128 << 20)):
        device_id = f"0717-{uuid.uuid4()}"
        image = tmp_path / f"{role}.disk"
        with image.open("wb") as handle:
            handle.truncate(size)
        (by_id / f"virtio-{device_id[:20]}").symlink_to(image)
        name = f"zimage-test-{role}"
        devices[role], attachments[role] = image, name
        volume_attachments.append({"id": f"0717-{uuid.uuid4()}", "name": name, "device": {"id": device_id},
                                   "volume": {"name": f"vol-{role}"}})
    object_server.state.instance = {"id": "0717_test", "name": "zimage-mover", "volume_attachments": volume_attachments}
    workdir = tmp_path / "mover"
    env = {"ZIMAGE_METADATA_URL": object_server.url, "ZIMAGE_DEVICE_DIR": str(by_id)}
    try:
        yield VsiEmulation(devices, attachments, env, workdir)
    finally:  # never leave a mount behind, even when the mover or the test failed
        for role in ("data", "boot", "scratch"):
            point = workdir / role
            if point.is_dir() and os.path.ismount(point):
                _tool("umount", "-l", str(point))
