#!/usr/bin/env bash
# make run: simulate signals and customer profiles, load the profiles into the feature store with
# the Feast CLI, train the stage models on a Beam replay and promote them in the MLflow registry
# (or reuse the champions trained on the same data), run the journey job with features, models
# and the retail policy (round 1), answer its decisions with simulated outcomes, run it again on
# the signals with the outcomes merged in (round 2), and print round 2's summary (decisions by
# agent, suppressions by rule, the uplift table) and the champion/challenger comparison.
# FEATURES=sqlite (default) uses the embedded sqlite online store; FEATURES=redis starts Debian's
# redis-server on loopback and uses the Redis profile (features/feature_store.redis.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
feast=.venv/bin/feast
run=var/run
features=${FEATURES:-sqlite}
mkdir -p "$run"

.venv/bin/journeys simulate --customers "${CUSTOMERS:-2000}" --days "${DAYS:-30}" --seed "${SEED:-7}" \
  --out "$run/signals.jsonl" --profiles-out features/data/customer_profiles.parquet

store_yaml=()
if [ "$features" = "redis" ]; then
  "$python" -m scripts.local_redis stop --dir var/redis >/dev/null 2>&1 || true
  JOURNEYS_REDIS=$("$python" -m scripts.local_redis start --dir var/redis)
  export JOURNEYS_REDIS
  trap '"$python" -m scripts.local_redis stop --dir var/redis' EXIT
  echo "Redis online store: JOURNEYS_REDIS=$JOURNEYS_REDIS"
  store_yaml=(-f features/feature_store.redis.yaml)
fi
# Each run simulates a new history, so it starts from a fresh feature store: materialize-incremental
# would otherwise only load data newer than the last run's.
rm -f features/data/registry.db features/data/online.db features/data/journey_activity.parquet
.venv/bin/journeys features init --repo features
"$feast" -c features "${store_yaml[@]}" apply
"$feast" -c features "${store_yaml[@]}" materialize-incremental "$(date -u +%Y-%m-%dT%H:%M:%S)"

# Stage models: a training set from a Beam replay of the same history, then train, register and
# promote in the sqlite registry under var/mlflow (MLFLOW_TRACKING_URI points elsewhere if set).
registry=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/var/mlflow/registry.db}
mkdir -p var/mlflow
rm -rf "$run/replay" "$run/decisions" "$run/journeys" "$run/late" "$run/dead-letter" "$run/checkpoints"
.venv/bin/journeys replay --input "$run/signals.jsonl" --output "$run/replay" --emit training-set \
  --profiles features/data/customer_profiles.parquet
for kind in journey_stage conversion_propensity; do
  .venv/bin/journeys models train --kind "$kind" --training-set "$run/replay/training_set" --truth "$run/signals.jsonl" \
    --register "$kind" --promote champion --reuse --tracking-uri "$registry"
done
# A more strongly regularized stage model as the challenger: the job shadow-scores it, and
# `journeys models compare` below sets it against the champion on the same decisions.
.venv/bin/journeys models train --kind journey_stage --training-set "$run/replay/training_set" --truth "$run/signals.jsonl" \
  --regularization 0.02 --register journey_stage --promote challenger --reuse --tracking-uri "$registry"

# Round 1 decides; the simulator answers each decision (delivered, opened, clicked, converted, ...
# with likelihoods that depend on the action); round 2 runs the job again on the signals with the
# answers merged in, where they join their decisions by decision_id in keyed state.
job_yaml=()
[ "$features" = "redis" ] && job_yaml=(--feature-store-yaml features/feature_store.redis.yaml)
job() {  # job <signals> <output dir> [more arguments]
  local signals=$1 out=$2
  shift 2
  rm -rf "$out"
  # PyFlink, MLflow and pyparsing warn about their own deprecations; they would bury the summary.
  PYTHONWARNINGS=ignore::DeprecationWarning "$python" jobs/journey_job.py \
    --signals "file://$PWD/$signals" \
    --decisions "file://$PWD/$out/decisions" --decision-log "file://$PWD/$out/decision-log" \
    --journeys "file://$PWD/$out/journeys" --late "file://$PWD/$out/late" --dead-letter "file://$PWD/$out/dead-letter" \
    --checkpoints "$out/checkpoints" --summary "$out/summary.json" \
    --feature-repo features "${job_yaml[@]}" --model-registry "$registry" "$@"
}
echo "== round 1: the journey job decides (its summary: $run/round-1/summary.json)"
rm -rf "$run/feature-rows"
job "$run/signals.jsonl" "$run/round-1" --feature-rows "file://$PWD/$run/feature-rows" >"$run/round-1.log"
# The online store already has the job's features; this gives the offline store their history.
.venv/bin/journeys features push-offline --repo features --rows "$run/feature-rows"
end_clock=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["end_clock"])' "$run/round-1/summary.json")
.venv/bin/journeys simulate-outcomes --decision-log "$run/round-1/decision-log" --signals "$run/signals.jsonl" \
  --out "$run/signals-with-outcomes.jsonl" --until "$end_clock"
echo "== round 2: the same signals with the outcomes of round 1's decisions"
job "$run/signals-with-outcomes.jsonl" "$run/round-2" --end-clock "$end_clock"
.venv/bin/journeys models compare --decisions "$run/round-2/decision-log" --journeys "$run/round-2/journeys" \
  --truth "$run/signals.jsonl"
.venv/bin/journeys map --journeys "$run/round-2/journeys" --decisions "$run/round-2/decision-log" --out "$run/map.html"
echo "journey map (open it in a browser; it works offline): $PWD/$run/map.html"
echo "decision log: $run/round-2/decision-log   journey log: $run/round-2/journeys   model registry: $registry"
echo "explain a customer: .venv/bin/journeys explain cust-000001 --log $run/round-2/decision-log"
