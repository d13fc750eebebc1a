"""The driver's watch over a running job, so that it never waits without saying why.

A Kafka client in Flink waits for a broker that went away without failing: the source reads
nothing, and a sink's producer holds its records until `delivery.timeout.ms` (2 minutes by
default) runs out. Meanwhile the job's log fills with warnings that nobody reads and the driver
prints nothing. While the job runs, this watch

- asks each Kafka broker of the job every few seconds whether it answers and holds the job's
  topics, and says one line when it stops answering (or loses a topic), again every half minute
  while that lasts, and once when it is back;
- reads the job's exception history from the cluster's REST API (a local run's MiniCluster has
  one too) and says one line per failover, with its root cause;
- says when no TaskManager is left to restart the job on.

It runs in a thread of the driver and talks to the broker with librdkafka (confluent-kafka),
not through the JVM, so that it never waits on the Java gateway the job's client holds.
"""
from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, TextIO

from pipelines.addresses import KafkaAddress
from pipelines.kafka.settings import KafkaSettings

PROBE_EVERY_S = 2.0
PROBE_TIMEOUT_S = 3.0
REMIND_EVERY_S = 30.0
REST_TIMEOUT_S = 3.0
CAUSE_CHARS = 400
SAY = "journey_job:"
# The cluster's REST API is asked directly: an HTTP proxy of the environment has no business with it.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- what a broker's answers say -------------------------------------------------------------------
@dataclass(frozen=True)
class BrokerAnswer:
    """One probe of a broker: whether it answered, and which of the job's topics it lacks."""
    answered: bool
    missing_topics: tuple[str, ...] = ()
    error: str = ""


class BrokerWatch:
    """Turns one broker's answers over time into lines to say: when it stops answering or loses
    a topic, a reminder while that lasts, and when it is well again. The clock is given."""

    def __init__(self, bootstrap: str, topics: list[str], remind_every_s: float = REMIND_EVERY_S):
        self.bootstrap = bootstrap
        self.topics = topics
        self.remind_every_s = remind_every_s
        self.trouble: str | None = None  # what is wrong now, as said; None while all is well
        self.since = 0.0
        self.reminded = 0.0

    def observe(self, answer: BrokerAnswer, now: float) -> str | None:
        trouble = self._trouble_in(answer)
        if trouble is None:
            if self.trouble is None:
                return None
            self.trouble = None
            return f"{SAY} the Kafka broker at {self.bootstrap} answers again, with every topic of the job, " \
                   f"after {now - self.since:.0f} s"
        if trouble != self.trouble:
            if self.trouble is None:
                self.since = now
            self.trouble, self.reminded = trouble, now
            return f"{SAY} {trouble}"
        if now - self.reminded >= self.remind_every_s:
            self.reminded = now
            return f"{SAY} {trouble} (for {now - self.since:.0f} s now)"
        return None

    def _trouble_in(self, answer: BrokerAnswer) -> str | None:
        if not answer.answered:
            return (f"the Kafka broker at {self.bootstrap} does not answer ({answer.error}); the job reads and "
                    f"writes nothing there until it is back ({', '.join(self.topics)})")
        if answer.missing_topics:
            return (f"the Kafka broker at {self.bootstrap} answers, but has no topic {', '.join(answer.missing_topics)}; "
                    f"the job waits for it")
        return None


# -- what the exception history says ---------------------------------------------------------------
def root_cause(stacktrace: str, fallback: str = "") -> str:
    """The innermost `Caused by:` of a Java stack trace, or its first line."""
    lines = [line.strip() for line in (stacktrace or "").splitlines()]
    causes = [line[len("Caused by: "):] for line in lines if line.startswith("Caused by: ")]
    cause = causes[-1] if causes else (lines[0] if lines and lines[0] else fallback)
    return cause if len(cause) <= CAUSE_CHARS else cause[:CAUSE_CHARS] + "..."


class FailoverWatch:
    """Turns the entries of a job's exception history (the REST API's `/jobs/:id/exceptions`,
    newest first) into one line per failure not said before."""

    def __init__(self):
        self.said: set[tuple] = set()

    def observe(self, entries: list[dict]) -> list[str]:
        lines = []
        for entry in sorted(entries, key=lambda e: e.get("timestamp", 0)):
            key = (entry.get("timestamp"), entry.get("exceptionName"), entry.get("taskName"))
            if key in self.said:
                continue
            self.said.add(key)
            where = f" in {entry['taskName']}" if entry.get("taskName") else ""
            at = time.strftime("%H:%M:%S", time.localtime(entry.get("timestamp", 0) / 1000))
            kafka = "Kafka: " if "org.apache.kafka" in (entry.get("stacktrace") or "") else ""
            cause = root_cause(entry.get("stacktrace", ""), entry.get("exceptionName", "unknown"))
            lines.append(f"{SAY} failure {len(self.said)} at {at}{where}: {kafka}{cause}")
        return lines


# -- the watch itself ------------------------------------------------------------------------------
def librdkafka_probe(bootstrap: str, kafka: KafkaSettings,
                     timeout_s: float = PROBE_TIMEOUT_S) -> Callable[[list[str]], BrokerAnswer]:
    """A function that asks the broker for its topics, with the job's client properties as
    librdkafka takes them. One client serves every probe, and reconnects on its own."""
    from confluent_kafka.admin import AdminClient

    from pipelines.kafka.tools import librdkafka_properties

    # log_level 0: the watch says what matters; librdkafka would print every refused connection.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "reconnect.backoff.max.ms": 1000,
                         "error_cb": lambda error: None} | librdkafka_properties(kafka.properties))

    def probe(topics: list[str]) -> BrokerAnswer:
        try:
            present = admin.list_topics(timeout=timeout_s).topics
        except Exception as error:  # KafkaException: timed out, transport failure
            return BrokerAnswer(False, error=_probe_error(error, timeout_s))
        return BrokerAnswer(True, tuple(topic for topic in topics if topic not in present
                                        or present[topic].error is not None))

    return probe


