"""Answer a request for the data sets and members of volume images, where the volumes lie.

    python3 mover.pyz lookup --request REQUEST.json [--out ANSWER.json]

Request: {"volumes": [{"volser", "path", "size"?}], "members": [{"volser", "dsn", "member",
"dataset"?}], "list": true|false}; "dataset" is the data set's entry from an earlier listing, so
the VTOC is not read again. Answer: per volume its label, data sets (with "list"), the bytes read and
an error when the volume cannot be read; per member "found" with its records (base64, as
stored), "absent", or "error" with a message. Each volume is opened once and its members are
read in the order of their data sets on the volume, so a gzip'd volume is inflated forward.
"""

import base64
import json
import os
import sys
import time
from typing import Optional

from datamover import pds
from datamover.dataset import find, records_in
from datamover.errors import MoverError
from datamover.volume import VolumeImage
from datamover.vtoc import dataset_entry, dataset_from_entry, read_vtoc


def _member(want: dict, status: str, records: Optional[list] = None, message: str = "") -> dict:
    out = {"volser": want["volser"], "dsn": want["dsn"], "member": want["member"], "status": status}
    if records is not None:
        out["records"] = [base64.b64encode(r).decode("ascii") for r in records]
    if message:
        out["message"] = message
    return out


def _volume(entry: dict, members: list, listing: bool) -> tuple:
    path, volser = entry["path"], entry["volser"]
    out: dict = {"volser": volser, "path": path, "error": None}
    started = time.monotonic()
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        out["error"] = f"{path}: cannot open: {exc.strerror or exc}"
        return out, [_member(m, "error", message=out["error"]) for m in members]
    out["file_size"] = size
    expected = entry.get("size")
    if expected is not None and size != expected:
        out["error"] = f"{path}: {size} bytes, the extraction recorded {expected}: the file is truncated or changed"
        return out, [_member(m, "error", message=out["error"]) for m in members]
    answers = []
    try:
        with VolumeImage(path) as volume:
            # members that carry their data set (from an earlier listing) need no VTOC
            vtoc = read_vtoc(volume) if listing or not all("dataset" in m for m in members) else None
            if vtoc is not None:
                out["label"] = vtoc.volser
            if listing and vtoc is not None:
                out["datasets"] = [dataset_entry(ds, volume.heads) for ds in vtoc.datasets]
            located = []
            for want in members:
                try:
                    ds = dataset_from_entry(want["dataset"]) if "dataset" in want else find(volume, vtoc, want["dsn"])
                except pds.NotFound as exc:
                    answers.append(_member(want, "absent", message=str(exc)))
                    continue
                located.append((ds.absolute_track(0, volume.heads) or 0, want, ds))
            for _track, want, ds in sorted(located, key=lambda item: item[0]):
                try:
                    answers.append(_member(want, "found", records_in(volume, ds, want["member"])))
                except pds.NotFound as exc:
                    answers.append(_member(want, "absent", message=str(exc)))
                except MoverError as exc:
                    answers.append(_member(want, "error", message=str(exc)))
            out["read_bytes"] = volume.read_bytes()
            out["inflated_bytes"] = volume.inflated_bytes()
    except (MoverError, OSError) as exc:
        out["error"] = str(exc)
        done = {(a["dsn"], a["member"]) for a in answers}
        answers += [_member(m, "error", message=str(exc)) for m in members if (m["dsn"], m["member"]) not in done]
    out["seconds"] = round(time.monotonic() - started, 3)
    return out, answers


def answer(request: dict) -> dict:
    listing = bool(request.get("list", True))
    members = request.get("members", [])
    volumes, found = [], []
    for entry in request.get("volumes", []):
        mine = [m for m in members if m["volser"] == entry["volser"]]
        vol, answers = _volume(entry, mine, listing)
        volumes.append(vol)
        found += answers
    known = {v["volser"] for v in request.get("volumes", [])}
    found += [
        _member(m, "error", message=f"volume {m['volser']} is not in the request")
        for m in members
        if m["volser"] not in known
    ]
    return {"volumes": volumes, "members": found}


def run_lookup(request_path: str, out_path: Optional[str]) -> int:
    try:
        with open(request_path, encoding="utf-8") as f:
            request = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"datamover: lookup: cannot read the request {request_path}: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(answer(request))
    if out_path is None:
        sys.stdout.write(text + "\n")
        return 0
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0
