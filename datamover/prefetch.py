"""Reading an object in a background thread, so that network or disk reads overlap inflating."""

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Union

from datamover.sources import Reader

_Item = Union[bytes, BaseException]


class Prefetcher:
    """Iterates over the chunks of `reader`; the compressed bytes' sha256 is computed on the
    reading thread. Always close() it (also when the consumer stops early)."""

    def __init__(self, reader: Reader, chunk: int, on_bytes: Callable[[int], None], depth: int = 4) -> None:
        self._reader = reader
        self._chunk = chunk
        self._on_bytes = on_bytes
        self._queue: queue.Queue[_Item] = queue.Queue(depth)
        self._stop = threading.Event()
        self.digest = hashlib.sha256()
        self.count = 0
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                data = self._reader.read(self._chunk)
                self.digest.update(data)
                self.count += len(data)
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

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            self._on_bytes(len(item))
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._reader.close()
