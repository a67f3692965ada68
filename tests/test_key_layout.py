"""target.cos.key_layout and the files an image names (env_overrides, properties): keys, config
checks, the plan, and staging into a directory store. The S3 run is in tests/test_reference_mover.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from infra.configfile import load_config
from infra.mover_config import object_urls
from infra.object_store import LocalObjectStore, image_in_metadata, put_auxiliaries
from zimage import objects
from zimage.build import BuiltImage
from zimage.config import ConfigError
from zimage.manifests import ImageVolume
from zimage.plan import plan

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zimage.yaml"
VOLUME = "MN25S2_2023-06-13_18_44_13.gz"


def test_reference_layout_puts_the_inputs_at_the_bucket_root() -> None:
    keys = objects.ImageObjects("zos25-dev", objects.REFERENCE)
    assert (keys.metadata, keys.devmap, keys.env_overrides, keys.properties) == (
        "image-metadata.json",
        "devmap",
        "env-overrides",
        "properties.json",
    )
    assert keys.volume(VOLUME) == VOLUME and keys.inputs == ""
    assert keys.prefix == "zos25-dev/"  # what is not an input keeps the image's prefix
    per_image = objects.ImageObjects("zos25-dev")
    assert per_image.metadata == "zos25-dev/image-metadata.json" and per_image.volume(VOLUME) == f"zos25-dev/{VOLUME}"
    assert objects.volume_key("zos25-dev", VOLUME, objects.REFERENCE) == VOLUME


@pytest.mark.parametrize("layout", ["flat", "", "Reference"])
def test_an_unknown_key_layout_is_refused(layout: str) -> None:
    with pytest.raises(ValueError, match="key layout"):
        objects.metadata_key("zos25-dev", layout)
    with pytest.raises(ValueError, match="key layout"):
        objects.ImageObjects("zos25-dev", layout)


@pytest.mark.parametrize("file_name", ["../x.gz", "a/MN25S2_2023-06-13_18_44_13.gz", ""])
def test_reference_volume_keys_cannot_leave_the_root(file_name: str) -> None:
    with pytest.raises(ValueError, match="volume file name"):
        objects.volume_key("zos25-dev", file_name, objects.REFERENCE)


def _config(tmp_path: Path, layout: str | None = None, **image: object) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    if layout:
        doc["target"]["cos"]["key_layout"] = layout
    doc["images"][0].update(image)
    path = tmp_path / "conf" / "zimage.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_image_files_relative_to_the_config_are_made_absolute(tmp_path: Path) -> None:
    (tmp_path / "conf" / "aux").mkdir(parents=True)
    (tmp_path / "conf" / "aux" / "env").write_text("A=1\n")
    (tmp_path / "props.json").write_text("{}")
    path = _config(tmp_path, "reference", env_overrides="aux/env", properties=str(tmp_path / "props.json"))
    cfg = load_config(path)
    image = cfg.images[0]
    assert image.env_overrides == str(tmp_path / "conf" / "aux" / "env")
    assert image.properties == str(tmp_path / "props.json")
    assert cfg.target.cos.key_layout == "reference"
    assert load_config(_config(tmp_path)).target.cos.key_layout == "per-image"  # the default


def test_unreadable_image_files_are_named_with_field_and_line(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "adir").mkdir()
    path = _config(tmp_path, env_overrides="missing-env", properties="adir")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    conf = tmp_path / "conf"  # relative paths are read from the config's directory, and shown resolved
    assert f"images[0].env_overrides: {conf}/missing-env: No such file or directory (it is uploaded as env-ove" in text
    assert f"images[0].properties: {conf}/adir: not a regular file (it is uploaded as properties.json)" in text
    assert all(i.line for i in caught.value.issues)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "images[0].env_overrides" in result.output


def test_an_unknown_key_layout_fails_validation(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(_config(tmp_path, "flat"))])
    assert result.exit_code == 2
    assert "target.cos.key_layout: Input should be 'per-image' or 'reference'" in result.output


def test_plan_shows_the_keys_of_the_layout(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "props.json").write_text("{}")
    cfg = load_config(_config(tmp_path, "reference", properties="props.json"))
    shown = plan(cfg, "zos25-dev")
    keys = [o.key for o in shown.objects]
    assert keys[:3] == ["image-metadata.json", "devmap", "properties.json"]
    assert "MN25S2_<generation>.gz" in keys and "env-overrides" not in keys
    text = shown.text()
    assert "key layout reference" in text and f"properties.json  (from {tmp_path / 'conf' / 'props.json'})" in text
    per_image = [o.key for o in plan(load_config(_config(tmp_path)), "zos25-dev").objects]
    assert per_image[:2] == ["zos25-dev/image-metadata.json", "zos25-dev/devmap"]


def test_staging_removes_a_file_the_image_no_longer_names(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    contents = {objects.IMAGE_METADATA: b"{}", objects.DEVMAP: b"[system]\n", objects.ENV_OVERRIDES: b"A=1\n"}
    keys = put_auxiliaries(store, "zos25-dev", contents, objects.REFERENCE)
    assert keys == ["image-metadata.json", "devmap", "env-overrides"]
    assert store.get_bytes("env-overrides") == b"A=1\n"
    assert store.head("image-metadata.json").content_type == "application/json"
    keys = put_auxiliaries(store, "zos25-dev", {**contents, objects.ENV_OVERRIDES: None}, objects.REFERENCE)
    assert keys == ["image-metadata.json", "devmap"] and store.head("env-overrides") is None


def test_the_mover_is_given_the_staged_files_by_their_own_names(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    vol = ImageVolume(
        name="MN25S2",
        file_name=VOLUME,
        boot=True,
        devnum="0A80",
        devtype="3390",
        size=100,
        sha256="a" * 64,
        gz_sha256="b" * 64,
        gz_size=10,
        component="sysres",
    )
    built = BuiltImage(
        image="zdemo", generations={"sysres": "2023-06-13_18_44_13"}, volumes=[vol], metadata=b"{}", devmap=""
    )
    contents = {objects.IMAGE_METADATA: b"{}", objects.DEVMAP: b"", objects.PROPERTIES: json.dumps({}).encode()}
    put_auxiliaries(store, built.image, contents, objects.REFERENCE)
    urls = object_urls(store, built, 60, objects.REFERENCE)
    assert sorted(urls) == sorted(["image-metadata.json", "devmap", "properties.json", built.volumes[0].file_name])
    assert urls["properties.json"].endswith("/store/properties.json")


def test_a_bucket_root_holding_another_image_is_recognised(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    assert image_in_metadata(store, "image-metadata.json") is None
    store.put_bytes("image-metadata.json", json.dumps({"image": {"name": "zos24-old"}, "volumes": []}).encode())
    assert image_in_metadata(store, "image-metadata.json") == "zos24-old"
    store.put_bytes("image-metadata.json", b'{"volumes": []}')  # the existing builder's names none
    assert image_in_metadata(store, "image-metadata.json") is None


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_local_deploy_in_the_reference_layout(staged_site: Path, tmp_path: Path) -> None:
    from flows.deploy_image import deploy_image
    from tests.support.datamover import ext2_dump, ext2_names
    from tests.support.vsi_emulator import IMAGE, site_config

    (tmp_path / "env-overrides").write_bytes(b"ZOS_SYSTEM=S0W1\n")
    store, out = tmp_path / "store", tmp_path / "out"
    cos = {
        "instance_name": "c",
        "bucket": "b-local",
        "region": "jp-tok",
        "local_directory": str(store),
        "key_layout": "reference",
    }
    target = {"region": "jp-tok", "zone": 1, "cos": cos, "mover": {"mode": "local", "output_directory": str(out)}}
    doc = site_config(staged_site, target=target)
    doc["images"][0]["env_overrides"] = "env-overrides"  # beside the config
    config = tmp_path / "zimage.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))

    summary = deploy_image(str(config), IMAGE)

    staged = {p.name for p in store.iterdir() if p.is_file()}
    assert {"image-metadata.json", "devmap", "env-overrides"} <= staged
    assert {n for n in staged if n.endswith(".gz")} == {
        "ZRES01_2024-06-01_10_00_00.gz",
        "WORK01_2024-06-01_10_00_00.gz",
    }
    assert not (store / IMAGE / "image-metadata.json").exists()
    data = Path(summary["data_image"])
    assert {"ZRES01", "WORK01", "devmap", "env-overrides"} <= ext2_names(data)
    assert ext2_dump(data, "/env-overrides", tmp_path / "env.back") == b"ZOS_SYSTEM=S0W1\n"
