"""Third-party warnings, filtered where they are raised: in the job's driver, in the Python
workers Flink runs the operators in, in the registry watcher process and in the `journeys`
command. PyFlink, Beam, MLflow, Feast and the libraries under them warn about their own
deprecations, which a user can do nothing about and which bury what the job says.

Warnings the project's own code raises stay, and so does an explicit choice: with PYTHONWARNINGS
or -W set, nothing is filtered here."""
from __future__ import annotations

import logging
import sys
import warnings

THIRD_PARTY = (r"(pyflink|apache_beam|mlflow|feast|httplib2|pyparsing|sqlalchemy|google|grpc|pandas|pyarrow|dill|"
               r"setuptools|pkg_resources|alembic|pydantic|typeguard|dask|opentelemetry)(\.|$)")
# MLflow's notes on how it read a dataset or inferred a signature, at every model it logs.
MLFLOW_NOTES = r"mlflow(\.|$)"
NOISY_LOGGERS = ("mlflow", "alembic", "feast", "py4j", "apache_beam")


def hush_third_party_warnings() -> None:
    if sys.warnoptions:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)
    warnings.filterwarnings("ignore", category=UserWarning, module=MLFLOW_NOTES)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
