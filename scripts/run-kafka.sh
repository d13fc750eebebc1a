#!/usr/bin/env bash
# make run-kafka / make submit: the journey job from Kafka to Kafka on a local Tansu broker.
# Produces simulated signals to `signals`, runs the job (here, or on the standalone cluster with
# --cluster), reads `decisions` back, prints the run summary, and stops the broker.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-local}
python=.venv/bin/python
work=var/kafka-run
customers=${CUSTOMERS:-2000}
days=${DAYS:-30}
seed=${SEED:-7}

"$python" -m scripts.local_broker stop --dir "$work" >/dev/null 2>&1 || true
rm -rf "$work" && mkdir -p "$work"
bootstrap=$("$python" -m scripts.local_broker start --dir "$work")
trap '"$python" -m scripts.local_broker stop --dir "$work"' EXIT
echo "Tansu broker on $bootstrap (log: $work/tansu.log)"

.venv/bin/journeys simulate --customers "$customers" --days "$days" --seed "$seed" --out "$work/signals.jsonl"
"$python" -m pipelines.kafka.tools create-topics --bootstrap "$bootstrap" signals:4 decisions:4 journeys:4 late:1 dead-letter:1
stop_offsets=$("$python" -m pipelines.kafka.tools produce --bootstrap "$bootstrap" --topic signals "$work/signals.jsonl")
echo "produced the signals to kafka://$bootstrap/signals; the job reads up to offsets $stop_offsets"

arguments=(
  --signals "kafka://$bootstrap/signals" --stop-offsets "$stop_offsets"
  --decisions "kafka://$bootstrap/decisions" --journeys "kafka://$bootstrap/journeys"
  --late "kafka://$bootstrap/late" --dead-letter "kafka://$bootstrap/dead-letter"
  --checkpoints "$PWD/$work/checkpoints" --summary "$work/summary.json"
)
if [ "$mode" = "--cluster" ]; then
  scripts/cluster.sh submit "${arguments[@]}"
else
  "$python" jobs/journey_job.py "${arguments[@]}"
fi

echo "decisions in kafka://$bootstrap/decisions (read_committed): $("$python" -m pipelines.kafka.tools consume --bootstrap "$bootstrap" --topic decisions --count)"
echo "first three:"
"$python" -m pipelines.kafka.tools consume --bootstrap "$bootstrap" --topic decisions | head -3