def _probe_error(error: Exception, timeout_s: float) -> str:
    text = str(error.args[0].str() if error.args and hasattr(error.args[0], "str") else error)
    return f"no answer within {timeout_s:.0f} s" if "timed out" in text.lower() or not text else text


class JobWatch:
    """Probes the job's brokers and reads its exception history in a thread of its own, and
    prints what it finds; start() after submitting the job, stop() when it has ended."""

    def __init__(self, brokers: dict[str, list[str]], probes: dict[str, Callable], job_id: str | None = None,
                 rest_url: str | None = None, every_s: float = PROBE_EVERY_S, out: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.brokers = {bootstrap: BrokerWatch(bootstrap, topics) for bootstrap, topics in brokers.items()}
        self.probes = probes
        self.job_id = job_id
        self.rest_url = rest_url.rstrip("/") if rest_url else None
        self.every_s = every_s
        self.out = out
        self.clock = clock
        self.failovers = FailoverWatch()
        self.watching_brokers = set()  # a broker is watched from its first answer on (see _look)
        self.no_taskmanager_said = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-watch", daemon=True)

    def start(self) -> "JobWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=PROBE_TIMEOUT_S + REST_TIMEOUT_S + 1)
        self._look_at_failures()  # the failure that ended the job, if the last round missed it

    def _run(self) -> None:
        while not self._stopped.wait(self.every_s):
            self._look()

    def _look(self) -> None:
        for bootstrap, watch in self.brokers.items():
            answer = self.probes[bootstrap](watch.topics)
            # The pre-flight check reached every broker with the JVM's client. A probe that has
            # never been answered says more about librdkafka and these client properties (a JKS
            # truststore, Kerberos) than about the broker, so it stays silent.
            if answer.answered:
                self.watching_brokers.add(bootstrap)
            if bootstrap in self.watching_brokers:
                self._say(watch.observe(answer, self.clock()))
        self._look_at_failures()

    def _look_at_failures(self) -> None:
        if self.rest_url is None or self.job_id is None:
            return
        history = self._get(f"/jobs/{self.job_id}/exceptions")
        if history is not None:
            for line in self.failovers.observe(history.get("exceptionHistory", {}).get("entries", [])):
                self._say(line)
        overview = self._get("/overview")
        if overview is not None and self.failovers.said and not self.no_taskmanager_said \
                and overview.get("taskmanagers", 1) == 0:
            self.no_taskmanager_said = True
            self._say(f"{SAY} no TaskManager is left to restart the job on (the log says why the last one stopped): "
                      f"its restarts fail for want of slots until one registers")

    def _get(self, path: str) -> dict | None:
        try:
            with _NO_PROXY.open(f"{self.rest_url}{path}", timeout=REST_TIMEOUT_S) as response:
                return json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            return None  # the cluster is shutting down, or busy: the next round asks again

    def _say(self, line: str | None) -> None:
        if line:
            print(line, file=self.out or sys.stderr, flush=True)


def kafka_brokers(addresses: list[KafkaAddress]) -> dict[str, list[str]]:
    """bootstrap servers -> the job's topics there, in the order the addresses give them."""
    brokers: dict[str, list[str]] = {}
    for address in addresses:
        topics = brokers.setdefault(address.bootstrap_servers, [])
        if address.topic not in topics:
            topics.append(address.topic)
    return brokers


def rest_url_of(job_client) -> str | None:
    """The REST address of the cluster running a job, from its Java JobClient: a local run's
    MiniCluster, or the cluster `flink run` submitted to. None if neither can tell."""
    java_client = job_client._j_job_client
    try:
        if java_client.getClass().getSimpleName() == "MiniClusterJobClient":
            field = java_client.getClass().getDeclaredField("miniCluster")
            field.setAccessible(True)
            return str(field.get(java_client).getRestAddress().get())
        field = java_client.getClass().getDeclaredField("clusterClientProvider")
        field.setAccessible(True)
        return str(field.get(java_client).getClusterClient().getWebInterfaceURL())
    except Exception:  # another JobClient: the watch then says nothing about failovers
        return None


def execute_watched(env, job_name: str, kafka_addresses: list[KafkaAddress], kafka: KafkaSettings,
                    out: TextIO | None = None):
    """env.execute(job_name), with a JobWatch beside it while the job runs. A detached
    submission returns at once, as env.execute does, and has nothing to watch."""
    from pyflink.java_gateway import get_gateway

    attached = get_gateway().jvm.org.apache.flink.configuration.DeploymentOptions.ATTACHED
    if not env._j_stream_execution_environment.getConfiguration().get(attached):
        return env.execute(job_name)
    client = env.execute_async(job_name)
    brokers = kafka_brokers(kafka_addresses)
    watch = JobWatch(brokers, {bootstrap: librdkafka_probe(bootstrap, kafka) for bootstrap in brokers},
                     str(client.get_job_id()), rest_url_of(client), out=out).start()
    try:
        return client.get_job_execution_result().result()
    finally:
        watch.stop()
