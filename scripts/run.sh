#!/usr/bin/env bash
# make run: simulate signals and customer profiles, load the profiles into the feature store with
# the Feast CLI, train the stage models on a Beam replay and promote them in the MLflow registry,
# run the journey job with features, models and the retail policy (round 1), answer its decisions
# with simulated outcomes, run it again on the signals with the outcomes merged in (round 2, with
# version 2 of the policy as a canary for a fifth of people, judged by the gates in the job), and
# print round 2's summary, the canary's gates, the champion/challenger comparison and where
# everything is.
#
# Each step prints one line with its time; what the step's command says goes to var/run/logs/.
# The feature store is loaded while the models train. When the simulated input and the code are
# what the last run had, its feature store, training set and models are reused.
# FEATURES=sqlite (default) uses the embedded sqlite online store; FEATURES=redis starts Debian's
# redis-server on loopback and uses the Redis profile (features/feature_store.redis.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
python=.venv/bin/python
journeys=.venv/bin/journeys
feast=.venv/bin/feast
run=var/run
logs=$run/logs
features=${FEATURES:-sqlite}
customers=${CUSTOMERS:-2000} days=${DAYS:-30} seed=${SEED:-7}
registry=${MLFLOW_TRACKING_URI:-sqlite:///$PWD/var/mlflow/registry.db}
mkdir -p "$run" "$logs" var/mlflow
began=$SECONDS

fail() {  # fail LOG: say which step failed and show the end of its log
  printf ' FAILED\n    the end of %s:\n' "$1"
  tail -25 "$1" | sed 's/^/    /'
  exit 1
}

step() {  # step NAME TITLE COMMAND...: one line, with the time the command took and its own last line
  local name=$1 title=$2 t0=$SECONDS
  shift 2
  printf '  %-62s' "$title"
  "$@" >"$logs/$name.log" 2>&1 || fail "$logs/$name.log"
  printf '%4d s\n' $((SECONDS - t0))
  tail -1 "$logs/$name.log" | cut -c1-150 | sed 's/^/      /'
}

live_step() {  # live_step NAME TITLE COMMAND...: like step, showing the progress lines of a long step as they come
  local name=$1 title=$2 t0=$SECONDS
  shift 2
  printf '  %s\n' "$title"
  { "$@" 2>&1 || echo "job-step-failed $?"; } | tee "$logs/$name.log" | { grep --line-buffered -E '^(journey_job|replay).*signals (read|replayed), ' || true; } | sed -u 's/^/      /'
  grep -q '^job-step-failed' "$logs/$name.log" && fail "$logs/$name.log"
  printf '  %-62s%4d s\n' "  done" $((SECONDS - t0))
  grep -m2 -E '^  (decisions \(actions taken\)|job runtime)|^replay of ' "$logs/$name.log" | sed -E 's/^ +//; s/  +/ /g; s/^/      /'
}

code_and_inputs_digest() {  # what the feature store, the training set and the models were built from
  { cat "$run/signals.jsonl" features/data/customer_profiles.parquet; echo "$features $registry"
    find journeys pipelines models features -name '*.py' -o -name '*.yaml' | sort | xargs cat; } | sha256sum | cut -d' ' -f1
}

echo "make run: $customers customers over $days days (seed $seed), features on $features"
step simulate "simulate signals and customer profiles" \
  "$journeys" simulate --customers "$customers" --days "$days" --seed "$seed" \
  --out "$run/signals.jsonl" --profiles-out features/data/customer_profiles.parquet

store_yaml=() job_yaml=()
if [ "$features" = "redis" ]; then
  "$python" -m scripts.local_redis stop --dir var/redis >/dev/null 2>&1 || true
  JOURNEYS_REDIS=$("$python" -m scripts.local_redis start --dir var/redis)
  export JOURNEYS_REDIS
  trap '"$python" -m scripts.local_redis stop --dir var/redis' EXIT
  echo "  Redis online store: JOURNEYS_REDIS=$JOURNEYS_REDIS"
  store_yaml=(-f features/feature_store.redis.yaml)
  job_yaml=(--feature-store-yaml features/feature_store.redis.yaml)
fi

load_features() {  # a fresh feature store with this run's profiles (Feast CLI)
  rm -f features/data/registry.db features/data/online.db features/data/journey_activity.parquet
  "$journeys" features init --repo features
  "$feast" -c features "${store_yaml[@]}" apply
  "$feast" -c features "${store_yaml[@]}" materialize-incremental "$(date -u +%Y-%m-%dT%H:%M:%S)"
}

train_models() {  # the champions of both kinds and a more strongly regularized challenger, in one process
  "$python" - "$run/replay/training_set" "$run/signals.jsonl" "$registry" <<'PY'
import sys

from pipelines.cli.main import main as journeys

training_set, truth, registry = sys.argv[1:]
for kind, alias, regularization in (("journey_stage", "champion", "1.0"), ("conversion_propensity", "champion", "1.0"),
                                    ("journey_stage", "challenger", "0.02")):
    arguments = ["models", "train", "--kind", kind, "--training-set", training_set, "--truth", truth,
                 "--regularization", regularization, "--register", kind, "--promote", alias, "--reuse",
                 "--tracking-uri", registry]
    print("journeys " + " ".join(arguments), flush=True)
    if journeys(arguments):
        sys.exit(1)
PY
  "$python" -c 'import sys; from models.registry import client_for, alias_version
c = client_for(sys.argv[1]); print("; ".join(f"{n}@{a} v{alias_version(c, n, a)}" for n, a in (("journey_stage", "champion"),
    ("conversion_propensity", "champion"), ("journey_stage", "challenger"))))' "$registry"
}

digest=$(code_and_inputs_digest)
# Redis keeps its online store in memory only, so a Redis run loads it every time.
if [ "$features" = sqlite ] && [ -f "$run/.built-from" ] && [ "$(cat "$run/.built-from")" = "$digest" ] \
   && [ -d "$run/replay/training_set" ] && [ -f features/data/online.db ]; then
  echo "  feature store, training set and models: reused (the inputs and the code are those of the last run)"
  # The offline history starts again: this run pushes its own rows (the online store holds the same).
  rm -f features/data/journey_activity.parquet
  "$journeys" features init --repo features >"$logs/features.log" 2>&1 || fail "$logs/features.log"
else
  rm -f "$run/.built-from"
  t0=$SECONDS
  load_features >"$logs/features.log" 2>&1 &
  loading=$!
  rm -rf "$run/replay"
  live_step replay "training set: Beam replay of the signals (journeys replay)" \
    "$journeys" replay --input "$run/signals.jsonl" --output "$run/replay" --emit training-set \
    --profiles features/data/customer_profiles.parquet
  step models "stage models: train, register, promote (MLflow)" train_models
  printf '  %-62s' "feature store: apply and materialize (Feast, beside the above)"
  wait "$loading" || fail "$logs/features.log"
  printf '%4d s\n' $((SECONDS - t0))
  echo "$digest" >"$run/.built-from"
fi

job() {  # job <signals> <output dir> [more arguments]
  local signals=$1 out=$2
  shift 2
  rm -rf "$out"
  "$python" jobs/journey_job.py --progress 10 \
    --signals "file://$PWD/$signals" \
    --decisions "file://$PWD/$out/decisions" --decision-log "file://$PWD/$out/decision-log" \
    --journeys "file://$PWD/$out/journeys" --late "file://$PWD/$out/late" --dead-letter "file://$PWD/$out/dead-letter" \
    --checkpoints "$out/checkpoints" --summary "$out/summary.json" \
    --feature-repo features "${job_yaml[@]}" --model-registry "$registry" "$@"
}

rm -rf "$run/feature-rows"
live_step round-1 "round 1: the journey job decides, with Feast features and MLflow models" \
  job "$run/signals.jsonl" "$run/round-1" --feature-rows "file://$PWD/$run/feature-rows"
# The online store already has the job's features; this gives the offline store their history,
# beside round 2, which reads only the online store.
"$journeys" features push-offline --repo features --rows "$run/feature-rows" >"$logs/push-offline.log" 2>&1 &
pushing=$!
end_clock=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["end_clock"])' "$run/round-1/summary.json")
step outcomes "outcomes: the simulated customers answer round 1's decisions" \
  "$journeys" simulate-outcomes --decision-log "$run/round-1/decision-log" --signals "$run/signals.jsonl" \
  --out "$run/signals-with-outcomes.jsonl" --until "$end_clock"
