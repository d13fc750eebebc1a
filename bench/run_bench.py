"""make bench: throughput and latency of the journey job against the pure core and two peers (a
plain Python loop and Flink SQL session windows, bench/peers.py), on the same signals, from a file
and from Kafka to Kafka (on a local Tansu broker); live latency and the quiet stream
(bench/live_bench.py); the job on a cluster of two one-slot TaskManagers, the journey roles
sharing one Python interpreter or each with its own (bench/cluster_bench.py); the job with Feast features on and off; Feast online lookup latency on sqlite and Redis (bench/feature_bench.py); the job with the
MLflow stage models on and off, and the inference cost per decision (bench/model_bench.py); and
the Beam replay of the same signals on the DirectRunner, in one process and in two.

Each figure is the median of several runs measured in this one invocation, so ratios compare
like with like on a noisy machine. Results go to bench/results.json and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from journeys.ontology import packaged_ontology  # noqa: E402
from journeys.settings import packaged_settings  # noqa: E402
from pipelines.reference import ReferenceRun  # noqa: E402
from pipelines.tools.files import read_lines  # noqa: E402
from pipelines.tools.simulate import SimulationSpec, write_simulation  # noqa: E402

EVENTS_PER_CUSTOMER = 47  # what the default simulation yields over 30 days


def simulate_events(target: int, work: Path) -> tuple[Path, Path]:
    """The benchmark's signals, and its customers' profiles for the feature store."""
    path, profiles = work / f"signals-{target}.jsonl", work / f"profiles-{target}.parquet"
    if not (path.exists() and profiles.exists()):
        customers = max(10, round(target / EVENTS_PER_CUSTOMER))
        write_simulation(SimulationSpec(customers=customers, days=30, seed=11), path, profiles)
    return path, profiles


def run_job(signals: Path, work: Path, parallelism: int, feature_repo: Path | None = None,
            model_registry: str | None = None, extra: tuple[str, ...] = ()) -> dict:
    out = work / "job"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(ROOT / "jobs" / "journey_job.py"), "--signals", signals.as_uri(),
               "--decisions", (out / "decisions").as_uri(), "--journeys", (out / "journeys").as_uri(),
               "--dead-letter", (out / "dead-letter").as_uri(), "--summary", str(out / "summary.json"),
               "--checkpoints", str(work / "checkpoints"), "--parallelism", str(parallelism)]
    if feature_repo is not None:
        command += ["--feature-repo", str(feature_repo)]
    if model_registry is not None:
        command += ["--model-registry", model_registry]
    return _timed_job(command + list(extra), out)


# PyFlink's switch for the metrics of Python functions: the job without its own metrics.
METRICS_OFF = ("-D", "python.metric.enabled=false")


def run_kafka_job(bootstrap: str, stop_offsets: str, work: Path, attempt: int, parallelism: int) -> dict:
    from pipelines.kafka.tools import create_topics

    topics = {name: f"{name}-{attempt}" for name in ("decisions", "journeys", "late", "dead-letter")}
    create_topics(bootstrap, {topics["decisions"]: 4, topics["journeys"]: 4, topics["late"]: 1, topics["dead-letter"]: 1})
    out = work / "kafka-job"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(ROOT / "jobs" / "journey_job.py"), "--signals", f"kafka://{bootstrap}/signals",
               "--stop-offsets", stop_offsets, "--summary", str(out / "summary.json"),
               "--checkpoints", str(work / "checkpoints"), "--parallelism", str(parallelism),
               "--transactional-id-prefix", f"bench-{attempt}"]
    for name in ("decisions", "journeys", "late", "dead-letter"):
        command += [f"--{name}", f"kafka://{bootstrap}/{topics[name]}"]
    return _timed_job(command, out)


def run_replay(signals: Path, work: Path, processes: int) -> dict:
    """journeys replay of the same signals, every table, on the DirectRunner."""
    out = work / f"replay-{processes}"
    shutil.rmtree(out, ignore_errors=True)
    command = [str(Path(sys.executable).parent / "journeys"), "replay", "--input", str(signals), "--output", str(out)]
    if processes > 1:
        command += ["--direct_num_workers", str(processes), "--direct_running_mode", "multi_processing"]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"the replay failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    summary = json.loads((out / "_replay_summary.json").read_text())
    return {"events": summary["records_in"], "seconds": summary["seconds"],
            "events_per_second": summary["records_in"] / summary["seconds"], "balanced": summary["balanced"]}


def _timed_job(command: list[str], out: Path) -> dict:
    started = time.time()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.time() - started
    if completed.returncode != 0:
        raise SystemExit(f"the job failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    runtime = summary["runtime"]
    return {"events": summary["events_in"], "job_seconds": runtime["job_seconds"], "wall_seconds": round(wall, 2),
            "events_per_second": summary["events_in"] / runtime["job_seconds"],
            "latency_p50_ms": summary["decision_latency_ms"]["p50"], "latency_p99_ms": summary["decision_latency_ms"]["p99"],
            "balanced": summary["balanced"], "feature_lookups": summary.get("feature_lookups")}


def run_core(lines: list[bytes]) -> dict:
    ontology, settings = packaged_ontology(), packaged_settings()
    started = time.perf_counter()
    run = ReferenceRun(ontology, settings).feed(lines).finish()
    seconds = time.perf_counter() - started
    return {"events": run.lines_in, "seconds": round(seconds, 3), "events_per_second": run.lines_in / seconds}


def median(values):
    return statistics.median(values)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--results", default=str(ROOT / "bench" / "results.json"))
    parser.add_argument("--no-kafka", dest="kafka", action="store_false", help="skip the Kafka-to-Kafka figure")
    parser.add_argument("--no-features", dest="features", action="store_false", help="skip the Feast figures")
    parser.add_argument("--no-replay", dest="replay", action="store_false", help="skip the Beam replay figures")
    parser.add_argument("--no-models", dest="models", action="store_false", help="skip the stage-model figures")
    parser.add_argument("--no-metrics-off", dest="metrics_off", action="store_false",
                        help="skip the figure of the job without its Flink metrics")
    parser.add_argument("--no-peers", dest="peers", action="store_false", help="skip the plain-loop and Flink SQL peers")
    parser.add_argument("--no-live", dest="live", action="store_false", help="skip the live latency and quiet-stream figures")
    parser.add_argument("--no-cluster", dest="cluster", action="store_false",
                        help="skip the figures of the job on a two-TaskManager cluster")
    parser.add_argument("--live-rate", type=int, default=1000, help="signals per second of the live figures")
    parser.add_argument("--live-seconds", type=int, default=60, help="how long the live figures produce signals")
    args = parser.parse_args(argv)

    work = ROOT / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    signals, profiles = simulate_events(args.events, work)
    lines = list(read_lines(signals))
    print(f"benchmark input: {len(lines):,} simulated signals ({signals.name}); {args.runs} runs per figure", flush=True)

    broker = stop_offsets = None
    if args.kafka:
        from pipelines.kafka.tools import create_topics, produce_signals
        from scripts.local_broker import LocalBroker

        broker = LocalBroker(work / "kafka").start()
        create_topics(broker.bootstrap_servers, {"signals": 4})
        stop_offsets = produce_signals(broker.bootstrap_servers, "signals", lines).stop_offsets()

    lookups, feature_repo = None, None
    if args.features:
        from feature_bench import measure_lookups

        lookups, feature_repo = measure_lookups(work, profiles)
        for store, figures in lookups.items():
            print(f"  Feast online lookups on {store}: one entity p50 {figures['one_entity_p50_ms']} ms, "
                  f"p99 {figures['one_entity_p99_ms']} ms; 100 entities p50 {figures['batch_100_p50_ms']} ms", flush=True)

    registry, inference = None, None
    if args.models:
        from model_bench import measure_inference, prepare_registry

        registry = prepare_registry(work, signals, profiles)
        inference = measure_inference(lines, registry)
        print(f"  stage models: inference per decision p50 {inference['inference_p50_us_per_decision']} us, "
              f"p99 {inference['inference_p99_us_per_decision']} us (both champions); pyfunc predict "
              f"{inference['pyfunc_one_row_ms']} ms on one row", flush=True)

    from rollout_bench import measure_canary_tracking

    canary = measure_canary_tracking(lines, args.runs)
    print(f"  pure core with a policy canary tallied and judged: {canary['canary_events_per_second']:,} events/s, "
          f"without: {canary['core_events_per_second']:,} ({canary['core_with_canary_to_without_ratio']:.2f})", flush=True)

    from intake_bench import measure_hostile_intake

    intake = measure_hostile_intake()
    print(f"  intake of a 64 KB record: plain {intake['plain_64kb_ms']} ms, slowest hostile "
          f"{intake['slowest_hostile_64kb_ms']} ms ({intake['slowest_hostile']})", flush=True)

    core_runs, job_runs, kafka_runs, feature_runs, replay_runs, replay2_runs = [], [], [], [], [], []
    model_runs, quiet_runs, loop_runs, sql_runs = [], [], [], []
    for attempt in range(args.runs):
        # Interleave them so that drift in machine load affects all alike.
        core_runs.append(run_core(lines))
        print(f"  run {attempt + 1}: pure core {core_runs[-1]['events_per_second']:,.0f} events/s", flush=True)
        if args.peers:
            from peers import flink_sql_sessions, plain_python_loop

            loop_runs.append(plain_python_loop(lines))
            sql_runs.append(flink_sql_sessions(signals))
            print(f"  run {attempt + 1}: plain Python loop {loop_runs[-1]['events_per_second']:,.0f} events/s, "
                  f"Flink SQL sessions {sql_runs[-1]['events_per_second']:,.0f} events/s", flush=True)
        job_runs.append(run_job(signals, work, args.parallelism))
        print(f"  run {attempt + 1}: job {job_runs[-1]['events_per_second']:,.0f} events/s "
              f"(p50 {job_runs[-1]['latency_p50_ms']} ms, p99 {job_runs[-1]['latency_p99_ms']} ms)", flush=True)
        if args.metrics_off:
            quiet_runs.append(run_job(signals, work, args.parallelism, extra=METRICS_OFF))
            print(f"  run {attempt + 1}: job without its metrics {quiet_runs[-1]['events_per_second']:,.0f} events/s",
                  flush=True)
        if args.replay:
            replay_runs.append(run_replay(signals, work, 1))
            replay2_runs.append(run_replay(signals, work, 2))
            print(f"  run {attempt + 1}: Beam replay (DirectRunner) {replay_runs[-1]['events_per_second']:,.0f} events/s, "
                  f"with 2 processes {replay2_runs[-1]['events_per_second']:,.0f}", flush=True)
        if feature_repo is not None:
            feature_runs.append(run_job(signals, work, args.parallelism, feature_repo))
            print(f"  run {attempt + 1}: job with Feast features {feature_runs[-1]['events_per_second']:,.0f} events/s",
                  flush=True)
        if registry is not None:
            model_runs.append(run_job(signals, work, args.parallelism, model_registry=registry))
            print(f"  run {attempt + 1}: job with stage models {model_runs[-1]['events_per_second']:,.0f} events/s",
                  flush=True)
        if broker is not None:
            kafka_runs.append(run_kafka_job(broker.bootstrap_servers, stop_offsets, work, attempt, args.parallelism))
            print(f"  run {attempt + 1}: Kafka to Kafka {kafka_runs[-1]['events_per_second']:,.0f} events/s "
                  f"(p50 {kafka_runs[-1]['latency_p50_ms']} ms, p99 {kafka_runs[-1]['latency_p99_ms']} ms)", flush=True)
    if broker is not None:
        broker.stop()
    live = None
    if args.live:
        from live_bench import measure_live

        live = measure_live(work, lines, args.live_rate, args.live_seconds)
        for path in ("at_least_once", "exactly_once"):
            figures = live[path]
            print(f"  live, {path.replace('_', '-')}: event-to-decision p50 {figures['latency_p50_ms']} ms, "
                  f"p99 {figures['latency_p99_ms']} ms, max {figures['latency_max_ms']} ms "
                  f"(in the job p50 {figures['job_latency_p50_ms']} ms, p99 {figures['job_latency_p99_ms']} ms); "
                  f"{figures['decisions_per_signal']} decisions per signal", flush=True)

    cluster = None
    if args.cluster:
        from cluster_bench import measure_cluster

        def said(variant, run):
            print(f"  cluster, roles {variant}: job {run['events_per_second']:,.0f} events/s", flush=True)

        cluster = measure_cluster(work, signals, args.runs, said)

    job_rate = median(r["events_per_second"] for r in job_runs)
    core_rate = median(r["events_per_second"] for r in core_runs)
    results = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "events": len(lines),
        "runs": args.runs,
        "parallelism": args.parallelism,
        "job_events_per_second": round(job_rate),
        "core_events_per_second": round(core_rate),
        "job_to_core_ratio": round(job_rate / core_rate, 3),
        "latency_p50_ms": median(r["latency_p50_ms"] for r in job_runs),
        "latency_p99_ms": median(r["latency_p99_ms"] for r in job_runs),
        "job_wall_seconds": median(r["wall_seconds"] for r in job_runs),
        "target_events_per_second": 10_000,
        "job_runs": job_runs,
        "core_runs": core_runs,
        "intake_64kb": intake,
        "canary_tracking": canary,
    }
    if loop_runs:
        loop_rate = median(r["events_per_second"] for r in loop_runs)
        sql_rate = median(r["events_per_second"] for r in sql_runs)
        results.update({
            "plain_loop_events_per_second": round(loop_rate), "flink_sql_events_per_second": round(sql_rate),
            "job_to_plain_loop_ratio": round(job_rate / loop_rate, 3), "job_to_flink_sql_ratio": round(job_rate / sql_rate, 3),
            "core_to_plain_loop_ratio": round(core_rate / loop_rate, 3),
            "plain_loop_runs": loop_runs, "flink_sql_runs": sql_runs,
        })
    if live is not None:
        results["live"] = live
    if cluster is not None:
        shared, apart = (median(r["events_per_second"] for r in cluster[v]) for v in ("shared", "per-role"))
        results.update({
            "cluster_shared_events_per_second": round(shared), "cluster_per_role_events_per_second": round(apart),
            "cluster_per_role_to_shared_ratio": round(apart / shared, 3),
            "cluster_per_role_to_core_ratio": round(apart / core_rate, 3),
            "cluster_runs": cluster,
        })
    if quiet_runs:
        quiet_rate = median(r["events_per_second"] for r in quiet_runs)
        results.update({
            "metrics_off_job_events_per_second": round(quiet_rate),
            "metrics_on_to_off_ratio": round(job_rate / quiet_rate, 3),
            "metrics_off_runs": quiet_runs,
        })
    if kafka_runs:
        results.update({
            "kafka_job_events_per_second": round(median(r["events_per_second"] for r in kafka_runs)),
            "kafka_latency_p50_ms": median(r["latency_p50_ms"] for r in kafka_runs),
            "kafka_latency_p99_ms": median(r["latency_p99_ms"] for r in kafka_runs),
            "kafka_runs": kafka_runs,
        })
    if replay_runs:
        replay_rate = median(r["events_per_second"] for r in replay_runs)
        results.update({
            "replay_events_per_second": round(replay_rate),
            "replay_2_processes_events_per_second": round(median(r["events_per_second"] for r in replay2_runs)),
            "replay_to_core_ratio": round(replay_rate / core_rate, 3),
            "replay_runs": replay_runs, "replay_2_processes_runs": replay2_runs,
        })
    if feature_runs:
        features_rate = median(r["events_per_second"] for r in feature_runs)
        results.update({
            "features_job_events_per_second": round(features_rate),
            "features_on_to_off_ratio": round(features_rate / job_rate, 3),
            "feature_lookups": lookups,
            "lookup_budget_p99_ms_redis": 5.0,
            "feature_runs": feature_runs,
        })
    if model_runs:
        models_rate = median(r["events_per_second"] for r in model_runs)
        results.update({
            "models_job_events_per_second": round(models_rate),
            "models_on_to_off_ratio": round(models_rate / job_rate, 3),
            "model_inference": inference,
            "model_runs": model_runs,
        })
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=2) + "\n")

    rows = [
        ("events", f"{len(lines):,}"),
        ("job events/s (Flink, RocksDB, parallelism %d)" % args.parallelism, f"{job_rate:,.0f}"),
        ("pure core events/s (same signals, no Flink)", f"{core_rate:,.0f}"),
        ("job / core", f"{job_rate / core_rate:.2f}"),
        ("event-to-decision latency p50", f"{results['latency_p50_ms']} ms"),
        ("event-to-decision latency p99", f"{results['latency_p99_ms']} ms"),
        ("job wall clock incl. JVM start and input scan", f"{results['job_wall_seconds']:.1f} s"),
        ("pure core with a canary tallied and judged / without", f"{canary['core_with_canary_to_without_ratio']:.2f}"),
        ("intake, 64 KB record: plain / slowest hostile (budget 5 ms)",
         f"{intake['plain_64kb_ms']} / {intake['slowest_hostile_64kb_ms']} ms"),
    ]
    if loop_runs:
        rows += [
            ("plain Python loop events/s (JSON decode, gap sessions)", f"{results['plain_loop_events_per_second']:,}"),
            ("Flink SQL SESSION windows events/s (JVM, RocksDB)", f"{results['flink_sql_events_per_second']:,}"),
            ("job / plain loop, job / Flink SQL", f"{results['job_to_plain_loop_ratio']:.2f} / {results['job_to_flink_sql_ratio']:.2f}"),
            ("core / plain loop", f"{results['core_to_plain_loop_ratio']:.2f}"),
        ]
    if live is not None:
        for path in ("at_least_once", "exactly_once"):
            figures = live[path]
            rows += [(f"live {live['rate']}/s, {path.replace('_', '-')}: p50 / p99 / max",
                      f"{figures['latency_p50_ms']} / {figures['latency_p99_ms']} / {figures['latency_max_ms']} ms"),
                     (f"live {path.replace('_', '-')}: of it in the job (intake to decision), p50 / p99",
                      f"{figures['job_latency_p50_ms']} / {figures['job_latency_p99_ms']} ms"),
                     (f"live {path.replace('_', '-')}: decisions per signal produced", f"{figures['decisions_per_signal']}")]
        quiet = live["at_least_once"]
        rows += [("quiet stream: last session closed after the last signal",
                  f"{quiet['quiet_last_transition_s']} s (gap {live['gap_s']} s)"),
                 ("quiet stream: closed after falling due, max", f"{quiet['quiet_fired_after_due_max_s']} s")]
    if cluster is not None:
        rows += [
            ("cluster of 2 one-slot TaskManagers: roles sharing one / each in its own",
             f"{results['cluster_shared_events_per_second']:,} / {results['cluster_per_role_events_per_second']:,}"),
            ("cluster: roles apart / sharing, roles apart / core",
             f"{results['cluster_per_role_to_shared_ratio']:.2f} / {results['cluster_per_role_to_core_ratio']:.2f}"),
        ]
    if quiet_runs:
        rows += [
            ("job events/s with its metrics / without", f"{job_rate:,.0f} / {results['metrics_off_job_events_per_second']:,}"),
            ("metrics on / off", f"{results['metrics_on_to_off_ratio']:.2f}"),
        ]
    if kafka_runs:
        rows += [
            ("Kafka to Kafka events/s (Tansu, exactly-once)", f"{results['kafka_job_events_per_second']:,}"),
            ("Kafka to Kafka latency p50 / p99", f"{results['kafka_latency_p50_ms']} / {results['kafka_latency_p99_ms']} ms"),
        ]
    if replay_runs:
        rows += [
            ("Beam replay events/s (DirectRunner, 1 process)", f"{results['replay_events_per_second']:,}"),
            ("Beam replay events/s (DirectRunner, 2 processes)", f"{results['replay_2_processes_events_per_second']:,}"),
            ("replay / core", f"{results['replay_to_core_ratio']:.2f}"),
        ]
    if feature_runs:
        rows += [
            ("job events/s with Feast features (sqlite) / without", f"{results['features_job_events_per_second']:,} / "
                                                                   f"{results['job_events_per_second']:,}"),
            ("features on / off", f"{results['features_on_to_off_ratio']:.2f}"),
        ]
        for store, figures in lookups.items():
            rows += [(f"Feast lookup, 1 entity, {store}: p50 / p99",
                      f"{figures['one_entity_p50_ms']} / {figures['one_entity_p99_ms']} ms"),
                     (f"Feast lookup, 100 entities, {store}: p50 / p99",
                      f"{figures['batch_100_p50_ms']} / {figures['batch_100_p99_ms']} ms")]
        verdict = "within" if lookups["redis"]["one_entity_p99_ms"] < 5.0 else "OVER"
        rows.append(("Redis lookup p99 vs the 5 ms budget", verdict))
    if model_runs:
        rows += [
            ("job events/s with stage models / without", f"{results['models_job_events_per_second']:,} / "
                                                        f"{results['job_events_per_second']:,}"),
            ("models on / off", f"{results['models_on_to_off_ratio']:.2f}"),
            ("inference per decision p50 / p99 (both champions)",
             f"{inference['inference_p50_us_per_decision']} / {inference['inference_p99_us_per_decision']} us"),
            ("drift tracking per decision point (both champions)", f"{inference['drift_us_per_decision_point']} us"),
            ("pure core with drift tracking / without", f"{inference['core_with_drift_to_without_ratio']:.2f}"),
            ("pyfunc predict: 1 row / per row of 100",
             f"{inference['pyfunc_one_row_ms']} / {inference['pyfunc_100_rows_ms_per_row']} ms"),
        ]
    width = max(len(label) for label, _ in rows)
    print(f"\nmedians of {args.runs} runs")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>10}")
    print(f"results written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
