"""zimage import-terraform: variables.tf defaults overridden by tfvars, the API key never copied."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows.cli import app
from zimage.terraform import import_variables

VARIABLES_TF = '''
variable "ibmcloud_api_key" {
  type      = string
  sensitive = true
}
variable "region" {
  default = "jp-tok"
}
variable "zone" {
  default = 1
}
variable "resource_group" {
  default = "Default"
}
variable "cos_instance_name" {
  default = "cos-wazi"
}
variable "cos_bucket_name" {
  default = "wazi-custom-image-bucket"
}
variable "cos_bucket_region" {
  default = "jp-tok"
}
variable "data_mover_profile" {
  default = "bx2d-16x64"
}
variable "volume_profile" {
  default = "10iops-tier"
}
variable "custom_image_name" {
  default = ""
}
variable "custom_image_os" {
  default = "zos-2-4-s390x-dev-test-byol"
}
variable "iam_endpoint" {
  default = "https://iam.cloud.ibm.com"
}
variable "unrelated_thing" {
  default = 3
}
'''

TFVARS = '''
ibmcloud_api_key  = "AbCdEf-very-secret-key-0123456789"
region            = "us-south"
zone              = "us-south-2"
custom_image_name = "zos24-dev"
cos_bucket_region = "us-south"
'''


def test_tfvars_override_defaults() -> None:
    imported = import_variables([("variables.tf", VARIABLES_TF), ("my.auto.tfvars", TFVARS)])
    assert imported.target["region"] == "us-south"
    assert imported.target["zone"] == 2
    assert imported.target["cos"] == {
        "instance_name": "cos-wazi", "bucket": "wazi-custom-image-bucket", "region": "us-south"
    }
    assert imported.target["mover"] == {"profile": "bx2d-16x64", "volume_profile": "10iops-tier"}
    assert imported.image == {"name": "zos24-dev", "os": "zos-2-4-s390x-dev-test-byol"}
    assert any("unrelated_thing" in n for n in imported.notes)
    assert "secret" not in repr(imported)


def test_cli_writes_target_without_the_key(tmp_path: Path) -> None:
    (tmp_path / "variables.tf").write_text(VARIABLES_TF)
    (tmp_path / "my.auto.tfvars").write_text(TFVARS)
    out = tmp_path / "zimage.yaml"
    result = CliRunner().invoke(
        app, ["import-terraform", str(tmp_path / "variables.tf"), str(tmp_path / "my.auto.tfvars"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "very-secret" not in text and "very-secret" not in result.output
    assert "IBMCLOUD_API_KEY" in result.output
    doc = yaml.safe_load(text)
    assert doc["target"]["api_key_env"] == "IBMCLOUD_API_KEY"
    assert doc["images"][0]["name"] == "zos24-dev"


def test_cli_updates_an_existing_config(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "zimage.yaml"
    out = tmp_path / "zimage.yaml"
    out.write_text(example.read_text())
    (tmp_path / "t.tfvars").write_text('region = "eu-de"\ncos_bucket_name = "b-eu"\ncos_instance_name = "c"\n')
    result = CliRunner().invoke(app, ["import-terraform", str(tmp_path / "t.tfvars"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    check = CliRunner().invoke(app, ["validate", str(out)])
    assert check.exit_code == 0, check.output
    assert yaml.safe_load(out.read_text())["target"]["region"] == "eu-de"


def test_cli_bad_hcl_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tf"
    bad.write_text('variable "x" {\n  default = \n')
    result = CliRunner().invoke(app, ["import-terraform", str(bad), "-o", str(tmp_path / "o.yaml")])
    assert result.exit_code == 2 and "not valid HCL" in result.output
    result = CliRunner().invoke(app, ["import-terraform", str(tmp_path / "nope.tf"), "-o", str(tmp_path / "o.yaml")])
    assert result.exit_code == 2 and "cannot read" in result.output
    assert not (tmp_path / "o.yaml").exists()
