"""Reading a config file: the only place a config touches the disk."""

from __future__ import annotations

from pathlib import Path

from zimage.config import Config, ConfigError, Issue, parse_config


def load_config(path: str | Path) -> Config:
    """Parse and check the config at `path`; ConfigError lists every problem."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Issue(path="", message=f"cannot read: {exc.strerror}")], str(file)) from None
    return parse_config(text, str(file))


def expand(path: str) -> Path:
    """A path from the config on this machine (~ expanded)."""
    return Path(path).expanduser()