# The canary: version 2 of the retail policy, which values a cross-sell a little more.
sed 's/^version: "1"$/version: "2"/; s/cross_sell: 2.0,/cross_sell: 2.5,/' journeys/conf/policy/retail.yaml >"$run/retail-v2.yaml"
grep -q '^version: "2"$' "$run/retail-v2.yaml" || { echo "  could not make version 2 of the policy from journeys/conf/policy/retail.yaml"; exit 1; }
live_step round-2 "round 2: the same signals with the outcomes merged in, and a canary" \
  job "$run/signals-with-outcomes.jsonl" "$run/round-2" --end-clock "$end_clock" \
  --canary-policy "$run/retail-v2.yaml" --canary-share 0.2
printf '  %-62s' "offline store: the feature rows of round 1 (Feast push)"
wait "$pushing" || fail "$logs/push-offline.log"
printf '   done\n'
tail -1 "$logs/push-offline.log" | sed 's/^/      /'
cp "$run/round-2/summary.json" "$run/summary.json"
step compare "champion against challenger (journeys models compare)" \
  "$journeys" models compare --decisions "$run/round-2/decision-log" --journeys "$run/round-2/journeys" \
  --truth "$run/signals.jsonl"
drift_of_round_2() {  # each champion against its own training data
  for model in conversion_propensity journey_stage; do
    "$journeys" drift --log "$run/round-2/decision-log" --journeys "$run/round-2/journeys" --model "$model" \
      --tracking-uri "$registry" \
      --out "$run/drift-$model.html" --json "$run/drift-$model.json" || return 1
  done
}
step drift "drift from the champions' training data (journeys drift)" drift_of_round_2
audit_round_2() {  # the verdict is shown, not fatal: the rest of the run still says what it did
  "$journeys" audit "$@" || echo "(the audit found broken guardrails: see above)"
}
step audit "guardrail audit of round 2 (journeys audit)" \
  audit_round_2 --signals "$run/signals-with-outcomes.jsonl" --decision-log "$run/round-2/decision-log" \
  --profiles features/data/customer_profiles.parquet --journeys "$run/round-2/journeys" --out "$run/audit.json"
