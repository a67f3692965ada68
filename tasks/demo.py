"""The demo's set-up: a workdir with a simulated source system, a local staging directory, a
local object store and a config that points at them (DESIGN.md §12)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from infra.configfile import load_config
from infra.demo_source import make_volume

MARKER = ".zimage-demo"
IMAGE = "zdemo"
SYSTEM = "SYSDEMO"
SYSRES = [("ZRES01", "0A80"), ("ZRES02", "0A81")]


class DemoWorkdirError(RuntimeError):
    pass


def _records(lines: list[str], sequence: bool) -> str:
    # Fixed 80-byte records; IEASYM carries sequence numbers in columns 73-80 as parmlib members do.
    out = []
    for n, line in enumerate(lines, start=1):
        out.append(f"{line:<72}{n * 100:08d}" if sequence else f"{line:<80}")
    return "\n".join(out) + "\n"


PARMLIB = {
    "IEASYM00": _records(
        [
            "/* IEASYM00 - demo system: addresses come from Wazi aaS symbols */",
            "SYSDEF    SYMDEF(&HOMEIPADDRESS1.='172.26.1.2')",
            "          SYMDEF(&DEFAULTROUTEADDR.='172.26.1.1')",
            "          SYMDEF(&NAMESERVERADDR1.='172.26.1.1')",
            f"SYSDEF    SYSNAME({SYSTEM})",
            "          SYSCLONE(DM)",
        ],
        sequence=True,
    ),
    "PROFILE": _records(
        [
            f"; TCPIP PROFILE for {SYSTEM}",
            "DEVICE  OSA1     MPCIPA",
            "LINK    OSA1LNK  IPAQENET  OSA1",
            "HOME",
            "  &HOMEIPADDRESS1   OSA1LNK",
            "BEGINRoutes",
            "ROUTE DEFAULT &DEFAULTROUTEADDR  OSA1LNK  MTU 1492",
            "ENDRoutes",
            "START OSA1",
        ],
        sequence=False,
    ),
    "TCPDATA": _records(
        [f"; TCPDATA for {SYSTEM}", "TCPIPJOBNAME TCPIP", "NSINTERADDR &NAMESERVERADDR1", "RESOLVEVIA UDP"],
        sequence=False,
    ),
}


def check_workdir(workdir: Path) -> None:
    """A workdir is new, empty, or a previous demo's; anything else is refused and left untouched."""
    if workdir.exists() and not workdir.is_dir():
        raise DemoWorkdirError(f"{workdir} exists and is not a directory; choose another --workdir")
    if workdir.is_dir() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise DemoWorkdirError(
            f"{workdir} is not empty and is not a zimage demo directory (no {MARKER}); nothing was changed. "
            "Choose another --workdir or an empty directory."
        )


def demo_config(workdir: Path, volumes: int, cylinders: int) -> dict[str, Any]:
    source = workdir / "source"
    python = shlex.quote(sys.executable)
    volume_path = str(source / "{volser}.ckd").replace("{", "{{").replace("}", "}}").replace("{{volser}}", "{volser}")
    data = [(f"USR{n:03d}", f"{0x0A90 + n - 1:04X}") for n in range(1, volumes + 1)]
    return {
        "storage": {
            "host": "localhost", "username": "demo", "transport": "local", "root": str(workdir / "storage"),
        },
        "sources": [
            {
                "name": SYSTEM, "host": "localhost", "username": "demo", "transport": "local",
                "extraction": {
                    "command": f"{python} -m infra.extract_agent --volume {shlex.quote(volume_path)} "
                    "--target {target}",
                },
                "parmlib": {
                    "ieasym": str(source / "parmlib" / "IEASYM00"),
                    "tcpip_profile": str(source / "parmlib" / "PROFILE"),
                    "tcpdata": str(source / "parmlib" / "TCPDATA"),
                },
            }
        ],
        "target": {
            "region": "jp-tok", "zone": 1,
            "cos": {
                "instance_name": "demo", "bucket": "zimage-demo", "region": "jp-tok",
                "local_directory": str(workdir / "objects"),
            },
            "mover": {"mode": "local", "output_directory": str(workdir / "out")},
        },
        "components": [
            {
                "name": "demo-sysres", "source": SYSTEM, "type": "sysres", "retention": 2,
                "volumes": [
                    {"volser": v, "devnum": d, "devtype": "3390-1", "cylinders": cylinders} for v, d in SYSRES
                ],
            },
            {
                "name": "demo-data", "source": SYSTEM, "type": "volumes", "retention": 2,
                "volumes": [{"volser": v, "devnum": d, "devtype": "3390-1", "cylinders": cylinders} for v, d in data],
            },
        ],
        "images": [
            {
                "name": IMAGE, "components": ["demo-sysres", "demo-data"],
                "ipl": {"device": SYSRES[0][1], "loadparm": "0A82DMM1"},
            }
        ],
    }


@task(name="prepare-demo", task_run_name="prepare-demo", cache_policy=NO_CACHE)
def prepare_demo(workdir: str, volumes: int, cylinders: int) -> dict[str, Any]:
    log = get_run_logger()
    root = Path(workdir).expanduser().resolve()
    check_workdir(root)
    if not 1 <= volumes <= 20:
        raise ValueError(f"--volumes {volumes}: expected 1-20 data volumes")
    if not 1 <= cylinders <= 1113:
        raise ValueError(f"--cylinders {cylinders}: expected 1-1113 (a 3390-1)")
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).touch()
    config = demo_config(root, volumes, cylinders)
    config_path = root / "zimage.yaml"
    config_path.write_text(
        "# The demo's config, written by `zimage demo`: local source, staging, object store and mover.\n"
        + yaml.safe_dump(config, sort_keys=False)
    )
    cfg = load_config(config_path)  # the demo's own config passes the same checks as a user's
    source = root / "source"
    (source / "parmlib").mkdir(parents=True, exist_ok=True)
    for name, text in PARMLIB.items():
        (source / "parmlib" / name).write_text(text)
    made = {}
    for component in cfg.components:
        data_every = 0 if component.type == "sysres" else 3
        for vol in component.volumes:
            made[vol.volser] = make_volume(source / f"{vol.volser}.ckd", vol.volser, cylinders, data_every)
    log.info("demo source in %s: %s", source, ", ".join(f"{v} ({how})" for v, how in made.items()))
    for directory in ("storage", "objects", "out"):
        (root / directory).mkdir(exist_ok=True)
    return {
        "workdir": str(root), "config": str(config_path), "image": IMAGE,
        "components": [c.name for c in cfg.components], "volumes": made,
    }
