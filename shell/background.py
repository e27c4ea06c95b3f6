"""Slow work beside the engine loop: a thread drains a bounded queue, a batch at a time.

`put` only appends under a lock and returns at once (False when the queue is full), so the
caller (the engine loop) never waits for a network, a disk or a database (STYLE §11).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Worker"]

_log = logging.getLogger("ratchet")
_T = TypeVar("_T")


class Worker(Generic[_T]):
    """One daemon thread that hands queued items to `handle`, up to `batch` at a time."""

    def __init__(
        self, name: str, handle: Callable[[list[_T]], None], *, capacity: int, batch: int = 1
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.batch = batch
        # Set when close() runs out of time: `handle` should stop waiting and retrying.
        self.abandon = threading.Event()
        self.abandoned = 0  # items dropped unhandled at close
        self._handle = handle
        self._items: deque[_T] = deque()
        self._cond = threading.Condition()
        self._accepted = 0
        self._done = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: _T, *, force: bool = False) -> bool:
        """Queue `item` (past the capacity with `force`); False when full or closed."""
        with self._cond:
            if self._closing or (not force and len(self._items) >= self.capacity):
                return False
            self._items.append(item)
            self._accepted += 1
            self._cond.notify()
        return True

    @property
    def alive(self) -> bool:
        """Whether the thread still runs (it ends after close())."""
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Items accepted and not yet handled."""
        return self._accepted - self._done

    def flush(self, timeout: float) -> bool:
        """Wait until every item queued before the call is handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._accepted
            while self._done < target:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float) -> bool:
        """Take no more items, give the queue `timeout` seconds to drain, then let it go.
        True when everything was handled."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        drained = self.flush(timeout)
        if not drained:
            self.abandon.set()
            with self._cond:
                self.abandoned += len(self._items)
                self._done += len(self._items)
                self._items.clear()
                self._cond.notify_all()
        self._thread.join(timeout=0.5 if not drained else max(timeout, 0.5))
        return drained

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closing:
                    self._cond.wait()
                if not self._items:
                    return
                count = min(self.batch, len(self._items))
                items = [self._items.popleft() for _ in range(count)]
            try:
                self._handle(items)
            except Exception as exc:  # a bug in a handler must not stop the thread
                # The type only: a message could quote a secret.
                _log.error("%s: %s while handling %d item(s)", self.name, type(exc).__name__, count)
            with self._cond:
                self._done += count
                self._cond.notify_all()
