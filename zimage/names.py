"""Validators for the names and numbers of the domain (DESIGN.md §4).

Each returns the normalised value or raises ValueError with a message that says what is expected;
pydantic turns those into field errors.
"""

from __future__ import annotations

import re

_NATIONAL = "A-Z0-9@#$"
VOLSER_RE = re.compile(rf"^[{_NATIONAL}]{{1,6}}$")
SYSNAME_RE = re.compile(rf"^[{_NATIONAL}]{{1,8}}$")
DEVNUM_RE = re.compile(r"^[0-9A-F]{4}$")
VPC_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
VPC_NAME_MAX = 63


def volser(value: str) -> str:
    if not VOLSER_RE.fullmatch(value):
        raise ValueError(f"VOLSER {value!r}: expected 1-6 characters of A-Z 0-9 @ # $")
    return value


def sysname(value: str) -> str:
    if not SYSNAME_RE.fullmatch(value):
        raise ValueError(f"system name {value!r}: expected 1-8 characters of A-Z 0-9 @ # $")
    return value


def devnum(value: object) -> str:
    # YAML reads an unquoted 0100 as the number 64 (octal) and 1234 as an int: the digits are lost,
    # so a number is never accepted.
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"device number arrived as the number {value!r}: YAML reads unquoted digits as a number "
            "(0100 even as octal 64); quote it, e.g. devnum: '0100'"
        )
    upper = value.upper()
    if not DEVNUM_RE.fullmatch(upper):
        raise ValueError(f"device number {value!r}: expected 4 hexadecimal digits, e.g. '0A80'")
    return upper


def vpc_name(value: str) -> str:
    if len(value) > VPC_NAME_MAX or not VPC_NAME_RE.fullmatch(value):
        raise ValueError(
            f"name {value!r}: expected lowercase letters, digits and '-', starting with a letter, "
            f"not ending with '-', at most {VPC_NAME_MAX} characters (IBM Cloud VPC naming)"
        )
    return value
