#!/usr/bin/env bash
# make run: simulate signals and customer profiles, load the profiles into the feature store with
# the Feast CLI, run the journey job with features, print its summary.
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
  "$python" -m pipelines.local_redis stop --dir var/redis >/dev/null 2>&1 || true
  JOURNEYS_REDIS=$("$python" -m pipelines.local_redis start --dir var/redis)
  export JOURNEYS_REDIS
  trap '"$python" -m pipelines.local_redis stop --dir var/redis' EXIT
  echo "Redis online store: JOURNEYS_REDIS=$JOURNEYS_REDIS"
  store_yaml=(-f features/feature_store.redis.yaml)
fi
# Each run simulates a new history, so it starts from a fresh feature store: materialize-incremental
# would otherwise only load data newer than the last run's.
rm -f features/data/registry.db features/data/online.db features/data/journey_activity.parquet
.venv/bin/journeys features init --repo features
"$feast" -c features "${store_yaml[@]}" apply
"$feast" -c features "${store_yaml[@]}" materialize-incremental "$(date -u +%Y-%m-%dT%H:%M:%S)"

rm -rf "$run/decisions" "$run/journeys" "$run/late" "$run/dead-letter" "$run/feature-rows" "$run/checkpoints"
job_yaml=()
[ "$features" = "redis" ] && job_yaml=(--feature-store-yaml features/feature_store.redis.yaml)
"$python" jobs/journey_job.py \
  --signals "file://$PWD/$run/signals.jsonl" \
  --decisions "file://$PWD/$run/decisions" --journeys "file://$PWD/$run/journeys" \
  --late "file://$PWD/$run/late" --dead-letter "file://$PWD/$run/dead-letter" \
  --checkpoints "$run/checkpoints" --summary "$run/summary.json" \
  --feature-repo features "${job_yaml[@]}" --feature-rows "file://$PWD/$run/feature-rows"
# The online store already has the job's features; this gives the offline store their history.
.venv/bin/journeys features push-offline --repo features --rows "$run/feature-rows"
