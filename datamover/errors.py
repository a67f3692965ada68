"""Errors of the data mover: each carries a one-line message naming what is wrong."""


class MoverError(Exception):
    """A failure of the run (bad input, missing object, tool failure) with a clear message."""


class VolumeError(MoverError):
    """A failure converting one volume; the message names the volume."""

    def __init__(self, volume: str, message: str, retryable: bool = True) -> None:
        super().__init__(f"volume {volume}: {message}")
        self.volume = volume
        self.retryable = retryable


class Cancelled(MoverError):
    """The run stopped this volume because another one failed."""
