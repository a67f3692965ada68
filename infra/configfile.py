"""Reading a config file: the only place a config touches the disk."""

from __future__ import annotations

import functools
from pathlib import Path

from datamover.sources import SMALL_OBJECT_LIMIT
from zimage.config import Config, ConfigError, Issue, issue_at, parse_config
from zimage.objects import IMAGE_FILES


def load_config(path: str | Path) -> Config:
    """Parse and check the config at `path`; ConfigError lists every problem. Files the config
    names (relative ones against the config's directory) are checked to be readable here."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Issue(path="", message=f"cannot read: {exc.strerror}")], str(file)) from None
    cfg = _parsed(text, str(file), str(file.resolve().parent))
    issues = [issue_at(text, where, message) for where, message in _unreadable_files(cfg)]
    if issues:
        raise ConfigError(issues, str(file))
    return cfg


@functools.lru_cache(maxsize=32)
def _parsed(text: str, source: str, base_dir: str) -> Config:
    """Every task of a run loads the config again: parse each text once (a Config is frozen; a config of
    200 volumes takes a quarter of a second to parse)."""
    return parse_config(text, source, base_dir=base_dir)


def _unreadable_files(cfg: Config) -> list[tuple[str, str]]:
    found = []
    for i, image in enumerate(cfg.images):
        for field, becomes in IMAGE_FILES.items():
            value = getattr(image, field)
            if value is None:
                continue
            problem = _file_problem(expand(value))
            if problem:
                found.append((f"images[{i}].{field}", f"{value}: {problem} (it is uploaded as {becomes})"))
    return found


def _file_problem(file: Path) -> str | None:
    try:
        size = file.stat().st_size
        if not file.is_file():
            return "not a regular file"
        with file.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return exc.strerror or str(exc)
    if size > SMALL_OBJECT_LIMIT:
        return f"{size:,} bytes, more than the data mover accepts ({SMALL_OBJECT_LIMIT:,})"
    return None


def expand(path: str) -> Path:
    """A path from the config on this machine (~ expanded)."""
    return Path(path).expanduser()


def read_image_file(path: str) -> bytes:
    """The bytes of a file an image names (checked readable when the config was loaded)."""
    return expand(path).read_bytes()
