"""zimage import-terraform: variables.tf defaults overridden by tfvars, the API key never copied."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows.cli import app
from infra.configfile import load_config
from zimage.terraform import import_variables

VARIABLES_TF = """
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
"""

TFVARS = """
ibmcloud_api_key  = "AbCdEf-very-secret-key-0123456789"
region            = "us-south"
zone              = "us-south-2"
custom_image_name = "zos24-dev"
cos_bucket_region = "us-south"
"""


def test_tfvars_override_defaults() -> None:
    imported = import_variables([("variables.tf", VARIABLES_TF), ("my.auto.tfvars", TFVARS)])
    assert imported.target["region"] == "us-south"
    assert imported.target["zone"] == 2
    assert imported.target["cos"] == {
        "instance_name": "cos-wazi",
        "bucket": "wazi-custom-image-bucket",
        "region": "us-south",
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


# --- the existing builder's own variables.tf (tests/reference/, unmodified) ---

REFERENCE_VARIABLES = Path(__file__).resolve().parent / "reference" / "variables.tf"
ROOT_KEY = "crn:v1:bluemix:public:hs-crypto:jp-tok:a/0123456789abcdef:4f1c2d3e-aaaa-bbbb-cccc-1234567890ab:key:9d8c7b6a"
ALL_TFVARS = f'''
ibmcloud_api_key      = "AbCdEf-very-secret-key-0123456789"
cos_instance_name     = "Cloud Object Storage-wazi"
cos_bucket_name       = "wazi-custom-image-bucket"
cos_bucket_region     = "jp-tok"
cos_resource_group    = "wazi-rg"
cos_endpoint          = "https://s3.direct.jp-tok.cloud-object-storage.appdomain.cloud"
custom_image_name     = "zos25-dev"
custom_image_os       = "zos-2-5-s390x-dev-test-byol"
region                = "jp-tok"
zone                  = "2"
custom_vsi            = true
encryption_type       = "user_managed"
customer_root_key_crn = "{ROOT_KEY}"
volume_purpose        = "5iops-tier"
mover_image_name      = ".*ubuntu.*22-04.*amd64.*"
mover_profile         = "bx2d-8x32"
iam_endpoint_url      = "https://private.iam.cloud.ibm.com"
ssh_public_key        = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKp8 user@host"
'''


def _reference(tfvars: str) -> list[tuple[str, str]]:
    return [("variables.tf", REFERENCE_VARIABLES.read_text()), ("my-settings.auto.tfvars", tfvars)]


def test_every_reference_variable_with_an_equivalent_is_carried() -> None:
    imported = import_variables(_reference(ALL_TFVARS))
    assert imported.target == {
        "region": "jp-tok",
        "zone": 2,
        "resource_group": "wazi-rg",
        "iam_endpoint": "https://private.iam.cloud.ibm.com",
        "encryption_key_crn": ROOT_KEY,
        "api_key_env": "IBMCLOUD_API_KEY",
        "cos": {
            "instance_name": "Cloud Object Storage-wazi",
            "bucket": "wazi-custom-image-bucket",
            "region": "jp-tok",
            "endpoint": "https://s3.direct.jp-tok.cloud-object-storage.appdomain.cloud",
        },
        "mover": {"profile": "bx2d-8x32", "image": ".*ubuntu.*22-04.*amd64.*", "volume_profile": "5iops-tier"},
    }
    assert imported.image == {"name": "zos25-dev", "os": "zos-2-5-s390x-dev-test-byol"}
    reasons = {n.split(" ", 1)[0]: n for n in imported.notes}
    # every variable of the builder that is not carried is named, with why
    assert set(reasons) == {
        "custom_vsi",
        "cos_bucket_type",
        "ssh_private_key",
        "ssh_public_key",
        "total_ipv4_address_count",
        "ibmcloud_api_key",
    }
    assert "create-instance" in reasons["custom_vsi"] and "key pair for each build" in reasons["ssh_public_key"]
    assert "very-secret" not in repr(imported)


def test_null_strings_read_as_null_and_the_builder_defaults_apply() -> None:
    tfvars = 'cos_instance_name = "c"\ncos_bucket_name = "b-1"\ncos_bucket_region = "ca-tor"\n'
    imported = import_variables(_reference(tfvars))
    target = imported.target
    assert "encryption_key_crn" not in target  # customer_root_key_crn = "null": IBM's key, as the builder does
    assert "endpoint" not in target["cos"]  # cos_endpoint = "null": the bucket's direct endpoint
    assert target["region"] == "ca-tor" and target["zone"] == 1 and target["resource_group"] == "Default"
    assert target["iam_endpoint"] == "https://iam.cloud.ibm.com"
    assert target["mover"] == {
        "profile": "bx2d-16x64",
        "image": ".*ubuntu.*20-04.*amd64.*",
        "volume_profile": "10iops-tier",
    }


def test_provider_managed_encryption_does_not_carry_the_key_and_says_so() -> None:
    tfvars = ALL_TFVARS.replace('"user_managed"', '"provider_managed"')
    imported = import_variables(_reference(tfvars))
    assert "encryption_key_crn" not in imported.target
    assert any(
        n.startswith("customer_root_key_crn is not carried: encryption_type is provider_managed")
        for n in imported.notes
    )


def test_import_of_the_reference_variables_validates_once_completed(tmp_path: Path) -> None:
    (tmp_path / "variables.tf").write_text(REFERENCE_VARIABLES.read_text())
    (tmp_path / "my-settings.auto.tfvars").write_text(ALL_TFVARS)
    out = tmp_path / "zimage.yaml"
    result = CliRunner().invoke(
        app,
        ["import-terraform", str(tmp_path / "variables.tf"), str(tmp_path / "my-settings.auto.tfvars"), "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "very-secret" not in out.read_text() + result.output
    assert "note: ssh_public_key is not carried" in result.output
    doc = yaml.safe_load(out.read_text())
    example = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "zimage.yaml").read_text())
    doc.update({k: example[k] for k in ("storage", "sources", "components")})
    doc["images"][0].update(components=[example["components"][0]["name"]], ipl=example["images"][0]["ipl"])
    out.write_text(yaml.safe_dump(doc, sort_keys=False))

    check = CliRunner().invoke(app, ["validate", str(out)])

    assert check.exit_code == 0, check.output
    cfg = load_config(out)
    target = cfg.target
    assert (target.region, target.zone, target.resource_group) == ("jp-tok", 2, "wazi-rg")
    assert target.iam_endpoint == "https://private.iam.cloud.ibm.com" and target.encryption_key_crn == ROOT_KEY
    assert (target.mover.image, target.mover.volume_profile, target.mover.profile) == (
        ".*ubuntu.*22-04.*amd64.*",
        "5iops-tier",
        "bx2d-8x32",
    )
    assert target.cos.endpoint == "https://s3.direct.jp-tok.cloud-object-storage.appdomain.cloud"
    assert (cfg.images[0].name, cfg.images[0].os) == ("zos25-dev", "zos-2-5-s390x-dev-test-byol")


def test_the_builders_settings_template_imports_without_its_key() -> None:
    template = (REFERENCE_VARIABLES.parent / "my-settings.auto.tfvars-template").read_text()
    imported = import_variables(_reference(template))
    assert imported.target["cos"]["bucket"] == "wazi-custom-image-bucket" and imported.target["region"] == "ca-tor"
    assert imported.image == {"name": "wazi-custom-image", "os": "zos-2-4-s390x-dev-test-byol"}
    assert "Your IBM Cloud API key" not in repr(imported)


def test_a_mapped_variable_without_a_value_is_named_with_its_config_key() -> None:
    declared_only = (
        'variable "region" {\n  default = "jp-tok"\n}\n' 'variable "cos_bucket_name" {}\n' 'variable "image_name" {}\n'
    )
    imported = import_variables([("variables.tf", declared_only)])
    assert "cos_bucket_name has no value in these files: it would set target.cos.bucket" in imported.notes
    assert "image_name has no value in these files: it would set images[].name" in imported.notes
    assert not any("no equivalent setting" in note for note in imported.notes)
