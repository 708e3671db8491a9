"""Work ahead in a background thread: the next batch is read or decoded (Rust, GIL released)
while the caller works on this one; and waiting for work done elsewhere so that Ctrl-C still
reaches the caller."""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any


def prefetch(it: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterates ``it`` in a background thread, at most ``depth`` items ahead of the one the
    caller holds (made or being made), so reading or decoding (Rust, GIL released) overlaps the
    work on the previous item; memory holds ``depth + 1`` items at most. An exception in ``it``
    is raised here, at its place in the sequence."""
    q: queue.Queue = queue.Queue()
    slots = threading.Semaphore(depth + 1)  # the caller's item and those ahead of it
    stop = threading.Event()
    end = object()

    def work() -> None:
        try:
            items = iter(it)
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    x = next(items)
                except StopIteration:
                    return
                q.put((x, None))
        except BaseException as e:  # handed to the consumer
            q.put((None, e))
        finally:
            q.put((end, None))

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            x, err = q.get()
            if err is not None:
                raise err
            if x is end:
                return
            yield x
            slots.release()  # the caller is done with x: one more may be made
    finally:
        stop.set()


def result(fut: concurrent.futures.Future[Any], *, cancel: bool = False) -> Any:
    """The result of ``fut`` (a worker process's, or a coroutine's on another thread's loop),
    waited for in short steps: a wait without a timeout is not interrupted by Ctrl-C. With
    ``cancel``, Ctrl-C (or any exception while waiting) cancels ``fut``. The future's own
    exception, a TimeoutError included, is raised as it is."""
    try:
        while not concurrent.futures.wait([fut], timeout=0.25).done:
            pass
    except BaseException:
        if cancel:
            fut.cancel()
        raise
    return fut.result()
