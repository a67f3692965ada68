"""Object keys of an image build (zimage.objects): the layout the data mover and the publisher rely on."""

from __future__ import annotations

import pytest

from zimage import objects


def test_layout_of_an_image() -> None:
    keys = objects.ImageObjects("zos25-dev")
    assert keys.metadata == "zos25-dev/image-metadata.json"
    assert keys.devmap == "zos25-dev/devmap"
    assert keys.env_overrides == "zos25-dev/env-overrides"
    assert keys.properties == "zos25-dev/properties.json"
    assert keys.volume("MN25S2_2023-06-13_18_44_13.gz") == "zos25-dev/MN25S2_2023-06-13_18_44_13.gz"


def test_the_mover_outputs_are_scoped_by_build() -> None:
    assert objects.mover_config_key("zos25-dev", "b1a2b3c4") == "zos25-dev/builds/b1a2b3c4/mover-config.json"
    assert objects.progress_key("zos25-dev", "b1a2b3c4") == "zos25-dev/builds/b1a2b3c4/progress.json"
    assert objects.report_key("zos25-dev", "b1a2b3c4") == "zos25-dev/builds/b1a2b3c4/report.json"
    assert objects.qcow2_key("zos25-dev", "b1a2b3c4") == "zos25-dev/builds/b1a2b3c4/zos25-dev.qcow2"
    assert objects.report_key("zos25-dev", "b1a2b3c4") != objects.report_key("zos25-dev", "b0000000")
    with pytest.raises(ValueError, match="build id"):
        objects.report_key("zos25-dev", "../x")


def test_custom_image_href_names_the_builds_qcow2() -> None:
    href = objects.qcow2_href("jp-tok", "wazi-custom-image-bucket", "zos25-dev", "b1a2b3c4")
    assert href == "cos://jp-tok/wazi-custom-image-bucket/zos25-dev/builds/b1a2b3c4/zos25-dev.qcow2"


def test_ledger_key() -> None:
    assert objects.ledger_key("zos25-dev-20240101T000000-1a2b") == "zimage-ledger/zos25-dev-20240101T000000-1a2b.json"


def test_auxiliary_content_types() -> None:
    assert objects.content_type("image-metadata.json") == "application/json"
    assert objects.content_type("properties.json") == "application/json"
    assert objects.content_type("devmap").startswith("text/plain")
    assert objects.auxiliary_key("zos25-dev", "env-overrides") == "zos25-dev/env-overrides"
    with pytest.raises(ValueError, match="not an auxiliary object"):
        objects.auxiliary_key("zos25-dev", "report.json")


@pytest.mark.parametrize(
    "file_name",
    ["../MN25S2_2023-06-13_18_44_13.gz", "x/MN25S2_2023-06-13_18_44_13.gz", "MN25S2.gz", "", "/etc/passwd"],
)
def test_volume_file_names_cannot_leave_the_volumes_prefix(file_name: str) -> None:
    with pytest.raises(ValueError, match="volume file name"):
        objects.volume_key("zos25-dev", file_name)


@pytest.mark.parametrize("image", ["Zos", "../x", "a/b", "-a", "a-", "", "x" * 64])
def test_image_names_are_checked(image: str) -> None:
    with pytest.raises(ValueError):
        objects.metadata_key(image)
    with pytest.raises(ValueError):
        objects.ImageObjects(image)


@pytest.mark.parametrize("build", ["", "-x", "a/b", "a..b", "a.b", "x" * 129, "a b"])
def test_build_ids_are_checked(build: str) -> None:
    with pytest.raises(ValueError, match="build id"):
        objects.ledger_key(build)


@pytest.mark.parametrize(("region", "bucket"), [("JP-TOK", "bucket-a"), ("jp-tok", "Bucket"), ("jp-tok", "a..b")])
def test_href_parts_are_checked(region: str, bucket: str) -> None:
    with pytest.raises(ValueError):
        objects.qcow2_href(region, bucket, "zos25-dev", "b1a2b3c4")
