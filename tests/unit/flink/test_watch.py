"""The driver's watch over a running job: what it says about a broker's answers and a job's failures.
The real thing, against a Tansu broker that stops mid-run, is tests/integration/kafka/test_outage.py."""
from __future__ import annotations

import io
import time

from pipelines.addresses import KafkaAddress
from pipelines.flink.watch import BrokerAnswer, BrokerWatch, FailoverWatch, JobWatch, kafka_brokers, root_cause

BROKER = "broker-1:9092"
WELL = BrokerAnswer(True)
SILENT = BrokerAnswer(False, error="no answer within 3 s")

KAFKA_FAILURE = """java.io.IOException: Could not perform checkpoint 3 for operator decisions_sink[6]: Writer (1/1)#0.
\tat org.apache.flink.streaming.runtime.tasks.StreamTask.performCheckpoint(StreamTask.java:1234)
Caused by: java.io.IOException: One or more Kafka Producer send requests have encountered exception
\tat org.apache.flink.connector.kafka.sink.KafkaWriter.checkAsyncException(KafkaWriter.java:290)
Caused by: org.apache.kafka.common.errors.TimeoutException: Expiring 12 record(s) for decisions-0:120000 ms has passed since batch creation
"""


def said(watch: BrokerWatch, answers: list[tuple[float, BrokerAnswer]]) -> list[str]:
    return [line for now, answer in answers if (line := watch.observe(answer, now))]


def test_a_broker_that_stops_answering_is_said_once_then_reminded_then_said_back():
    watch = BrokerWatch(BROKER, ["signals", "decisions"], remind_every_s=30)
    lines = said(watch, [(0, WELL), (2, SILENT), (4, SILENT), (20, SILENT), (33, SILENT), (40, SILENT), (44, WELL), (46, WELL)])
    assert lines == [
        "journey_job: the Kafka broker at broker-1:9092 does not answer (no answer within 3 s); the job reads and "
        "writes nothing there until it is back (signals, decisions)",
        "journey_job: the Kafka broker at broker-1:9092 does not answer (no answer within 3 s); the job reads and "
        "writes nothing there until it is back (signals, decisions) (for 31 s now)",
        "journey_job: the Kafka broker at broker-1:9092 answers again, with every topic of the job, after 42 s",
    ]


def test_a_broker_that_answers_without_a_topic_of_the_job_is_said_apart_from_a_silent_one():
    watch = BrokerWatch(BROKER, ["signals", "decisions"])
    lines = said(watch, [(0, SILENT), (5, BrokerAnswer(True, ("signals",))), (6, BrokerAnswer(True, ("signals",))), (9, WELL)])
    assert [line.split(" at broker-1:9092 ")[1][:30] for line in lines] == \
        ["does not answer (no answer wit", "answers, but has no topic sign", "answers again, with every topi"]
    assert lines[-1].endswith("after 9 s")


def test_a_broker_that_always_answered_is_never_mentioned():
    watch = BrokerWatch(BROKER, ["signals"])
    assert said(watch, [(0, WELL), (2, WELL), (60, WELL)]) == []


def test_the_root_cause_of_a_failure_is_its_innermost_caused_by():
    assert root_cause(KAFKA_FAILURE) == ("org.apache.kafka.common.errors.TimeoutException: "
                                         "Expiring 12 record(s) for decisions-0:120000 ms has passed since batch creation")
    assert root_cause("java.lang.RuntimeException: boom\n\tat a.b(C.java:1)") == "java.lang.RuntimeException: boom"
    assert root_cause("", "java.lang.Error") == "java.lang.Error"


def test_each_failure_in_the_exception_history_is_said_once_oldest_first():
    first = {"timestamp": 1_000, "exceptionName": "java.io.IOException", "taskName": "decisions_sink[6]: Writer (1/1)",
             "stacktrace": KAFKA_FAILURE}
    second = {"timestamp": 9_000, "exceptionName": "java.lang.RuntimeException", "taskName": None,
              "stacktrace": "java.lang.RuntimeException: no slots"}
    watch = FailoverWatch()
    assert [line.startswith("journey_job: failure 1 at ") for line in watch.observe([first])] == [True]
    [line] = watch.observe([second, first])  # the REST API lists the newest first
    assert line.startswith("journey_job: failure 2 at ") and line.endswith(": java.lang.RuntimeException: no slots")
    assert watch.observe([second, first]) == []


def test_a_kafka_failure_is_marked_as_one_and_names_its_task():
    [line] = FailoverWatch().observe([{"timestamp": 0, "exceptionName": "java.io.IOException",
                                       "taskName": "decisions_sink[6]: Writer (1/1)", "stacktrace": KAFKA_FAILURE}])
    assert " in decisions_sink[6]: Writer (1/1): Kafka: org.apache.kafka.common.errors.TimeoutException: Expiring" in line


def test_the_watch_speaks_of_a_broker_only_after_it_has_answered_once():
    """A probe that was never answered says more about librdkafka and the client properties
    (a JKS truststore, say) than about a broker the JVM's pre-flight check has just reached."""
    answers = {"never": [SILENT] * 100, BROKER: [WELL, SILENT] + [SILENT] * 100}
    out = io.StringIO()
    watch = JobWatch({"never": ["signals"], BROKER: ["decisions"]},
                     {name: (lambda topics, name=name: answers[name].pop(0)) for name in answers}, every_s=0.01, out=out)
    watch.start()
    deadline = time.time() + 10
    while "does not answer" not in out.getvalue() and time.time() < deadline:
        time.sleep(0.01)
    watch.stop()
    assert "the Kafka broker at broker-1:9092 does not answer" in out.getvalue()
    assert "never" not in out.getvalue()


def test_the_job_topics_are_grouped_by_broker():
    addresses = [KafkaAddress("a:9092", "signals"), KafkaAddress("a:9092", "decisions"), KafkaAddress("b:9092", "journeys"),
                 KafkaAddress("a:9092", "signals", "avro")]
    assert kafka_brokers(addresses) == {"a:9092": ["signals", "decisions"], "b:9092": ["journeys"]}
