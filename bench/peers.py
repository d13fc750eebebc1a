"""The job's peers in `make bench`, on the same signals file:

- a plain Python loop: JSON decode and 30-minute gap sessions per key, nothing else;
- Flink SQL: the same JSON decoded in the JVM, event time with the same bound, and SESSION windows
  (30 min) counted per key on RocksDB at parallelism 1 (JVM operators only).

Run as a script (`python bench/peers.py sql FILE`), it runs the Flink SQL job in its own JVM and
prints its figures as JSON.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
GAP_MS = 30 * 60_000


def plain_python_loop(lines: list[bytes], gap_ms: int = GAP_MS) -> dict:
    started = time.perf_counter()
    open_sessions: dict[str, list[int]] = {}
    closed = 0
    for raw in lines:
        try:
            signal = orjson.loads(raw)
            key, at = signal.get("customer_id") or signal.get("anonymous_id"), signal["event_time"]
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            continue
        if not isinstance(at, int) or key is None:
            continue
        session = open_sessions.get(key)
        if session is None or at - session[1] > gap_ms:
            closed += session is not None
            open_sessions[key] = [at, at]
        elif at > session[1]:
            session[1] = at
    seconds = time.perf_counter() - started
    return {"events": len(lines), "seconds": round(seconds, 3), "events_per_second": len(lines) / seconds,
            "sessions": closed + len(open_sessions)}


def flink_sql_sessions(signals: Path) -> dict:
    completed = subprocess.run([sys.executable, str(Path(__file__)), "sql", str(signals)], capture_output=True, text=True,
                               cwd=ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"the Flink SQL peer failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _run_sql(signals: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from pyflink.table import StreamTableEnvironment

    from journeys.settings import packaged_settings
    from pipelines.flink.env import create_environment
    from pipelines.quiet import hush_third_party_warnings

    hush_third_party_warnings()
    bound_ms = packaged_settings().max_out_of_orderness_ms
    env = create_environment(overrides={"execution.checkpointing.dir": (ROOT / "bench" / "work" / "sql-checkpoints").as_uri(),
                                        "restart-strategy.type": "none"})
    env.set_parallelism(1)
    tables = StreamTableEnvironment.create(env)
    tables.execute_sql(f"""
        CREATE TABLE signals (
          customer_id STRING, anonymous_id STRING, event_time BIGINT,
          ts AS TO_TIMESTAMP_LTZ(event_time, 3),
          WATERMARK FOR ts AS ts - INTERVAL '{bound_ms // 60_000}' MINUTE
        ) WITH ('connector' = 'filesystem', 'path' = '{signals.resolve().as_uri()}', 'format' = 'json',
                'json.ignore-parse-errors' = 'true', 'json.fail-on-missing-field' = 'false')""")
    tables.execute_sql("CREATE TABLE sessions (k STRING, started TIMESTAMP_LTZ(3), signals BIGINT) WITH ('connector' = 'blackhole')")
    lines = sum(1 for _ in open(signals, "rb"))
    started = time.perf_counter()
    result = tables.execute_sql(f"""
        INSERT INTO sessions
        SELECT k, SESSION_START(ts, INTERVAL '{GAP_MS // 60_000}' MINUTE), COUNT(*)
        FROM (SELECT COALESCE(customer_id, anonymous_id) AS k, ts FROM signals
              WHERE event_time IS NOT NULL AND COALESCE(customer_id, anonymous_id) IS NOT NULL)
        GROUP BY k, SESSION(ts, INTERVAL '{GAP_MS // 60_000}' MINUTE)""")
    execution = result.get_job_client().get_job_execution_result().result()
    wall = time.perf_counter() - started
    seconds = execution.get_net_runtime() / 1000 if execution.get_net_runtime() else wall
    return {"events": lines, "seconds": round(seconds, 3), "events_per_second": lines / seconds}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sql":
        print(json.dumps(_run_sql(Path(sys.argv[2]))))
    else:
        raise SystemExit("usage: python bench/peers.py sql SIGNALS.jsonl")
