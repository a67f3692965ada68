"""Validation of every name that ends up in a path or an object key."""

import re

from datamover.errors import MoverError

_VOLSER = re.compile(r"[A-Z0-9@#$]{1,6}")
# Object and file names: one path component, no traversal, nothing a shell or URL would reinterpret.
_OBJECT_NAME = re.compile(r"[A-Za-z0-9@#$_][A-Za-z0-9@#$_.+=-]{0,254}")
_IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_volser(value: object, where: str) -> str:
    if not isinstance(value, str) or not _VOLSER.fullmatch(value):
        raise MoverError(f"{where}: {value!r} is not a VOLSER (1-6 characters of A-Z 0-9 @ # $)")
    return value


def check_object_name(value: object, where: str) -> str:
    """A single path component: no '/', no '..', no leading dot."""
    if not isinstance(value, str) or not _OBJECT_NAME.fullmatch(value) or ".." in value:
        raise MoverError(
            f"{where}: {value!r} is not a safe file name (one path component of letters, digits, "
            "@#$_.+=-, no '/', no '..')"
        )
    return value


def check_image_name(value: object, where: str) -> str:
    if not isinstance(value, str) or not _IMAGE_NAME.fullmatch(value) or ".." in value:
        raise MoverError(f"{where}: {value!r} is not a safe image name (letters, digits, _.-; no '..')")
    return value
