"""The serving process's heap after start-up: what loading left (models, indexes, caches; a
few million objects) is moved out of the garbage collector's sight.

Each request allocates short-lived objects; every so many of them CPython's cyclic collector
runs, and its full passes traverse every tracked object, start-up's included. ``gc.freeze()``
puts those in a permanent generation that passes skip (CPython's documented use: a server's
objects that live as long as it does). Reference counting still frees a frozen object that is
dropped later (a replaced index); only reference cycles among frozen objects stay until exit.
Measured with ``bench/query.py``'s SciFact app (14,424 chunks, dense, concurrency 32, 2-vCPU
Intel Xeon): p99 454–512 ms → 187–234 ms, requests/s +4–7 %."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then freeze what is alive (call when the app has started)."""
    gc.collect()
    gc.freeze()
