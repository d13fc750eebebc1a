"""The journey job as a function from streams to streams.

    raw lines ─▶ parse_signals ─┬─ customer items ─▶ event time ───────────────┐
                                │                                               ▼
                                ├─ visitor items ─▶ event time ─▶ map_visitor_journeys ─▶ map_customer_journeys
                                │                    (keyed by anonymous_id)  handoffs,   (keyed by customer_id)
                                └─ dead letters                               forwards
    Both journey operators emit journey log records and decisions as side outputs.

Timestamps, watermarks and keyBy are wired on the Java side (CustomTimestampAssigner and
KeyByKeySelector from flink-python): PyFlink's own key_by and timestamp assigner would each add a
separate Python operator to every record's path.
"""
from __future__ import annotations

from dataclasses import dataclass

from pyflink.common import Duration, WatermarkStrategy
from pyflink.datastream import DataStream, KeyedStream
from pyflink.java_gateway import get_gateway

from journeys.keyed import CUSTOMER, VISITOR
from journeys.ontology import Ontology
from journeys.settings import JourneySettings
from pipelines import wire
from pipelines.operators import (DEAD_LETTERS, DECISIONS, JOURNEY_LOG, LATE_SIGNALS, VISITOR_ITEMS, MapJourneys,
                                 ParseSignals)


@dataclass(frozen=True)
class JourneyStreams:
    """Each element of decisions and journeys holds one or more JSON lines, joined by newlines:
    the records one operator call produced (see MapJourneys._emit). Dead letters are one per element."""

    decisions: DataStream      # decision records
    journeys: DataStream       # the journey log: signals applied, transitions, sessions, stitches, duplicates
    late: DataStream           # late signals (journey log records of kind "late"), whole, for reprocessing
    dead_letters: DataStream   # rejected input with reason and original bytes


def build_journey_pipeline(raw_lines: DataStream, ontology: Ontology, settings: JourneySettings,
                           end_clock: int | None = None) -> JourneyStreams:
    """Wire the job onto a stream of raw input lines (STRING, decoded as ISO-8859-1).

    end_clock: for a bounded input, the event time at which time stops when the input ends (see
    README, "Bounded runs"); None leaves time-driven transitions to the watermark alone.
    """
    parsed = (raw_lines
              .process(ParseSignals(ontology, settings), output_type=wire.TIMESTAMPED_KEYED_ITEM)
              .name("parse_signals").uid("parse-signals"))
    customer_items = _with_event_time(parsed, settings, "customer")
    visitor_items = _with_event_time(parsed.get_side_output(VISITOR_ITEMS), settings, "visitor")

    visitors = (_keyed(visitor_items)
                .process(MapJourneys(VISITOR, ontology, settings, end_clock), output_type=wire.KEYED_ITEM)
                .name("map_visitor_journeys").uid("map-visitor-journeys"))
    customers = (_keyed(customer_items.union(visitors))
                 .process(MapJourneys(CUSTOMER, ontology, settings, end_clock), output_type=wire.RECORD)
                 .name("map_customer_journeys").uid("map-customer-journeys"))

    return JourneyStreams(
        decisions=visitors.get_side_output(DECISIONS).union(customers.get_side_output(DECISIONS)),
        journeys=visitors.get_side_output(JOURNEY_LOG).union(customers.get_side_output(JOURNEY_LOG)),
        late=visitors.get_side_output(LATE_SIGNALS).union(customers.get_side_output(LATE_SIGNALS)),
        dead_letters=parsed.get_side_output(DEAD_LETTERS),
    )


def _with_event_time(items: DataStream, settings: JourneySettings, path: str) -> DataStream:
    """Tuple2(keyed item, event time) in; keyed items with timestamps and watermarks out."""
    jvm = get_gateway().jvm
    eventtime = jvm.org.apache.flink.streaming.api.functions.python.eventtime
    strategy = (WatermarkStrategy
                .for_bounded_out_of_orderness(Duration.of_millis(settings.max_out_of_orderness_ms))
                .with_idleness(Duration.of_millis(settings.idle_source_timeout_ms)))
    stamped = (items._j_data_stream
               .assignTimestampsAndWatermarks(strategy._j_watermark_strategy.withTimestampAssigner(eventtime.CustomTimestampAssigner()))
               .name(f"assign_{path}_event_time").uid(f"assign-{path}-event-time"))
    plain = (stamped.map(eventtime.RemoveTimestampMapFunction(), wire.KEYED_ITEM.get_java_type_info())
             .name(f"strip_{path}_timestamp").uid(f"strip-{path}-timestamp"))
    return DataStream(plain)


def _keyed(items: DataStream) -> KeyedStream:
    """keyBy on the item's first field, in Java; the keyed operator then receives the item alone."""
    jvm = get_gateway().jvm
    j_keyed = items._j_data_stream.keyBy(jvm.org.apache.flink.streaming.api.functions.python.KeyByKeySelector(),
                                         wire.KEY.get_java_type_info())
    return KeyedStream(j_keyed, wire.ITEM, items)
