"""Read ahead: pull an iterator's items on a background thread, up to a budget, while the
consumer does something else (``btk predict`` decodes new images while TensorFlow starts and
the model loads, then while the model predicts)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class ReadAhead(Generic[T]):
    """Iterates over ``items`` as they were, in order, while a thread keeps up to ``limit``
    (by ``weight``) of them ready ahead of the consumer; an item heavier than the limit still
    passes, alone. An exception raised by ``items`` reaches the consumer after the items before
    it. Use it as a context manager (or call :meth:`close`): leaving stops the thread and closes
    ``items`` on it."""

    def __init__(self, items: Iterator[T], limit: int, weight: Callable[[T], int] = lambda _: 1) -> None:
        self._items, self._limit, self._weight = items, max(1, limit), weight
        self._ready: deque[tuple[T, int]] = deque()
        self._held = 0
        self._cond = threading.Condition()
        self._stop = self._finished = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._fill, name="btk-read-ahead", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        try:
            for item in self._items:
                w = self._weight(item)
                with self._cond:
                    while not self._stop and self._ready and self._held + w > self._limit:
                        self._cond.wait()
                    if self._stop:
                        break
                    self._ready.append((item, w))
                    self._held += w
                    self._cond.notify_all()
        except BaseException as exc:  # handed to the consumer
            with self._cond:
                self._error = exc
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        with self._cond:
            while not self._ready and not self._finished:
                self._cond.wait()
            if self._ready:
                item, w = self._ready.popleft()
                self._held -= w
                self._cond.notify_all()
                return item
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            raise StopIteration

    def close(self) -> None:
        """Stop reading ahead: the thread finishes the item it is pulling, closes ``items`` and ends."""
        with self._cond:
            self._stop = True
            self._ready.clear()
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
