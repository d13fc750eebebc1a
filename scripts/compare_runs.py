"""Compare two checkouts of the project on the same input: the stream job's and the replay's
outputs, record for record, apart from ordering and wall-clock fields.

    python scripts/compare_runs.py inputs DIR                      simulate the input, once
    python scripts/compare_runs.py run --tree CHECKOUT DIR OUT     run that checkout's job and replay on it
    python scripts/compare_runs.py compare OUT_A OUT_B             every output, as multisets of records

`run` uses the checkout's own code (PYTHONPATH), this venv, a fresh copy of the input's Feast
repository and the input's MLflow registry, so both runs decide with the same features and models.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PYTHON = sys.executable
JOURNEYS = [sys.executable, "-m", "pipelines.cli"]  # the `journeys` command of the checkout run
FEAST = str(Path(sys.executable).parent / "feast")
WALL_CLOCK = {"latency_ms", "decision_us", "read_at"}
JOB_OUTPUTS = ("decisions", "decision-log", "journeys", "late", "dead-letter", "feature-rows")
REPLAY_TABLES = ("journeys", "stage_history", "sessions", "decisions", "dead_letters", "feature_history", "training_set")


def sh(command: list[str], tree: Path, **kwargs) -> None:
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONWARNINGS="ignore")
    subprocess.run(command, check=True, cwd=tree, env=env, **kwargs)


def make_inputs(directory: Path, tree: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    sh([*JOURNEYS, "simulate", "--customers", "400", "--days", "10", "--seed", "7", "--out",
        str(directory / "signals.jsonl"), "--profiles-out", str(directory / "profiles.parquet")], tree)
    repo = directory / "features"
    shutil.copytree(tree / "features", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    shutil.copy(directory / "profiles.parquet", repo / "data" / "customer_profiles.parquet")
    sh([*JOURNEYS, "features", "init", "--repo", str(repo)], tree)
    sh([FEAST, "-c", str(repo), "apply"], tree, stdout=subprocess.DEVNULL)
    sh([FEAST, "-c", str(repo), "materialize-incremental", "2030-01-01T00:00:00"], tree, stdout=subprocess.DEVNULL)
    replay = directory / "training"
    sh([*JOURNEYS, "replay", "--input", str(directory / "signals.jsonl"), "--output", str(replay), "--emit",
        "training-set", "--profiles", str(directory / "profiles.parquet")], tree)
    registry = f"sqlite:///{directory / 'registry.db'}"
    for kind, alias, regularization in (("journey_stage", "champion", "1.0"), ("conversion_propensity", "champion", "1.0"),
                                        ("journey_stage", "challenger", "0.02")):
        sh([*JOURNEYS, "models", "train", "--kind", kind, "--training-set", str(replay / "training_set"), "--truth",
            str(directory / "signals.jsonl"), "--regularization", regularization, "--register", kind, "--promote", alias,
            "--tracking-uri", registry], tree)


def run(tree: Path, inputs: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    repo = out / "features"
    shutil.copytree(inputs / "features", repo)
    job = out / "job"
    arguments = [PYTHON, str(tree / "jobs" / "journey_job.py"), "--signals", (inputs / "signals.jsonl").as_uri(),
                 "--checkpoints", str(out / "checkpoints"), "--summary", str(job / "summary.json"),
                 "--feature-repo", str(repo), "--model-registry", f"sqlite:///{inputs / 'registry.db'}"]
    for name in JOB_OUTPUTS:
        arguments += [f"--{name}", (job / name).as_uri()]
    sh(arguments, tree, stdout=subprocess.DEVNULL)
    sh([*JOURNEYS, "replay", "--input", str(inputs / "signals.jsonl"), "--output", str(out / "replay"), "--emit",
        "journeys,stage-history,sessions,decisions,dead-letters,features,training-set",
        "--profiles", str(inputs / "profiles.parquet")], tree, stdout=subprocess.DEVNULL)


def canonical(record: dict) -> str:
    return json.dumps({k: v for k, v in record.items() if k not in WALL_CLOCK}, sort_keys=True, default=str)


def job_records(out: Path, name: str) -> collections.Counter:
    counts = collections.Counter()
    for path in sorted((out / "job" / name).rglob("*.jsonl")):
        if path.name.startswith("."):
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                counts[canonical(json.loads(line))] += 1
    return counts


def latest_feature_rows(out: Path, name: str) -> collections.Counter:
    """Before issue 10 the job pushed one feature row per timer call, and how many calls a run made
    depended on when Flink's periodic watermarks came, so those rows varied from run to run. What
    the store keeps, each customer's latest row, does not, so that is what is compared."""
    latest: dict[str, tuple] = {}
    for text in job_records(out, name):
        row = json.loads(text)
        key = (row["event_timestamp"], text)
        latest[row["customer_id"]] = max(latest.get(row["customer_id"], key), key)
    return collections.Counter(text for _, text in latest.values())


def table_records(out: Path, name: str) -> collections.Counter:
    import pyarrow.parquet as pq

    folder = out / "replay" / name
    counts = collections.Counter()
    for path in sorted(folder.rglob("*.parquet")) if folder.exists() else ():
        for row in pq.read_table(path).to_pylist():
            counts[canonical(row)] += 1
    return counts


def compare(a: Path, b: Path) -> int:
    differences = 0
    job_outputs = tuple(name for name in JOB_OUTPUTS if name != "feature-rows")
    for label, read, names in (("job", job_records, job_outputs), ("job latest", latest_feature_rows, ("feature-rows",)),
                               ("replay", table_records, REPLAY_TABLES)):
        for name in names:
            left, right = read(a, name), read(b, name)
            missing, extra = left - right, right - left
            same = "same" if not (missing or extra) else f"DIFFERENT: {sum(missing.values())} only in the first, " \
                                                           f"{sum(extra.values())} only in the second"
            print(f"{label} {name}: {sum(left.values()):,} / {sum(right.values()):,} records, {same}")
            for record in list(missing)[:2] + list(extra)[:2]:
                print(f"    {record[:300]}")
            differences += sum(missing.values()) + sum(extra.values())
    summaries = [json.loads((out / "job" / "summary.json").read_text()) for out in (a, b)]
    for summary in summaries:
        for key in ("runtime", "decision_latency_ms", "time_to_map_ms"):
            summary.pop(key, None)
    same_summary = summaries[0] == summaries[1]
    print(f"job summary (without runtime and latency): {'same' if same_summary else 'DIFFERENT'}")
    return 0 if differences == 0 and same_summary else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inputs = commands.add_parser("inputs")
    inputs.add_argument("directory", type=Path)
    inputs.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    runs = commands.add_parser("run")
    runs.add_argument("--tree", type=Path, required=True)
    runs.add_argument("inputs", type=Path)
    runs.add_argument("out", type=Path)
    comparison = commands.add_parser("compare")
    comparison.add_argument("first", type=Path)
    comparison.add_argument("second", type=Path)
    args = parser.parse_args(argv)
    if args.command == "inputs":
        make_inputs(args.directory.resolve(), args.tree.resolve())
        return 0
    if args.command == "run":
        run(args.tree.resolve(), args.inputs.resolve(), args.out.resolve())
        return 0
    return compare(args.first, args.second)


if __name__ == "__main__":
    sys.exit(main())