canary_of_round_2() {  # every gate, conversion too; a failing gate is shown, not fatal
  "$journeys" canary status --decision-log "$run/round-2/decision-log" --journeys "$run/round-2/journeys" \
    --json "$run/canary.json" || echo "(a gate failed: the canary would not be promoted)"
}
step canary "the canary's gates on round 2 (journeys canary status)" canary_of_round_2
step map "journey map (journeys map)" \
  "$journeys" map --journeys "$run/round-2/journeys" --decisions "$run/round-2/decision-log" --out "$run/map.html"

echo
sed -n '/^Journey job summary/,/^  summary written to/p' "$logs/round-2.log" | sed '$d'
echo
cat "$logs/compare.log"
echo
cat "$logs/drift.log"
echo
cat "$logs/audit.log"
echo
cat "$logs/canary.log"
echo
elapsed=$((SECONDS - began))
echo "done in $((elapsed / 60)) min $((elapsed % 60)) s; what each step said is in $logs/"
echo "  summary (round 2; each round's beside it): $run/summary.json, $run/round-1/summary.json"
echo "  journey map (open it in a browser; it works offline): $PWD/$run/map.html"
echo "  drift of each champion (pages that work offline): $PWD/$run/drift-conversion_propensity.html, drift-journey_stage.html"
echo "  decision log: $run/round-2/decision-log   journey log: $run/round-2/journeys   model registry: $registry"
echo "  explain a customer: .venv/bin/journeys explain cust-000001 --log $run/round-2/decision-log"
