"""Everything the core emits, by kind, and the one function that sorts it into named outputs.

The core's transitions return a list of small records:

    JourneyLog(record, ingested_at)   a journey log record; record["kind"] is one of LogKind
    Decision(record, ingested_at)     a decision point, acted on or not (decision schema v4)
    FeatureRow(customer_id, row)      a customer's behavioural features, for the feature store
    Routed(key, item)                 an item the visitor role hands to a customer key

`ingested_at` is the wall-clock time intake took the signal behind the record (None in replays
and tests): the job measures decision latency and time-to-map from it, and it never reaches a
sink. Every runner (the Flink operators, the Beam replay, the in-process reference) turns these
into its named outputs through sort_outputs, so an output kind is added in one place.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple


class JourneyLog(NamedTuple):
    record: dict
    ingested_at: int | None = None


class Decision(NamedTuple):
    record: dict
    ingested_at: int | None = None


class FeatureRow(NamedTuple):
    customer_id: str
    row: dict


class Routed(NamedTuple):
    key: str
    item: str


class LogKind:
    """The kinds of journey log records."""

    SIGNAL = "signal"                  # a signal applied to its journey
    TRANSITION = "transition"          # a time rule moved the journey
    SESSION = "session"                # a session ended (or is still open at the end of a bounded input)
    CLOSED = "closed"                  # the journey ended: terminal stage or expired visitor
    STITCH = "stitch"                  # a visitor's journey joined a customer's
    LATE = "late"                      # a signal too late to apply, kept whole for reprocessing
    DUPLICATE = "duplicate"            # a signal whose event id the journey has seen
    OUTCOME = "outcome"                # an answer to a decision that is no step of the journey
    PLAN_CANCELLED = "plan_cancelled"  # a planned follow-up whose goal was reached first
    POLICY_UPDATE = "policy_update"    # what an update on the control stream did
    STALE_DECISION = "stale_decision"  # an acted decision that a signal from before it, arriving after it, made moot
    CANARY_VERDICT = "canary_verdict"  # the job's judge of a canary changed its verdict (journeys.rollback)
    MODEL_CANARY = "model_canary"      # what the stop of a model canary on the control stream did


# Records that can move a journey into a stage, and those that say which stage it is in.
STAGE_ENTRY_KINDS = (LogKind.SIGNAL, LogKind.TRANSITION, LogKind.STITCH)
STAGE_KINDS = STAGE_ENTRY_KINDS + (LogKind.CLOSED,)
# Journey log records that count a signal as accepted (see the run summary's balance).
ACCEPTED_KINDS = (LogKind.SIGNAL, LogKind.LATE, LogKind.OUTCOME)


def enters_stage(record: dict) -> bool:
    """Whether a journey log record moved its journey into another stage (record['stage'] at record['at'])."""
    return record["kind"] in STAGE_ENTRY_KINDS and record.get("from_stage") not in (None, record.get("stage"))


class OutputName:
    """The job's named outputs, as the driver's arguments and the sinks call them."""

    DECISIONS = "decisions"        # the decisions acted on
    JOURNEYS = "journeys"          # the journey log
    LATE = "late"                  # late signals (journey log records of kind late)
    DEAD_LETTERS = "dead-letters"  # rejected input with reason and original bytes
    FEATURE_ROWS = "feature-rows"  # behavioural feature rows, for the offline store
    DECISION_LOG = "decision-log"  # every decision point, acted on or not


OUTPUT_NAMES = (OutputName.DECISIONS, OutputName.JOURNEYS, OutputName.LATE, OutputName.DEAD_LETTERS,
                OutputName.FEATURE_ROWS, OutputName.DECISION_LOG)


class SortedOutputs:
    """One call's outputs by named output, in the order the core produced them."""

    __slots__ = ("journeys", "late", "decision_log", "decisions", "feature_rows", "routed",
                 "decision_latencies_ms", "map_latencies_ms")

    def __init__(self):
        self.journeys: list[dict] = []        # journey log records, late ones aside
        self.late: list[dict] = []
        self.decision_log: list[dict] = []    # every decision point
        self.decisions: list[dict] = []       # those acted on (the same records)
        self.feature_rows: list[FeatureRow] = []
        self.routed: list[Routed] = []
        self.decision_latencies_ms: list[int] = []  # wall clock, intake to decision
        self.map_latencies_ms: list[int] = []       # wall clock, intake to journey update

    def journey_log(self) -> list[dict]:
        return self.journeys + self.late


def sort_outputs(outputs: Iterable, now_ms: int | None = None) -> SortedOutputs:
    """The core's outputs by named output. now_ms: the wall clock as they leave, to stamp each
    decision's latency_ms and measure time-to-map (None: records stay as the core made them)."""
    sorted_outputs = SortedOutputs()
    for entry in outputs:
        kind = type(entry)
        if kind is JourneyLog:
            record = entry.record
            (sorted_outputs.late if record["kind"] == LogKind.LATE else sorted_outputs.journeys).append(record)
            if now_ms is not None and entry.ingested_at is not None:
                sorted_outputs.map_latencies_ms.append(now_ms - entry.ingested_at)
        elif kind is Decision:
            record = entry.record
            if now_ms is not None and entry.ingested_at is not None:
                record["latency_ms"] = now_ms - entry.ingested_at
                sorted_outputs.decision_latencies_ms.append(record["latency_ms"])
            sorted_outputs.decision_log.append(record)
            if record["acted"]:
                sorted_outputs.decisions.append(record)
        elif kind is FeatureRow:
            sorted_outputs.feature_rows.append(entry)
        elif kind is Routed:
            sorted_outputs.routed.append(entry)
        else:
            raise TypeError(f"not an output of the journey core: {entry!r}")
    return sorted_outputs


def feature_row_record(row: FeatureRow) -> dict:
    """A feature row as the feature-rows output writes it (the offline store's columns)."""
    return {"customer_id": row.customer_id} | row.row
