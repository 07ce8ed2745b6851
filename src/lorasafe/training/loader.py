"""Building micro-batches off the main thread.

A bounded queue fed by one daemon thread: while the device computes step n, the host builds (and on
CUDA pins) the tensors of the next micro-batches. Measured on 2 CPU cores (bench/train_throughput.py
notes): building a micro-batch takes well under 1% of a step there, and the extra thread only competes
with torch's own threads, so the trainer turns it on for CUDA and off on a CPU (`training.prefetch`).
Must not import the trainer or pipeline modules.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
U = TypeVar("U")

_DONE = object()


def prefetched(make: Callable[[T], U], items: Iterable[T], depth: int) -> Iterator[U]:
    """`map(make, items)`, computed up to `depth` items ahead on a background thread (depth 0: inline).

    Exceptions raised by `make` surface in the consumer; closing the iterator early stops the thread."""
    if depth <= 0:
        yield from map(make, items)
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((True, make(item)))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            q.put((False, e))
        q.put((True, _DONE))

    thread = threading.Thread(target=work, name="lorasafe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = q.get()
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
