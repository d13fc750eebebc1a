"""Flink type information for what travels between the journey job's operators.

The contracts themselves are the Avro schemas in journeys/schemas (journeys.contract). Inside the
job, records cross Python/Java boundaries as their JSON encoding in STRING fields: a STRING
converts by identity in PyFlink's thread mode, while ROW and array types convert field by field
(measured: a ROW with a map field costs about 11 microseconds more per event), and nothing here
is pickled.
"""
from pyflink.common import Types

# A keyed item (journeys.keyed: [event_time, event_id, kind, payload, ingested_at, late]) as JSON.
ITEM = Types.STRING()
# The routing key and the item: what keyBy splits on.
KEYED_ITEM = Types.ROW([Types.STRING(), ITEM])
# With its event time, for the Java timestamp assigner (CustomTimestampAssigner reads field 1).
TIMESTAMPED_KEYED_ITEM = Types.TUPLE([KEYED_ITEM, Types.LONG()])
KEY = Types.ROW([Types.STRING()])
# Journey log records, decisions and dead letters for files: one JSON object per line.
RECORD = Types.STRING()
# One record for a Kafka topic: (message key, message value).
KEYED_RECORD = Types.ROW([Types.STRING(), Types.STRING()])
# Row(output, key, value): any output of a journey operator on its main output ("" for the main
# one), for the operator with policy updates (see pipelines.flink.operators.MapJourneysWithPolicyUpdates).
ROUTED = Types.ROW([Types.STRING(), Types.STRING(), Types.STRING()])
# journeys.state wire form of one key's state.
KEY_STATE = Types.STRING()
# Raw input lines and Kafka message values, decoded as ISO-8859-1 so that every byte survives
# (for the dead-letter output, and for Avro); Avro output values use the same charset.
RAW_LINE = Types.STRING()
RAW_LINE_CHARSET = "ISO-8859-1"
