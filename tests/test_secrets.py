"""Secrets named by the config: environment variables or Prefect Secret blocks, never shown."""

from __future__ import annotations

import pytest

from infra.secrets import Secret, SecretMissing, resolve, resolve_json


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZIMAGE_TEST_KEY", "s3cr3t-value")
    secret = resolve(env="ZIMAGE_TEST_KEY", what="IBM Cloud API key")
    assert secret.reveal() == "s3cr3t-value"
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!s:>40}"):
        assert "s3cr3t" not in shown and "ZIMAGE_TEST_KEY" in shown


def test_missing_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZIMAGE_NOT_SET", raising=False)
    with pytest.raises(SecretMissing, match="IBM Cloud API key: environment variable ZIMAGE_NOT_SET is not set"):
        resolve(env="ZIMAGE_NOT_SET", what="IBM Cloud API key")


def test_nothing_named() -> None:
    with pytest.raises(SecretMissing, match="neither"):
        resolve(what="x")


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_secret_blocks() -> None:
    from prefect.blocks.system import Secret as SecretBlock

    SecretBlock(value="block-held-key").save("zimage-test-api-key", overwrite=True)
    SecretBlock(value={"access_key_id": "AK", "secret_access_key": "SK"}).save("zimage-test-hmac", overwrite=True)
    secret = resolve(env="IGNORED_WHEN_A_BLOCK_IS_NAMED", block="zimage-test-api-key", what="API key")
    assert isinstance(secret, Secret) and secret.reveal() == "block-held-key"
    assert "block-held-key" not in repr(secret)
    assert resolve_json("zimage-test-hmac", "COS HMAC key") == {"access_key_id": "AK", "secret_access_key": "SK"}
    with pytest.raises(SecretMissing, match="holds JSON"):
        resolve(block="zimage-test-hmac", what="API key")
    with pytest.raises(SecretMissing, match="zimage-no-such-block"):
        resolve(block="zimage-no-such-block", what="API key")
