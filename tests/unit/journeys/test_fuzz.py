"""Ten thousand generated hostile lines through intake: each is taken or rejected with its reason,
none makes intake raise, and none costs much more than a plain record of its size."""
from collections import Counter

import pytest

from journeys.assembly import build_intake
from journeys.contract import REJECTION_REASONS, Rejection, SignalDecoder
from journeys.intake import Intake, Taken
from journeys.settings import packaged_settings
from pipelines.tools.hostile import MUTATIONS, PLAIN_TEXT, a_record_of, fastest_seconds, hostile_avro, hostile_lines
from tests.harness import BEGINNING, NOW, a_signal

LINES = list(hostile_lines(10_000, seed=19, at=BEGINNING))


@pytest.fixture(scope="module")
def intake() -> Intake:
    return build_intake(packaged_settings())


def test_every_generated_line_is_taken_or_rejected_with_a_reason_and_its_bytes_and_none_raises(intake):
    outcomes = Counter()
    for kind, raw in LINES:
        taken = intake.take(raw, NOW)
        if isinstance(taken, Rejection):
            assert taken.reason in REJECTION_REASONS and taken.reason != "internal_error", (kind, raw[:160])
            assert taken.original == raw
            outcomes[taken.reason] += 1
        else:
            assert isinstance(taken, Taken)
            outcomes["taken"] += 1
    assert {kind for kind, _ in LINES} == set(MUTATIONS)
    assert outcomes["taken"] > 0 and sum(outcomes.values()) == len(LINES)
    assert len(outcomes) >= 12, outcomes  # the generator reaches most reasons, not one


def test_hostile_avro_messages_are_rejected_each_with_a_reason():
    decoder = SignalDecoder()
    reasons = Counter()
    for raw in hostile_avro(1_000, seed=19, at=BEGINNING):
        result = decoder.decode_avro(raw, NOW)
        if isinstance(result, Rejection):
            assert result.reason != "internal_error" and result.original == raw
            reasons[result.reason] += 1
    assert {"unknown_schema_fingerprint", "invalid_avro", "trailing_bytes"} <= set(reasons)


def fastest(intake, raw: bytes) -> float:
    return fastest_seconds(lambda: intake.take(raw, NOW))


def test_no_generated_line_costs_intake_much_more_than_a_plain_record_of_64_kb(intake):
    once = sorted(((fastest_once(intake, raw), raw) for _, raw in LINES), reverse=True)[:20]
    slowest = max(fastest(intake, raw) for _, raw in once)
    plain = fastest(intake, a_record_of(PLAIN_TEXT, a_signal()))
    assert slowest <= 10 * plain, f"{slowest * 1000:.2f} ms against {plain * 1000:.2f} ms"


def fastest_once(intake, raw: bytes) -> float:
    return fastest_seconds(lambda: intake.take(raw, NOW), calls=1)
