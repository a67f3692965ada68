"""Plain http endpoints for IAM, VPC, COS and the Resource Controller are refused unless the config
says `target.insecure_http: true` (a local stand-in), and warned about when used."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.ibmcloud import RESOURCE_CONTROLLER_ENV, connect
from infra.secrets import Secret
from tests.fakes.ibmcloud import FakeIbmCloud
from zimage.config import ConfigError, ipv4_cidr, parse_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zimage.yaml"


def _config(**target: Any) -> str:
    doc = yaml.safe_load(EXAMPLE.read_text())
    for key, value in target.items():
        if key == "cos_endpoint":
            doc["target"]["cos"]["endpoint"] = value
        else:
            doc["target"][key] = value
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(
    ("target", "named"),
    [
        ({"iam_endpoint": "http://iam.example.com"}, "iam_endpoint http://iam.example.com"),
        ({"vpc_endpoint": "http://jp-tok.example.com/v1"}, "vpc_endpoint http://jp-tok.example.com/v1"),
        ({"cos_endpoint": "http://s3.example.com"}, "cos.endpoint http://s3.example.com"),
    ],
)
def test_plain_http_is_refused_without_insecure_http(target: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=rf"target: .*{named}.*insecure_http: true"):
        parse_config(_config(**target))
    cfg = parse_config(_config(**target, insecure_http=True))
    assert cfg.target is not None and cfg.target.insecure_http
    assert list(cfg.target.http_endpoints().values()) == [next(iter(target.values()))]


def test_https_needs_nothing() -> None:
    cfg = parse_config(_config(iam_endpoint="https://iam.example.com"))
    assert cfg.target is not None and cfg.target.http_endpoints() == {}


def test_an_http_resource_controller_is_refused_and_insecure_http_is_warned_about(
    ibmcloud_fake: FakeIbmCloud, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(RESOURCE_CONTROLLER_ENV, ibmcloud_fake.url)
    strict = parse_config(_config()).target
    assert strict is not None
    with pytest.raises(ValueError, match=rf"{RESOURCE_CONTROLLER_ENV} {ibmcloud_fake.url}: plain http"):
        connect(strict, Secret(ibmcloud_fake.api_key, "test"))
    assert ibmcloud_fake.requests == []  # refused before the API key went anywhere

    local = parse_config(
        _config(iam_endpoint=ibmcloud_fake.url, vpc_endpoint=ibmcloud_fake.vpc_url, insecure_http=True)
    ).target
    assert local is not None
    caplog.set_level(logging.WARNING, logger="infra.ibmcloud")
    connect(local, Secret(ibmcloud_fake.api_key, "test"), resource_group=False)
    (warning,) = [r.getMessage() for r in caplog.records if "insecure_http" in r.getMessage()]
    assert f"iam_endpoint {ibmcloud_fake.url}" in warning and RESOURCE_CONTROLLER_ENV in warning
    assert ibmcloud_fake.api_key not in caplog.text


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "203.0.113.0/24", "198.51.100.7/32"])
def test_cidrs(cidr: str) -> None:
    assert ipv4_cidr(cidr, "ssh_from") == cidr


@pytest.mark.parametrize("bad", ["10.0.0.1/33", "10.0.0.1/24", "any", "", "::/0", "10.0.0.0/8 ; rm"])
def test_bad_cidrs_name_the_parameter(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^ssh_from .* is not an IPv4 CIDR block"):
        ipv4_cidr(bad, "ssh_from")
