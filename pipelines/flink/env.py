"""Creating the Flink environment the way the journey job needs it."""
from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import yaml

from pipelines import PROJECT_ROOT

DEFAULT_FLINK_CONF_DIR = PROJECT_ROOT / "flink-conf"


def prepare_python_workers() -> None:
    """Thread mode runs Python inside the TaskManager JVM, and that interpreter finds the project
    and this venv's packages only through PYTHONPATH, which must be set before the JVM starts."""
    wanted = [str(PROJECT_ROOT), sysconfig.get_paths()["purelib"]]
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(wanted + [p for p in current if p not in wanted])
    log_dir = PROJECT_ROOT / "var" / "log" / "flink"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))


def load_flink_conf(conf_dir: str | Path = DEFAULT_FLINK_CONF_DIR) -> dict[str, str]:
    """config.yaml as flat dotted keys (Flink accepts both nested and flat forms)."""
    path = Path(conf_dir) / "config.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    flat: dict[str, str] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, bool):
            flat[prefix] = "true" if value else "false"
        elif isinstance(value, list):
            flat[prefix] = ";".join(str(item) for item in value)
        else:
            flat[prefix] = str(value)

    walk("", doc)
    return flat


def load_live_conf(conf_dir: str | Path = DEFAULT_FLINK_CONF_DIR) -> dict[str, str]:
    """live.yaml beside config.yaml, if there is one: what a live run sets on top of config.yaml."""
    path = Path(conf_dir) / "live.yaml"
    return {str(key): str(value) for key, value in (yaml.safe_load(path.read_text()) or {}).items()} if path.exists() else {}


def python_metrics_enabled(conf_dir: str | Path, overrides: dict[str, str]) -> bool:
    """Flink's switch for the metrics of Python functions (`-D python.metric.enabled=false`)."""
    return (load_flink_conf(conf_dir) | overrides).get("python.metric.enabled", "true").strip().lower() != "false"


# Keys that configure the processes of a standalone cluster, not a job: a local run leaves them out
# (a fixed REST or metrics port, say, would clash with a cluster running beside it).
CLUSTER_PROCESS_KEYS = ("env.", "jobmanager.", "taskmanager.", "rest.", "heartbeat.", "metrics.reporter.")


def create_environment(conf_dir: str | Path = DEFAULT_FLINK_CONF_DIR, overrides: dict[str, str] | None = None):
    """A StreamExecutionEnvironment with the project's Flink config. Under `flink run` the client's
    cluster configuration already applies, and this adds the job's own settings."""
    prepare_python_workers()
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    settings = {key: value for key, value in load_flink_conf(conf_dir).items() if not key.startswith(CLUSTER_PROCESS_KEYS)}
    settings["python.executable"] = sys.executable
    settings["python.client.executable"] = sys.executable
    settings.update(overrides or {})
    configuration = Configuration()
    for key, value in settings.items():
        configuration.set_string(key, value)
    return StreamExecutionEnvironment.get_execution_environment(configuration)
