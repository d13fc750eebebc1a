"""Everything around the pure core (journeys): one wing per engine or service (flink, beam,
kafka, feast, mlflow), the `journeys` command (cli), reports, tools, configuration files, and
the in-process reference runner."""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout: flink-conf/, jars/, var/
