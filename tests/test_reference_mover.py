"""The existing builder's data_mover.py (tests/reference/, unmodified) on what zimage stages into the
S3 server on loopback. With `target.cos.key_layout: reference` a deploy leaves exactly the root keys the
reference reads, in its schema; the reference converts them into the same files, byte for byte, that
zimage's own mover put on the data volume. With the default per-image layout it cannot find them.

The reference authenticates to COS with an API key through IAM (the IBM Cloud fake's) and reads the
bucket with ibm_boto3; its functions are called in the order of its `__main__` on local directories,
because its `__main__` formats and mounts the VSI's block devices under /volumes.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from infra.object_store import put_auxiliaries
from tests.support.datamover import e2fsck_clean, ext2_dump, ext2_names, ext2_stat
from tests.support.vsi_emulator import IMAGE, DeploySite, VsiEmulator
from zimage import objects

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]

REFERENCE_MOVER = Path(__file__).resolve().parent / "reference" / "data_mover.py"
GENERATION = "2024-06-01_10_00_00"  # what the deploy site's extraction is named
VOLUME_FILES = {f"ZRES01_{GENERATION}.gz", f"WORK01_{GENERATION}.gz"}
ENV_OVERRIDES = b"# copied as it is, never parsed\nZOS_SYSTEM=S0W1\n"
PROPERTIES = b'{"zos.ipl.loadparm": "0A82CSM1"}\n'


def reference_mover(monkeypatch: pytest.MonkeyPatch, site: DeploySite, out: Path) -> ModuleType:
    """The reference module as its cloud-init runs it: settings in the environment (.env), COS
    through IAM with an API key; its /volumes/{boot,data}/ directories moved under `out`."""
    settings = {
        "cosEndpoint": site.bucket.endpoint,
        "cosAPIKey": site.fake.api_key,
        "cosInstanceCRN": "crn:v1:bluemix:public:cloud-object-storage:global:a/0123:4567::",
        "cosBucketName": site.bucket.bucket,
        "customImageName": IMAGE,
        "iamEndpoint": site.fake.url,
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("reference_data_mover", REFERENCE_MOVER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("boot", "data"):
        (out / name).mkdir(parents=True)
    module.BOOT_VOLUME_DIRECTORY = f"{out}/boot/"
    module.DATA_VOLUME_DIRECTORY = f"{out}/data/"
    return module


def run_reference(module: ModuleType) -> list[Any]:
    """The steps of the reference's `__main__` between mounting the volumes and making the qcow2."""
    module.copy_env_overrides_file()
    module.copy_properties_file()
    volumes = module.parse_metadata_file(module.pull_metadata_file())
    module.pull_devmap()
    return [module.get_volume_file(volume) for volume in volumes]


def _reference_config(site: DeploySite, tmp: Path) -> str:
    (tmp / "files").mkdir()
    (tmp / "files" / "env-overrides").write_bytes(ENV_OVERRIDES)
    (tmp / "files" / "zos.properties.json").write_bytes(PROPERTIES)
    path = Path(site.config(cos={**site.bucket.cos_config(), "key_layout": "reference"}))
    doc = yaml.safe_load(path.read_text())
    # one relative to the config's directory, one absolute
    doc["images"][0].update(env_overrides="files/env-overrides", properties=str(tmp / "files" / "zos.properties.json"))
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_reference_layout_is_converted_by_the_reference_mover_as_by_zimage(
    deploy_site: DeploySite, vsi_emulator: VsiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = deploy_site
    site.deploy(_reference_config(site, tmp_path))
    assert site.fake.leftovers() == []
    (vsi,) = vsi_emulator.vsis
    assert vsi.returncode == 0, vsi.mover_log

    # exactly the root keys the reference reads, and the qcow2 where its Terraform imports it from: a copy
    # of the build's own
    root = {key for key in site.objects() if "/" not in key}
    assert root == {"image-metadata.json", "devmap", "env-overrides", "properties.json", f"{IMAGE}.qcow2",
                    *VOLUME_FILES}
    (built,) = [key for key in site.objects() if key.endswith(f"/{IMAGE}.qcow2")]
    assert site.get(f"{IMAGE}.qcow2") == site.get(built) and len(site.get(built)) > 0
    head = site.bucket.client().head_object(Bucket=site.bucket.bucket, Key="image-metadata.json")
    assert head["ContentType"] == "application/json"  # the reference Terraform's data source reads it
    assert site.get("env-overrides") == ENV_OVERRIDES and site.get("properties.json") == PROPERTIES
    metadata = json.loads(site.get("image-metadata.json"))
    # the reference schema: what data_mover.py and the Terraform (locals.tf, vsi.tf) read, with its types
    assert isinstance(metadata["image"]["size"], int) and isinstance(metadata["image"]["boot-size"], int)
    assert {v["file-name"] for v in metadata["volumes"]} == VOLUME_FILES
    for volume in metadata["volumes"]:
        assert isinstance(volume["name"], str) and volume["file-name"].startswith(volume["name"] + "_")
        assert volume["compression"] == "gzip" and isinstance(volume["boot"], bool)
    assert metadata["image"]["size"] == sum(v["size"] for v in metadata["volumes"])
    assert metadata["image"]["boot-size"] == sum(v["size"] for v in metadata["volumes"] if v["boot"])
    assert [v["name"] for v in metadata["volumes"] if v["boot"]] == ["ZRES01"]

    out = tmp_path / "reference"
    converted = run_reference(reference_mover(monkeypatch, site, out))

    assert sorted(converted) == ["WORK01", "ZRES01"]  # all-in-data, as zimage's default layout
    files = {p.name for p in (out / "data").iterdir()}
    assert files == {"ZRES01", "WORK01", "devmap", ".zosprepared", "env-overrides", "properties.json"}
    data = vsi.devices["zimage-data"]  # the data volume zimage's mover filled
    e2fsck_clean(data)
    assert ext2_names(data) - {"lost+found"} == files
    for name in sorted(files):
        assert ext2_dump(data, f"/{name}", tmp_path / f"{name}.zimage") == (out / "data" / name).read_bytes(), name
        assert (ext2_stat(data, f"/{name}")["uid"], ext2_stat(data, f"/{name}")["gid"]) == (999, 999), name


def test_the_reference_mover_finds_nothing_in_the_per_image_layout(
    deploy_site: DeploySite, cos_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    contents = {objects.IMAGE_METADATA: b'{"volumes": []}', objects.DEVMAP: b"[system]\n"}
    keys = put_auxiliaries(cos_store, IMAGE, contents, objects.PER_IMAGE)
    assert keys == [f"{IMAGE}/image-metadata.json", f"{IMAGE}/devmap"]
    module = reference_mover(monkeypatch, deploy_site, tmp_path / "reference")
    module.copy_env_overrides_file()  # optional objects: absent is no error
    with pytest.raises(SystemExit, match=r"File image-metadata\.json not found in bucket"):
        module.pull_metadata_file()
