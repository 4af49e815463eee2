"""Canary ramp: advances stage by stage while healthy, rolls back with the reason on errors or
slow answers, and stays rolled back."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmops.config.experiment import CanaryConfig
from llmops.routing.canary import CanaryState

POLICY = CanaryConfig(
    variant="new", stages=[0.05, 0.25, 1.0], window=20, max_error_rate=0.1, max_p95_ms=500
)


def run(state: CanaryState, requests: list[tuple[bool, float]]) -> CanaryState:
    for ok, latency in requests:
        state = state.observe(POLICY, ok, latency)
    return state


def test_a_healthy_canary_ramps_to_full_traffic() -> None:
    state = CanaryState()
    shares = [state.share(POLICY)]
    for _ in range(2):
        state = run(state, [(True, 100.0)] * 19 + [(False, 100.0)])  # 1 error in 20: allowed
        shares.append(state.share(POLICY))
    assert shares == [0.05, 0.25, 1.0]
    assert state.reason == "advanced 25% -> 100%: 1 errors in 20 requests, p95 100 ms"
    assert run(state, [(False, 9999.0)] * 50) == state  # at 100 % the experiment is over


def test_a_failing_canary_is_rolled_back_at_once_with_the_reason() -> None:
    state = run(CanaryState(), [(True, 100.0)] * 5 + [(False, 100.0)] * 3)
    assert state.rolled_back and state.share(POLICY) == 0.0
    assert state.reason == (
        "rolled back: error rate 3/8 requests exceeds 10.0% of the 20-request window"
    )
    assert run(state, [(True, 1.0)] * 100) == state  # stays rolled back


def test_a_slow_canary_is_rolled_back_when_its_window_fills() -> None:
    state = run(CanaryState(), [(True, 100.0)] * 15 + [(True, 900.0)] * 4)
    assert not state.rolled_back  # 19 requests: not judged yet
    state = state.observe(POLICY, True, 900.0)
    assert state.rolled_back
    assert state.reason == "rolled back: p95 latency 900 ms exceeds 500 ms over 20 requests"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stages": [0.5, 0.25]}, "must rise"),
        ({"stages": [0.0, 1.0]}, r"shares in \(0, 1\]"),
        ({"stages": []}, "shares"),
        ({"window": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_policies_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CanaryConfig.model_validate({"variant": "new", **options})


def test_the_state_survives_a_round_trip_through_storage() -> None:
    state = run(CanaryState(), [(True, 120.0)] * 3 + [(False, 80.0)])
    assert CanaryState.from_dict(state.to_dict()) == state
    rolled = run(state, [(False, 1.0)] * 2)
    assert rolled.cause == "error_rate" and CanaryState.from_dict(rolled.to_dict()) == rolled


def test_a_last_stage_below_full_traffic_keeps_being_judged() -> None:
    policy = CanaryConfig(variant="new", stages=[0.1, 0.5], window=4, max_error_rate=0.25)
    state = CanaryState()
    for _ in range(3):  # 0.1 -> 0.5, then two healthy windows held at 0.5
        for _ in range(4):
            state = state.observe(policy, True, 10.0)
    assert (state.stage, state.share(policy), state.window_requests) == (1, 0.5, 0)
    assert state.reason == "held at 50% (the last stage): 0 errors in 4 requests, p95 10 ms"
    for _ in range(2):
        state = state.observe(policy, False, 10.0)
    assert state.rolled_back and state.share(policy) == 0.0
