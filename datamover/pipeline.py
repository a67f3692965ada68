"""How the stages of a volume run: reading (network or disk), inflating, and hashing + writing.

Threaded, they overlap: zlib, hashlib and os.pwrite release the GIL, so one volume uses several CPUs.
Inline, they run one after the other on the caller's thread: when as many volumes convert at once as
there are CPUs, the volumes keep the CPUs busy, and the hand-offs between threads (and the GIL they
contend for) would cost about a fifth more CPU for nothing.
"""

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Optional, Union

from datamover.sources import Reader

_Item = Union[bytes, BaseException]


class Feed:
    """Iterates over the chunks of `reader` on the caller's thread; the compressed bytes' sha256 is
    computed as they are read (unless `hashed` is false). Always close() it."""

    def __init__(self, reader: Reader, chunk: int, on_bytes: Callable[[int], None], hashed: bool = True) -> None:
        self._reader = reader
        self._chunk = chunk
        self._on_bytes = on_bytes
        self.digest = hashlib.sha256()
        self._hashed = hashed
        self.count = 0

    def _read(self) -> bytes:
        data = self._reader.read(self._chunk)
        if self._hashed:
            self.digest.update(data)
        self.count += len(data)
        return data

    def _next(self) -> bytes:
        """The next chunk; empty at the end."""
        return self._read()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self._next()
            if not data:
                return
            self._on_bytes(len(data))
            yield data

    def close(self) -> None:
        self._reader.close()


class Prefetcher(Feed):
    """A Feed whose reading runs on a thread of its own, `depth` chunks ahead. Always close() it
    (also when the consumer stops early)."""

    def __init__(
        self, reader: Reader, chunk: int, on_bytes: Callable[[int], None], depth: int = 4, hashed: bool = True
    ) -> None:
        super().__init__(reader, chunk, on_bytes, hashed)
        self._queue: queue.Queue[_Item] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                data = self._read()
                if not self._put(data) or not data:
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _next(self) -> bytes:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        super().close()


class Consumer:
    """Runs `consume` on every chunk put, on the caller's thread. Always finish() or abort() it."""

    def __init__(self, consume: Callable[[bytes], None]) -> None:
        self._consume = consume

    def put(self, data: bytes) -> None:
        self._consume(data)

    def finish(self) -> None:
        """Wait until every chunk put has been consumed; raise what consuming raised."""

    def abort(self) -> None:
        """Stop consuming, dropping what is queued (no-op once finished)."""


class ThreadedConsumer(Consumer):
    """Runs `consume` on every chunk put, in a background thread; a failure of `consume` is raised
    by the next put() or by finish()."""

    def __init__(self, consume: Callable[[bytes], None], depth: int = 4) -> None:
        super().__init__(consume)
        self._queue: queue.Queue[Optional[bytes]] = queue.Queue(depth)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as exc:  # handed to the producer, which raises it
                    self._error = exc

    def put(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def finish(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._thread.is_alive():
            self._error = self._error or RuntimeError("aborted")
            self._queue.put(None)
            self._thread.join()
