"""image-metadata.json and devmap from an example image."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from zimage import devmap, staging
from zimage.config import parse_config
from zimage.manifests import (
    ComponentManifest,
    ManifestMismatch,
    StagedVolume,
    image_metadata,
    image_volumes,
    render_json,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zimage.yaml"
GEN = "2023-06-13_18_44_13"
T0 = datetime(2023, 6, 13, 18, 44, 13, tzinfo=UTC)


def staged(volser: str, devnum: str, devtype: str, size: int) -> StagedVolume:
    return StagedVolume(
        volser=volser, devnum=devnum, devtype=devtype, file_name=staging.volume_file_name(volser, GEN),
        bytes=size, gz_bytes=size // 9, sha256=f"{size:064x}", gz_sha256=f"{size + 1:064x}",
        started=T0, finished=T0,
    )


def manifests_for(cfg) -> dict[str, ComponentManifest]:
    out = {}
    for comp in cfg.components:
        out[comp.name] = ComponentManifest(
            component=comp.name, system=comp.source, type=comp.type, generation=GEN, created=T0,
            volumes=[
                staged(v.volser, v.devnum, v.devtype, v.size_bytes - 1000 * i) for i, v in enumerate(comp.volumes)
            ],
        )
    return out


def read_reference_metadata(raw: bytes) -> dict:
    """A reader written from DESIGN.md §6 alone, as the reference data mover reads the file."""
    doc = json.loads(raw)
    image = doc["image"]
    volumes = doc["volumes"]
    assert isinstance(image["name"], str) and isinstance(image["size"], int) and isinstance(image["boot-size"], int)
    for vol in volumes:
        assert set(vol) >= {"name", "file-name", "compression", "boot"}
        assert vol["compression"] == "gzip"
        assert "/" not in vol["file-name"]
    return {
        "name": image["name"],
        "total": image["size"],
        "boot": image["boot-size"],
        "files": {v["name"]: v["file-name"] for v in volumes},
        "boot_volumes": [v["name"] for v in volumes if v["boot"]],
        "sum_sizes": sum(v["size"] for v in volumes),
    }


def test_image_metadata_read_by_a_schema_reader() -> None:
    cfg = parse_config(EXAMPLE.read_text())
    image = cfg.image("zos25-dev")
    vols = image_volumes(cfg, image, manifests_for(cfg))
    raw = render_json(image_metadata(image, vols))
    seen = read_reference_metadata(raw)
    assert seen["name"] == "zos25-dev"
    assert seen["boot_volumes"] == ["MN25S2", "MN25T1"]
    assert seen["files"]["USR001"] == f"USR001_{GEN}.gz"
    assert seen["total"] == seen["sum_sizes"] == sum(v.size for v in vols)
    sysres = cfg.component("zos25-sysres")
    assert seen["boot"] == sum(v.size_bytes - 1000 * i for i, v in enumerate(sysres.volumes))
    # deterministic: same input, same bytes
    assert raw == render_json(image_metadata(image, image_volumes(cfg, image, manifests_for(cfg))))


def test_devmap_lines_match_volumes_one_to_one() -> None:
    cfg = parse_config(EXAMPLE.read_text())
    image = cfg.image("zos25-dev")
    vols = image_volumes(cfg, image, manifests_for(cfg))
    text = devmap.render(image.devmap, [devmap.DevmapVolume(v.name, v.devnum, v.devtype) for v in vols])
    device_lines = [line.split() for line in text.splitlines() if line.startswith("device ")]
    assert device_lines == [["device", v.devnum, "3390", "3990", f"/volumes/{v.name}"] for v in vols]
    assert text.startswith("[system]\nmemory 16g\n3270port 3270\nprocessors 2\n\n[manager]\nname awsckd 0001\n")


def test_devmap_custom_system_and_extra_managers() -> None:
    text = EXAMPLE.read_text().replace(
        "    network: {",
        "    devmap:\n      system: {memory: 8g, 3270port: 3271, processors: 3}\n      path_prefix: /z/vols\n"
        "      managers:\n        - {name: aws3274, id: '0002', devices: ['0700 3279 3274 mstcon']}\n    network: {",
    )
    cfg = parse_config(text)
    image = cfg.image("zos25-dev")
    out = devmap.render(image.devmap, [devmap.DevmapVolume("MN25S2", "0A80", "3390")])
    assert "memory 8g\n3270port 3271\nprocessors 3\n" in out
    assert "device 0A80 3390 3990 /z/vols/MN25S2\n" in out
    assert out.endswith("[manager]\nname aws3274 0002\ndevice 0700 3279 3274 mstcon\n")


def test_manifest_must_match_the_component() -> None:
    cfg = parse_config(EXAMPLE.read_text())
    image = cfg.image("zos25-dev")
    manifests = manifests_for(cfg)
    short = manifests["zos25-sysres"].model_copy(update={"volumes": manifests["zos25-sysres"].volumes[:1]})
    with pytest.raises(ManifestMismatch, match="not staged: MN25T1"):
        image_volumes(cfg, image, {**manifests, "zos25-sysres": short})
    del manifests["zos25-data"]
    with pytest.raises(ManifestMismatch, match="zos25-data"):
        image_volumes(cfg, image, manifests)


@pytest.mark.parametrize("name", ["../etc/passwd", "MN25S2_2023-06-13_18_44_13.gz/../x", "/abs.gz", "mn25s2_x.gz"])
def test_manifest_file_names_cannot_escape(name: str) -> None:
    with pytest.raises(ValidationError, match="file name"):
        StagedVolume(
            volser="MN25S2", devnum="0A80", devtype="3390-9", file_name=name, bytes=1, gz_bytes=1,
            sha256="0" * 64, gz_sha256="0" * 64, started=T0, finished=T0,
        )


def test_generations_and_retention() -> None:
    listing = [
        "sysres_2023-01-01_00_00_00.manifest.json",
        "sysres_2023-02-01_00_00_00.manifest.json",
        "sysres_2023-03-01_00_00_00.manifest.json",
        "other_2023-01-01_00_00_00.manifest.json",
        "MN25S2_2023-01-01_00_00_00.gz",
    ]
    assert staging.generations(listing, "sysres")[-1] == "2023-03-01_00_00_00"
    assert staging.expired(listing, "sysres", 2) == ["2023-01-01_00_00_00"]
    assert staging.expired(listing, "sysres", 5) == []
    assert staging.generation_of(T0) == GEN
