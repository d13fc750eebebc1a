import pytest

from journeys.ontology import load_ontology
from journeys.settings import load_settings
from journeys.transitions import JourneyModel
from pipelines.flink_env import prepare_python_workers

# Flink's thread mode finds the project only through PYTHONPATH, fixed when the JVM starts, and
# the first Flink test starts it inside this process.
prepare_python_workers()


def pytest_collection_modifyitems(items):
    """Beam tests first. Once PyFlink has run a job in a process, it has registered its own
    factories for Beam's worker operations (pyflink.fn_execution.beam), and a Beam pipeline run
    in that process afterwards fails. Users run the two in separate processes anyway."""
    items.sort(key=lambda item: item.get_closest_marker("beam") is None)


@pytest.fixture(scope="session")
def ontology():
    return load_ontology()


@pytest.fixture(scope="session")
def settings():
    return load_settings()


@pytest.fixture
def model(ontology, settings):
    return JourneyModel(ontology, settings)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A Tansu broker on a free loopback port, for the whole test session."""
    from pipelines.local_broker import LocalBroker

    broker = LocalBroker(tmp_path_factory.mktemp("tansu")).start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_topics(kafka_broker, request):
    """Topic names of this test alone (signals:4, decisions:4, journeys:4, late:1, dead-letter:1), created."""
    import re
    import uuid

    from pipelines.kafka_tools import create_topics

    prefix = "t" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-40:].rstrip("-") + "-" + uuid.uuid4().hex[:6]
    topics = {name: f"{prefix}-{name}" for name in ("signals", "decisions", "journeys", "late", "dead-letter")}
    create_topics(kafka_broker.bootstrap_servers, {topics["signals"]: 4, topics["decisions"]: 4, topics["journeys"]: 4,
                                                   topics["late"]: 1, topics["dead-letter"]: 1})
    return topics
