"""Ids that may hold personal data, where one task keys raw lines in the JVM (parallelism 1): Java
judges them as Python does, and visitors and customers whose ids are personal data, sharing keys,
get exactly the reference's journeys and decisions."""
from __future__ import annotations

import random
import re

import orjson
import pytest

from journeys.contract import SignalDecoder
from journeys.ontology import packaged_ontology
from journeys.outputs import LogKind
from journeys.privacy import PERSONAL_ID_HINT
from journeys.settings import packaged_settings
from journeys.timers import end_clock
from journeys.timeutil import MINUTE
from pipelines.reference import ReferenceRun
from pipelines.tools.files import scan_records
from pipelines.tools.hostile import PERSONAL_DATA
from pipelines.tools.simulate import SimulationSpec, simulate
from tests.harness import BEGINNING, NOW, a_login, a_signal, canonical, line

pytestmark = pytest.mark.flink


def some_ids(count: int, seed: int) -> list[str]:
    """Ids of digits, separators, signs, letters and characters beyond ASCII, in every mix."""
    rng = random.Random(seed)
    alphabet = "0123456789" * 4 + " -./()+@%4abZ_:" + "\uff20\uff14\u00e9\u4e16\U0001f600"
    return list(PERSONAL_DATA) + ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(count)]


def environment(tmp_path):
    from pipelines.flink.env import create_environment

    env = create_environment(overrides={"execution.checkpointing.dir": tmp_path.as_uri(), "restart-strategy.type": "none"})
    env.set_parallelism(1)
    return env


def test_flink_sql_finds_the_personal_id_hint_in_exactly_the_ids_python_finds_it_in(tmp_path):
    from pyflink.common import Types
    from pyflink.table import StreamTableEnvironment

    from pipelines.flink.pipeline import personal_id_condition

    ids = some_ids(5_000, seed=23)
    env = environment(tmp_path)
    tables = StreamTableEnvironment.create(env)
    table = tables.from_data_stream(env.from_collection(list(enumerate(ids)), Types.TUPLE([Types.INT(), Types.STRING()])))
    judged = tables.sql_query(f"SELECT f0, {personal_id_condition('f1')} FROM {table}")
    with judged.execute().collect() as rows:
        in_java = {row[0]: row[1] for row in rows}
    hint = re.compile(PERSONAL_ID_HINT)
    in_python = {number: hint.search(identifier) is not None for number, identifier in enumerate(ids)}
    assert 0 < sum(in_python.values()) < len(ids)
    assert in_java == in_python


@pytest.fixture(scope="module")
def personal_ids() -> list[bytes]:
    """Simulated signals, then visitors whose ids are personal data: each browses, logs in as a
    customer whose id is personal data too, and browses on; a visitor with a plain id logs in as
    the same customer, who also buys without a visitor id; a guest with a personal id never logs in."""
    signals = list(simulate(SimulationSpec(customers=40, days=3, seed=13, late_rate=0.01)))
    for n, value in enumerate(PERSONAL_DATA):
        at = BEGINNING + n * 10 * MINUTE
        customer = f"customer {value}"
        signals += [line(s) for s in (
            a_signal("page_view", at, visitor=value),
            a_signal("product_view", at + MINUTE, customer=customer),
            a_signal("add_to_cart", at + 2 * MINUTE, visitor=value),
            a_login(value, customer, at + 3 * MINUTE),
            a_signal("add_to_cart", at + 4 * MINUTE, visitor=value),
            a_signal("page_view", at + 5 * MINUTE, visitor=f"plain-{n}"),
            a_login(f"plain-{n}", customer, at + 6 * MINUTE),
            a_signal("purchase", at + 7 * MINUTE, customer=customer),
            a_signal("page_view", at + 8 * MINUTE, visitor=f"guest {value}"))]
    return signals


def test_visitors_and_customers_with_personal_ids_get_the_reference_journeys_and_decisions(personal_ids, tmp_path):
    from pyflink.common import Types

    from pipelines.flink.pipeline import build_journey_pipeline
    from pipelines.flink.wire import RAW_LINE_CHARSET

    settings = packaged_settings()
    latest = scan_records(personal_ids, SignalDecoder(settings.intake).decode_json, NOW).latest_event_time
    reference = ReferenceRun(packaged_ontology(), settings, end_clock=end_clock(latest, settings.max_out_of_orderness_ms),
                             now_ms=NOW).feed(personal_ids).finish()
    env = environment(tmp_path)
    raw = env.from_collection([signal.decode(RAW_LINE_CHARSET) for signal in personal_ids], type_info=Types.STRING())
    streams = build_journey_pipeline(raw, packaged_ontology(), settings, reference.end_clock)
    both = streams.journeys.union(streams.late).map(lambda text: "J" + text, Types.STRING()).union(
        streams.decisions.map(lambda text: "D" + text, Types.STRING()))
    with both.execute_and_collect("personal-ids") as results:
        elements = list(results)
    records = {kind: [orjson.loads(text) for element in elements if element[0] == kind for text in element[1:].split("\n")]
               for kind in "JD"}
    stitched = {r["journey"] for r in records["J"] if r["kind"] == LogKind.STITCH and r["journey"].startswith("p:")}
    assert len(stitched) == len(PERSONAL_DATA)  # every customer with a personal id took in both visitors
    assert canonical(records["J"]) == canonical(reference.journey_records)
    assert canonical(records["D"]) == canonical(reference.decisions)
