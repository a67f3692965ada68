"""Names on the storage server (DESIGN.md §5) and the extraction generations kept there.

`<root>/zos/<SYSNAME>/volumes/<VOLSER>_<YYYY-MM-DD_HH_MM_SS>.gz`, and beside the volumes one
manifest per component and generation: `<component>_<generation>.manifest.json`.
"""

from __future__ import annotations

import posixpath
import re
from datetime import UTC, datetime

from zimage import names

GENERATION_FORMAT = "%Y-%m-%d_%H_%M_%S"
_GENERATION = r"\d{4}-\d{2}-\d{2}_\d{2}_\d{2}_\d{2}"
VOLUME_FILE_RE = re.compile(rf"^(?P<volser>[A-Z0-9@#$]{{1,6}})_(?P<generation>{_GENERATION})\.gz$")
MANIFEST_RE = re.compile(rf"^(?P<component>[a-z][-a-z0-9]*)_(?P<generation>{_GENERATION})\.manifest\.json$")
TEMP_SUFFIX = ".part"


def generation_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(GENERATION_FORMAT)


def generation_time(generation: str) -> datetime:
    if not re.fullmatch(_GENERATION, generation):
        raise ValueError(f"generation {generation!r}: expected YYYY-MM-DD_HH_MM_SS")
    return datetime.strptime(generation, GENERATION_FORMAT).replace(tzinfo=UTC)


def volume_dir(root: str, system: str) -> str:
    return posixpath.join(root, "zos", names.sysname(system), "volumes")


def volume_file_name(volser: str, generation: str) -> str:
    generation_time(generation)
    return f"{names.volser(volser)}_{generation}.gz"


def manifest_name(component: str, generation: str) -> str:
    generation_time(generation)
    return f"{names.vpc_name(component)}_{generation}.manifest.json"


def checked_file_name(file_name: str) -> str:
    """A volume file name read from a manifest: it can never leave its directory."""
    if not VOLUME_FILE_RE.fullmatch(file_name):
        raise ValueError(
            f"volume file name {file_name!r}: expected <VOLSER>_<YYYY-MM-DD_HH_MM_SS>.gz with no path"
        )
    return file_name


def generations(listing: list[str], component: str) -> list[str]:
    """The component's generations that have a manifest, oldest first."""
    found = [m["generation"] for n in listing if (m := MANIFEST_RE.fullmatch(n)) and m["component"] == component]
    return sorted(set(found))


def expired(listing: list[str], component: str, retention: int) -> list[str]:
    """Generations beyond the newest `retention`, oldest first."""
    kept = generations(listing, component)
    return kept[: max(0, len(kept) - retention)]
