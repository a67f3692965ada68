"""Secrets named by the config: an environment variable or a Prefect Secret block.

Values are wrapped in `Secret` so that an accidental print, log line or repr never shows them.
"""

from __future__ import annotations

import os


class SecretMissing(RuntimeError):
    pass


class Secret:
    """A secret value that hides itself from str/repr/format."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str):
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin}, hidden)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve(env: str | None = None, block: str | None = None, what: str = "secret") -> Secret:
    """Read a secret from a Prefect Secret block when named, else from the environment variable."""
    if block:
        from prefect.blocks.system import Secret as SecretBlock  # loaded only when blocks are used

        try:
            value = SecretBlock.load(block).get()
        except ValueError as exc:
            raise SecretMissing(f"{what}: Prefect Secret block {block!r} cannot be loaded: {exc}") from None
        if isinstance(value, dict):
            raise SecretMissing(f"{what}: Prefect Secret block {block!r} holds JSON, expected a string")
        return Secret(str(value), f"Prefect Secret block {block!r}")
    if env:
        value = os.environ.get(env)
        if not value:
            raise SecretMissing(f"{what}: environment variable {env} is not set")
        return Secret(value, f"environment variable {env}")
    raise SecretMissing(f"{what}: neither an environment variable nor a Prefect Secret block is named")


def resolve_json(block: str, what: str) -> dict[str, str]:
    """A Prefect Secret block holding a JSON object of strings (e.g. an HMAC key pair)."""
    from prefect.blocks.system import Secret as SecretBlock

    try:
        value = SecretBlock.load(block).get()
    except ValueError as exc:
        raise SecretMissing(f"{what}: Prefect Secret block {block!r} cannot be loaded: {exc}") from None
    if not isinstance(value, dict):
        raise SecretMissing(f"{what}: Prefect Secret block {block!r} must hold a JSON object")
    return {str(k): str(v) for k, v in value.items()}
