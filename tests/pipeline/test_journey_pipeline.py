"""The pipeline tier: build_journey_pipeline alone, on a real Flink MiniCluster, with a collection
in and execute_and_collect out: no driver, no connectors, no files."""
from __future__ import annotations

import base64
import json

import orjson
import pytest

from journeys.contract import SignalDecoder
from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.settings import packaged_settings
from journeys.timers import end_clock
from pipelines.reference import ReferenceRun
from pipelines.tools.files import scan_records
from pipelines.tools.simulate import SimulationSpec, simulate
from tests.harness import (BEGINNING, FIVE_MINUTES_LATER, NOW, ONE_MINUTE_LATER, TEN_MINUTES_LATER,
                           TWO_MINUTES_LATER, a_login, a_signal, canonical, line)

pytestmark = pytest.mark.flink


@pytest.fixture(scope="module")
def signals() -> list[bytes]:
    """Out-of-order, with duplicates, late and malformed records, visitors who log in."""
    return list(simulate(SimulationSpec(customers=60, days=4, seed=3, late_rate=0.01)))


@pytest.fixture(scope="module")
def reference(signals) -> ReferenceRun:
    settings = packaged_settings()
    latest = scan_records(signals, SignalDecoder(settings.intake).decode_json, NOW).latest_event_time
    return ReferenceRun(packaged_ontology(), settings, end_clock=end_clock(latest, settings.max_out_of_orderness_ms),
                        now_ms=NOW).feed(signals).finish()


def reference_of(signals: list[bytes]) -> ReferenceRun:
    settings = packaged_settings()
    latest = scan_records(signals, SignalDecoder(settings.intake).decode_json, NOW).latest_event_time
    return ReferenceRun(packaged_ontology(), settings, end_clock=end_clock(latest, settings.max_out_of_orderness_ms),
                        now_ms=NOW).feed(signals).finish()


def run_pipeline(signals: list[bytes], end_at: int, output: str, tmp_path, parallelism: int = 2) -> list[dict]:
    """One output of the pipeline over the signals as a collection, its records in any order."""
    from pyflink.common import Types

    from pipelines.flink.env import create_environment
    from pipelines.flink.pipeline import build_journey_pipeline
    from pipelines.flink.wire import RAW_LINE_CHARSET

    env = create_environment(overrides={"execution.checkpointing.dir": tmp_path.as_uri(),
                                        "restart-strategy.type": "none"})
    env.set_parallelism(parallelism)
    raw = env.from_collection([line.decode(RAW_LINE_CHARSET) for line in signals], type_info=Types.STRING())
    streams = build_journey_pipeline(raw, packaged_ontology(), packaged_settings(), end_at)
    stream = streams.journeys.union(streams.late) if output == "journeys" else getattr(streams, output)
    with stream.execute_and_collect(f"pipeline-{output}") as results:
        elements = list(results)
    if output == "dead_letters":
        return [orjson.loads(element) for element in elements]
    return [orjson.loads(text) for element in elements for text in element.split("\n")]


def test_the_pipeline_turns_a_collection_of_signals_into_the_reference_decisions(signals, reference, tmp_path):
    decisions = run_pipeline(signals, reference.end_clock, "decisions", tmp_path)
    assert len(decisions) > 100
    assert canonical(decisions) == canonical(reference.decisions)


def test_the_pipeline_gives_the_reference_journey_log_late_signals_included(signals, reference, tmp_path):
    journeys = run_pipeline(signals, reference.end_clock, "journeys", tmp_path)
    assert {LogKind.LATE, LogKind.STITCH, LogKind.SESSION} <= {r["kind"] for r in journeys}
    assert canonical(journeys) == canonical(reference.journey_records)


def test_the_pipeline_sets_aside_what_intake_rejects_with_the_original_bytes(signals, reference, tmp_path):
    dead_letters = run_pipeline(signals, reference.end_clock, "dead_letters", tmp_path)
    assert dead_letters and canonical(dead_letters) == canonical(reference.dead_letters)


@pytest.fixture(scope="module")
def odd_ids(signals) -> list[bytes]:
    """Ids with spaces, accents, the length limit, and one visitor's id written raw in some lines and
    as \\u escapes in others; a malformed line with spaces at its end."""
    visitor, customer, long_id = "vis itor \u00e9\u4e16", "c\u00fcst 1", "x" * 128
    written = [a_signal("page_view", BEGINNING, visitor=visitor), a_signal("product_view", ONE_MINUTE_LATER, visitor=visitor),
               a_login(visitor, customer, TWO_MINUTES_LATER), a_signal("add_to_cart", FIVE_MINUTES_LATER, visitor=visitor),
               a_signal("page_view", TEN_MINUTES_LATER, customer=long_id)]
    escaped = {1, 3}  # json.dumps writes non-ASCII as \\u escapes
    odd = [json.dumps(signal).encode() if index in escaped else line(signal) for index, signal in enumerate(written)]
    return signals[:300] + odd + [b'{"anonymous_id": "a b", "event_type": not json  ']


def test_one_task_keys_raw_lines_in_the_jvm_as_intake_keys_them(odd_ids, tmp_path):
    """At parallelism 1 the visitor operator takes the raw lines, keyed by their first id in the JVM."""
    reference = reference_of(odd_ids)
    journeys = run_pipeline(odd_ids, reference.end_clock, "journeys", tmp_path, parallelism=1)
    assert "c\u00fcst 1" in {r["journey"] for r in journeys if r["kind"] == LogKind.STITCH}
    assert canonical(journeys) == canonical(reference.journey_records)


def test_one_task_sets_aside_raw_lines_byte_for_byte(odd_ids, tmp_path):
    reference = reference_of(odd_ids)
    dead_letters = run_pipeline(odd_ids, reference.end_clock, "dead_letters", tmp_path, parallelism=1)
    assert any(base64.b64decode(d["original"]).endswith(b"not json  ") for d in dead_letters)
    assert canonical(dead_letters) == canonical(reference.dead_letters)


def test_roles_apart_put_the_customer_operator_alone_in_its_slot_sharing_group(tmp_path):
    from pyflink.common import Types

    from pipelines.flink.env import create_environment
    from pipelines.flink.pipeline import CUSTOMER_SLOTS, build_journey_pipeline

    def groups(roles_apart: bool) -> dict[str, str]:
        env = create_environment(overrides={"execution.checkpointing.dir": tmp_path.as_uri()})
        raw = env.from_collection(["{}"], type_info=Types.STRING())
        streams = build_journey_pipeline(raw, packaged_ontology(), packaged_settings(), roles_apart=roles_apart)
        streams.decisions.print()
        graph = env._j_stream_execution_environment.getStreamGraph(False)
        return {node.getOperatorName(): node.getSlotSharingGroup() for node in graph.getStreamNodes().toArray()}

    apart, shared = groups(True), groups(False)
    assert apart["map_customer_journeys"] == CUSTOMER_SLOTS
    assert apart["map_visitor_journeys"] == shared["map_visitor_journeys"] == shared["map_customer_journeys"] != CUSTOMER_SLOTS
