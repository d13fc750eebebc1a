import pytest

from journeys.ontology import packaged_ontology
from journeys.settings import packaged_settings
from pipelines.flink.env import prepare_python_workers
from tests.harness import EveryoneConsents, a_core, profiles_of

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
    return packaged_ontology()


@pytest.fixture(scope="session")
def settings():
    return packaged_settings()


@pytest.fixture
def transitions(ontology, settings):
    """The journey transitions, with a feature store in which everyone consents."""
    return a_core(EveryoneConsents(), ontology=ontology, settings=settings)


@pytest.fixture(scope="session")
def archive(tmp_path_factory):
    """Simulated signals and profiles with nothing beyond the lateness bound: the stream job applies them all."""
    from pipelines.tools.simulate import SimulationSpec, write_simulation

    path = tmp_path_factory.mktemp("archive") / "signals.jsonl"
    write_simulation(SimulationSpec(customers=120, days=12, seed=61, late_rate=0.0), path, profiles_of(path))
    return path


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory):
    """A Tansu broker on a free loopback port, for the whole test session."""
    from scripts.local_broker import LocalBroker

    broker = LocalBroker(tmp_path_factory.mktemp("tansu")).start()
    yield broker
    broker.stop()


@pytest.fixture
def fresh_topics(kafka_broker, request):
    """Topic names of this test alone (signals:4, decisions:4, journeys:4, late:1, dead-letter:1), created."""
    import re
    import uuid

    from pipelines.kafka.tools import create_topics

    prefix = "t" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-40:].rstrip("-") + "-" + uuid.uuid4().hex[:6]
    topics = {name: f"{prefix}-{name}" for name in ("signals", "decisions", "journeys", "late", "dead-letter")}
    create_topics(kafka_broker.bootstrap_servers, {topics["signals"]: 4, topics["decisions"]: 4, topics["journeys"]: 4,
                                                   topics["late"]: 1, topics["dead-letter"]: 1})
    return topics


@pytest.fixture(scope="session")
def model_registry(tmp_path_factory):
    """A real MLflow registry (sqlite) holding stage models trained on a small pattern:
    journey_stage versions 1 and 2 (champion 1) and conversion_propensity version 1 (champion)."""
    import orjson
    import pandas as pd

    from journeys.scoring import PROPENSITY_MODEL, STAGE_MODEL
    from models.registry import client_for, promote, register, train_and_log
    from tests.harness import decision_points_with_a_pattern

    folder = tmp_path_factory.mktemp("served-models")
    rows, truth = decision_points_with_a_pattern()
    pd.DataFrame(rows).to_parquet(folder / "training.parquet")
    (folder / "truth.jsonl").write_bytes(b"".join(
        orjson.dumps({"event_id": event_id, "simulator_truth": {"stage": stage}}) + b"\n" for event_id, stage in truth.items()))
    uri = f"sqlite:///{folder / 'registry.db'}"
    client = client_for(uri)
    runs = {}
    for kind, version_label, regularization in ((STAGE_MODEL, "v1", 1.0), (STAGE_MODEL, "v2", 0.05),
                                                (PROPENSITY_MODEL, "v1", 1.0)):
        trained = train_and_log(kind, str(folder / "training.parquet"), str(folder / "truth.jsonl"), uri=uri,
                                regularization=regularization)
        runs[(kind, version_label)] = trained.run_id
        register(client, trained.run_id, kind)
    promote(client, STAGE_MODEL, "1", "champion")
    promote(client, PROPENSITY_MODEL, "1", "champion")
    return {"uri": uri, "client": client, "runs": runs, "path": folder / "registry.db"}
