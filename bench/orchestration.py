"""Benchmark: what the flows cost beyond moving bytes, for an image of many small volumes (DESIGN §18).

extract-component (each component) + deploy-image run through Prefect (a temporary PREFECT_HOME, the
ephemeral API) on the demo's local backends: local source and staging, local object store, the data
mover run locally; the volumes are one cylinder each, so bytes are few and the time is orchestration
(task and flow runs, state writes, artifacts, logs). The same bytes are then moved without Prefect,
in this process: the extraction agent per volume (two at once, like the source's volume limit), the
sha256 of each staged file, a copy of each into the object directory, and the data mover. Prints, for
a small image (--base, 2 volumes) and a large one (--volumes, 20 by default; DESIGN §18's figure is
for 200, at most 60 s): the flows' seconds, the bytes' seconds, and orchestration = their difference,
in total and per volume.

Run from the repository root: python -m bench.orchestration [--volumes N] [--base N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def make_site(work: Path, volumes: int) -> tuple[Path, dict[str, Any]]:
    """A demo site of `volumes` one-cylinder volumes (two of them sysres)."""
    from tasks.demo import IMAGE, PARMLIB, demo_config
    from zimage import ckd

    shutil.rmtree(work, ignore_errors=True)
    doc = demo_config(work, volumes=max(1, volumes - 2), cylinders=1)
    (work / "source" / "parmlib").mkdir(parents=True)
    for name, text in PARMLIB.items():
        (work / "source" / "parmlib" / name).write_text(text)
    for comp in doc["components"]:
        for vol in comp["volumes"]:
            with (work / "source" / f"{vol['volser']}.ckd").open("wb") as out:
                out.writelines(ckd.volume_tracks(vol["volser"], 1, data_every=2))
    for directory in ("storage", "objects", "out"):
        (work / directory).mkdir()
    path = work / "zimage.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert doc["images"][0]["name"] == IMAGE
    return path, doc


def run_flows(config: Path, doc: dict[str, Any]) -> float:
    from flows.deploy_image import deploy_image
    from flows.extract_component import extract_component

    start = time.perf_counter()
    generations = {c["name"]: extract_component(str(config), c["name"])["generation"] for c in doc["components"]}
    extracted = time.perf_counter()
    deploy_image(str(config), doc["images"][0]["name"], generations)
    end = time.perf_counter()
    print(f"  flows: extract-component {extracted - start:.1f} s, deploy-image {end - extracted:.1f} s", flush=True)
    return end - start


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def move_bytes(work: Path, doc: dict[str, Any]) -> float:
    """The flows' byte work without Prefect: agent per volume, sha256 on staging, copy, data mover."""
    staging, objects, out = work / "direct-staging", work / "direct-objects", work / "direct-out"
    for directory in (staging, objects, out):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir()
    volumes = [v for c in doc["components"] for v in c["volumes"]]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def extract(vol: dict[str, Any]) -> None:
        target = staging / f"{vol['volser']}.gz"
        subprocess.run([sys.executable, "-m", "infra.extract_agent", "--volume", str(work / "source" /
                        f"{vol['volser']}.ckd"), "--target", str(target)], check=True, capture_output=True, env=env)
        _sha256(target)
        shutil.copyfile(target, objects / target.name)

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(extract, volumes))
    _mover_inputs(work, doc, objects)
    subprocess.run([sys.executable, "-m", "datamover", "local", "--objects", str(objects), "--out", str(out)],
                   check=True, capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - start


def _mover_inputs(work: Path, doc: dict[str, Any], objects: Path) -> None:
    """image-metadata.json and devmap for the directly staged volumes (what build-image writes)."""
    import json

    volumes = [{"name": v["volser"], "file-name": f"{v['volser']}.gz", "compression": "gzip",
                "boot": c["type"] == "sysres", "devnum": v["devnum"], "devtype": "3390"}
               for c in doc["components"] for v in c["volumes"]]
    image = {"name": doc["images"][0]["name"]}
    (objects / "image-metadata.json").write_text(json.dumps({"image": image, "volumes": volumes}))
    (objects / "devmap").write_text("[system]\nmemory 16g\n\n[manager]\nname awsckd 0001\n" + "".join(
        f"device {v['devnum']} 3390 3990 /volumes/{v['name']}\n" for v in volumes))


def measure(work: Path, volumes: int) -> tuple[float, float]:
    config, doc = make_site(work / f"v{volumes}", volumes)
    flows = run_flows(config, doc)
    direct = move_bytes(work / f"v{volumes}", doc)
    return flows, direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=20, help="volumes of the large image (200 for DESIGN §18)")
    parser.add_argument("--base", type=int, default=2, help="volumes of the small image")
    parser.add_argument("--workdir", default="/tmp/zimage-bench-orchestration")
    args = parser.parse_args()
    if args.base < 2 or args.volumes <= args.base:
        raise SystemExit("--base must be at least 2 (two sysres volumes) and --volumes more than --base")
    work = Path(args.workdir)
    home = Path(tempfile.mkdtemp(prefix="zimage-bench-prefect-"))
    os.environ.pop("PREFECT_API_URL", None)  # the ephemeral API, as `zimage run` and the demo use it
    os.environ.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
                      PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    try:
        measure(work, args.base)  # warm-up: the ephemeral server's start, imports, the database's tables
        rows = [(n, *measure(work, n)) for n in (args.base, args.volumes)]
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"\n{'volumes':>8} {'flows s':>9} {'bytes s':>9} {'orchestration s':>16} {'per volume s':>13}")
    for n, flows, direct in rows:
        print(f"{n:>8} {flows:>9.1f} {direct:>9.1f} {flows - direct:>16.1f} {(flows - direct) / n:>13.3f}")
    (small, f_small, d_small), (large, f_large, d_large) = rows
    marginal = ((f_large - d_large) - (f_small - d_small)) / (large - small)
    print(f"\nmarginal orchestration per volume: {marginal:.3f} s; for 200 volumes: {marginal * 200:.1f} s "
          f"(target <= 60 s); ratio flows/bytes at {large} volumes: {f_large / d_large:.2f}x")
    print(f"load average: {os.getloadavg()[0]:.1f} (other work on the machine skews the times)")


if __name__ == "__main__":
    main()
