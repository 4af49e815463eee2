"""A circuit breaker for one model server: after ``failures`` failed requests in a row it
opens, and requests fail at once (``BackendError``, so a fallback answers without waiting)
for ``open_s`` seconds; then one probe request goes through: success closes the circuit,
failure opens it again. Off unless ``breaker_failures`` is set.

Why: a backend that flaps or hangs makes every request pay its timeout and retries; with the
circuit open they go straight to the fallback (or get a 503 saying why) until a probe finds
the server answering again. Only the server's failures count: a 4xx other than 408 / 429 is
the request's fault and leaves the circuit as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llmops.errors import BackendError


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        failures: int,
        open_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.failures, self.open_s, self.clock = name, failures, open_s, clock
        self.in_a_row = 0
        self.opened_at: float | None = None
        self.probing = False
        self.last_error = ""
        self.opened = 0  # times the circuit opened (tests, logs)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if self.clock() - self.opened_at >= self.open_s else "open"

    def admit(self) -> bool:
        """Raise ``BackendError`` while open; True when this call is the half-open probe."""
        state = self.state
        if state == "closed":
            return False
        if state == "half_open" and not self.probing:
            self.probing = True
            return True
        assert self.opened_at is not None
        wait = max(self.open_s - (self.clock() - self.opened_at), 0.0)
        raise BackendError(
            self.name,
            f"circuit open after {self.in_a_row} failed requests in a row (last: "
            f"{self.last_error}); not called for {self.open_s:g}s, next try in {wait:.1f}s",
        )

    def record(self, error: BackendError | None, probe: bool) -> None:
        """The outcome of an admitted call (None: it succeeded)."""
        if probe:
            self.probing = False
        if error is None:
            self.in_a_row, self.opened_at = 0, None
            return
        if error.reason.startswith("HTTP 4") and not error.retryable:
            return  # the request's fault, not the server's
        self.in_a_row += 1
        self.last_error = error.reason
        if probe or self.in_a_row >= self.failures:
            if self.opened_at is None or probe:
                self.opened += 1
            self.opened_at = self.clock()

    def release(self, probe: bool) -> None:
        """An admitted call ended without a verdict (cancelled): let another probe go."""
        if probe:
            self.probing = False
