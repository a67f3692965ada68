"""Every rule of DESIGN.md §4 as the config loader applies it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from zimage import loadparm, names, sizing
from zimage.config import ConfigError, dump_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zimage.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def issues_of(data: dict | str) -> dict[str, str]:
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    return {i.path: i.message for i in info.value.issues}


def test_example_is_valid() -> None:
    cfg = parse_config(EXAMPLE.read_text())
    image = cfg.image("zos25-dev")
    assert cfg.target.zone_name == "jp-tok-1"
    assert cfg.target.vpc_url == "https://jp-tok.iaas.cloud.ibm.com/v1"
    assert image.ipl.loadparm == "0A82CSM1"
    assert [v.devnum for v in cfg.component("zos25-sysres").volumes] == ["0A80", "0A81"]


def test_dump_round_trips() -> None:
    cfg = parse_config(EXAMPLE.read_text())
    assert parse_config(dump_config(cfg)) == cfg


@pytest.mark.parametrize(
    ("mutate", "path", "words"),
    [
        (lambda d: d["components"][0]["volumes"][0].update(volser="MN25S2X"), "components[0].volumes[0].volser", "1-6"),
        (lambda d: d["components"][0]["volumes"][0].update(volser="mn25s2"), "components[0].volumes[0].volser", "A-Z"),
        (lambda d: d["components"][0]["volumes"][0].update(devnum=256), "components[0].volumes[0].devnum", "quote"),
        (lambda d: d["components"][0]["volumes"][0].update(devnum="0G80"), "components[0].volumes[0].devnum", "hex"),
        (lambda d: d["components"][0]["volumes"][0].update(devtype="3380-3"), "components[0].volumes[0]", "3390-9"),
        (lambda d: d["components"][0]["volumes"][0].update(cylinders=20000), "components[0].volumes[0]", "maximum"),
        (lambda d: d["images"][0]["ipl"].update(loadparm="0A82CSZ1"), "images[0].ipl.loadparm", "IMSI"),
        (lambda d: d["images"][0]["ipl"].update(loadparm="0A82C!M1"), "images[0].ipl.loadparm", "LOADxx"),
        (lambda d: d["images"][0]["ipl"].update(loadparm="0A82CSMX"), "images[0].ipl.loadparm", "nucleus"),
        (lambda d: d["images"][0]["ipl"].update(loadparm="0A82CSM12"), "images[0].ipl.loadparm", "1-8"),
        (lambda d: d["images"][0]["ipl"].update(device="0A90"), "images[0].ipl.device", "sysres"),
        (lambda d: d["components"][1].update(type="sysres"), "images[0].components", "exactly one"),
        (lambda d: d["components"][0].update(type="volumes"), "images[0].components", "found 0"),
        (lambda d: d["components"][1]["volumes"][0].update(volser="MN25S2"), "components[1].volumes[0].volser", "also"),
        (lambda d: d["components"][1]["volumes"][0].update(devnum="0A81"), "components[1].volumes[0].devnum", "also"),
        (lambda d: d["components"][0]["volumes"][1].update(volser="MN25S2"), "components[0].volumes[1].volser",
         "again"),
        (lambda d: d["components"][0].update(name="ZOS25_SYSRES"), "components[0].name", "lowercase"),
        (lambda d: d["images"][0].update(name="a" * 60), "images[0].name", "58"),
        (lambda d: d["target"].update(zone=4), "target.zone", "3"),
        (lambda d: d["storage"].update(root="home/ftp"), "storage.root", "absolute"),
        (lambda d: d["storage"].update(root="/home/../etc"), "storage.root", ".."),
        (lambda d: d["images"][0]["network"].update(HOMEIPADDRESS1="172.26.1.300"), "images[0].network.HOMEIPADDRESS1",
         "IPv4"),
        (lambda d: d["sources"][0]["extraction"].update(command="extract {volser} {target} {dsn}"),
         "sources[0].extraction.command", "{dsn}"),
        (lambda d: d["sources"][0]["extraction"].update(command="extract {volser!r} {target}"),
         "sources[0].extraction.command", "no format"),
        (lambda d: d["sources"][0]["extraction"].update(command="extract --unit {devnum}"),
         "sources[0].extraction.command", "{target}, {target_path} or {volser}"),
        (lambda d: d["sources"][0].update(name="SYSTEM123"), "sources[0].name", "1-8"),
        (lambda d: d["sources"][0].update(private_key_file=None), "sources[0]", "private_key_file"),
        (lambda d: d["sources"][0]["parmlib"].update(ieasym="SYS1.PARMLIB"), "sources[0].parmlib.ieasym", "member"),
        (lambda d: d["components"][0].update(source="NOSUCH"), "components[0].source", "no source"),
        (lambda d: d["images"][0]["components"].append("nope"), "images[0].components[2]", "no component"),
        (lambda d: d["target"]["cos"].update(bucket="Bad_Bucket"), "target.cos", "bucket"),
        (lambda d: d["target"].update(encryption_key_crn="key-1"), "target", "CRN"),
        (lambda d: d["target"]["mover"].update(image="ubuntu[22"), "target.mover.image", "regular expression"),
        (lambda d: d["target"].update(api_key_env="IBM-CLOUD KEY"), "target.api_key_env", "environment variable"),
        (lambda d: d["target"]["mover"].update(volume_proflie="x"), "target.mover.volume_proflie", "volume_profile"),
        (lambda d: d.update(imagez=[]), "imagez", "unknown key"),
    ],
)
def test_each_rule_names_the_field(mutate, path: str, words: str) -> None:
    data = example()
    mutate(data)
    found = issues_of(data)
    assert path in found, found
    assert words in found[path], found[path]


def test_all_errors_reported_at_once_with_lines() -> None:
    text = EXAMPLE.read_text().replace("zone: 1 ", "zone: 9 ").replace('devnum: "0A81"', "devnum: 0101")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "two.yaml")
    by_path = {i.path: i for i in info.value.issues}
    assert set(by_path) == {"target.zone", "components[0].volumes[1].devnum"}
    assert by_path["target.zone"].line == text.splitlines().index("  zone: 9                     # -> jp-tok-1") + 1
    assert "65" in by_path["components[0].volumes[1].devnum"].message  # octal 0101 is what YAML made of it
    assert str(info.value).startswith("two.yaml: 2 problem(s)")


def test_image_size_limit() -> None:
    data = example()
    data["components"][1]["volumes"] = [
        {"volser": f"BIG{i:03d}", "devnum": f"{0x1000 + i:04X}", "devtype": "3390-A"} for i in range(16)
    ]
    found = issues_of(data)
    assert "exceeds the limit" in found["images[0].components"]


def test_image_that_needs_more_than_one_volume_is_refused() -> None:
    # Under the 16 TB limit, but over what a capped 16,000 GB volume holds with ext2's overhead.
    data = example()
    data["components"][1]["volumes"] = [
        {"volser": f"BIG{i:03d}", "devnum": f"{0x1000 + i:04X}", "devtype": "3390-A", "cylinders": 1_160_000}
        for i in range(16)
    ]
    found = issues_of(data)
    assert "does not fit" in found["images[0].components"]


def test_invalid_yaml_and_non_mapping() -> None:
    assert "not valid YAML" in issues_of("storage: [unclosed")[""]
    assert "mapping" in issues_of("- a\n- b\n")[""]


def test_data_volume_size_as_the_reference() -> None:
    assert sizing.data_volume_gb(8_514_000_000) == 10  # ceil(8.514 * 1.1) = ceil(9.3654)
    assert sizing.data_volume_gb(20 * 10**12) == sizing.VOLUME_LIMIT_GB
    assert sizing.fits_data_volume(10**12)


NATIONAL = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@#$"


@given(st.text(alphabet=NATIONAL, min_size=1, max_size=6))
def test_volser_accepts_national_characters(value: str) -> None:
    assert names.volser(value) == value


@given(st.text(min_size=0, max_size=10))
def test_volser_rejects_everything_else(value: str) -> None:
    ok = 1 <= len(value) <= 6 and all(c in NATIONAL for c in value)
    if ok:
        assert names.volser(value) == value
    else:
        with pytest.raises(ValueError, match="VOLSER"):
            names.volser(value)


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_devnum_hex_any_case(n: int) -> None:
    assert names.devnum(f"{n:04x}") == f"{n:04X}"
    with pytest.raises(ValueError, match="quote"):
        names.devnum(n)


@given(st.text(max_size=6))
def test_devnum_rejects_non_hex(value: str) -> None:
    if len(value) == 4 and all(c in "0123456789abcdefABCDEF" for c in value):
        assert names.devnum(value) == value.upper()
    else:
        with pytest.raises(ValueError):
            names.devnum(value)


@given(
    st.text(alphabet="0123456789ABCDEF", min_size=4, max_size=4),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=2, max_size=2),
    st.sampled_from(list(" .ACDMPST")),
    st.sampled_from(list(" .0123456789")),
)
def test_loadparm_valid_positions(iodf: str, suffix: str, imsi: str, nucleus: str) -> None:
    value = iodf + suffix + imsi + nucleus
    assert loadparm.parse(value).text == value.rstrip()


@given(st.text(alphabet="BEFGHIJKLNOQRUVWXYZ!?", min_size=1, max_size=1))
def test_loadparm_bad_imsi(imsi: str) -> None:
    with pytest.raises(ValueError, match="position 7"):
        loadparm.parse("0A82CS" + imsi)


def test_loadparm_short_forms() -> None:
    assert loadparm.parse("0a82").iodf_devnum == "0A82"
    with pytest.raises(ValueError, match="positions 1-4"):
        loadparm.parse("0A8 CSM1")


@given(st.from_regex(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
def test_vpc_names(value: str) -> None:
    assert names.vpc_name(value) == value


@pytest.mark.parametrize("value", ["-a", "a-", "A", "1abc", "a" * 64, "a_b", ""])
def test_vpc_names_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="name"):
        names.vpc_name(value)


def test_config_lookup_errors_name_known_values() -> None:
    cfg = parse_config(EXAMPLE.read_text())
    with pytest.raises(KeyError, match="zos25-dev"):
        cfg.image("nope")


def test_defaults_fill_optional_sections() -> None:
    data = copy.deepcopy(example())
    del data["target"]["mover"]
    del data["images"][0]["network"]
    cfg = parse_config(yaml.safe_dump(data))
    assert cfg.target.mover.profile == "bx2d-16x64"
    assert cfg.images[0].network.HOMEIPADDRESS1 == "172.26.1.2"
