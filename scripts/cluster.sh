#!/usr/bin/env bash
# A local standalone Flink cluster: a JobManager and a TaskManager JVM from pyflink/bin, with
# FLINK_CONF_DIR at the project's flink-conf/ (or wherever FLINK_CONF_DIR points).
#   scripts/cluster.sh up | down | status | add-taskmanager | submit [journey_job.py arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=$root/.venv/bin/python
flink_home=$("$python" -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')
site_packages=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
export FLINK_CONF_DIR=${FLINK_CONF_DIR:-$root/flink-conf}
rest=$("$python" -c 'import sys; from pipelines.flink.env import load_flink_conf; c = load_flink_conf(sys.argv[1]); print(c.get("rest.address", "localhost") + ":" + c.get("rest.port", "8081"))' "$FLINK_CONF_DIR")

# The cluster's classpath: Flink's lib/ plus flink-python, which pip puts in opt/. Loaded per job
# instead, it brings pemja's native library into each job's class loader, and the second Python
# job on a TaskManager fails ("NoSuchFieldException: loadedLibraryNames").
export FLINK_LIB_DIR=${FLINK_LIB_DIR:-$root/var/cluster/lib}
mkdir -p "$FLINK_LIB_DIR"
ln -sf "$flink_home"/lib/*.jar "$flink_home"/opt/flink-python-*.jar "$FLINK_LIB_DIR"/
export FLINK_LOG_DIR=${FLINK_LOG_DIR:-$root/var/cluster/log}
export FLINK_PID_DIR=${FLINK_PID_DIR:-$root/var/cluster/pids}
# Thread mode runs Python inside the TaskManager JVM: it must find the venv's packages from the
# moment the JVM starts. The project's own code travels with each job (--pyFiles).
export PYTHONPATH=$site_packages
mkdir -p "$FLINK_LOG_DIR" "$FLINK_PID_DIR"

taskmanagers() {
  "$python" - "$rest" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}/overview", timeout=2) as response:
        print(json.load(response)["taskmanagers"])
except Exception:
    print(-1)
PY
}

taskmanager_ids() {
  "$python" - "$rest" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://{sys.argv[1]}/taskmanagers", timeout=2) as response:
        print(" ".join(sorted(tm["id"] for tm in json.load(response)["taskmanagers"])))
except Exception:
    print("")
PY
}

wait_for_taskmanagers() {
  local wanted=$1
  for _ in $(seq 1 120); do
    [ "$(taskmanagers)" -ge "$wanted" ] && return 0
    sleep 0.5
  done
  echo "the cluster at $rest did not get $wanted TaskManager(s) within a minute; logs in $FLINK_LOG_DIR" >&2
  return 1
}

case "${1:-}" in
  up)
    if [ "$(taskmanagers)" -ge 1 ]; then echo "a cluster is already running at http://$rest"; exit 0; fi
    "$flink_home/bin/jobmanager.sh" start >/dev/null
    "$flink_home/bin/taskmanager.sh" start >/dev/null
    wait_for_taskmanagers 1
    echo "Flink cluster up: http://$rest (logs in $FLINK_LOG_DIR)"
    metric_ports=$("$python" -c 'import sys; from pipelines.flink.env import load_flink_conf; print(load_flink_conf(sys.argv[1]).get("metrics.reporter.prom.port", ""))' "$FLINK_CONF_DIR")
    if [ -n "$metric_ports" ]; then
      echo "Prometheus metrics: http://localhost:<port>/metrics, a port of $metric_ports per process (the job's on the TaskManagers)"
    fi
    ;;
  add-taskmanager)
    # Wait for a TaskManager id not seen before: a killed TaskManager stays registered until its
    # heartbeat times out, so counting would mislead.
    before=" $(taskmanager_ids) "
    "$flink_home/bin/taskmanager.sh" start >/dev/null
    for _ in $(seq 1 120); do
      for id in $(taskmanager_ids); do
        case "$before" in *" $id "*) ;; *) echo "TaskManager $id registered"; exit 0 ;; esac
      done
      sleep 0.5
    done
    echo "no new TaskManager registered at $rest within a minute; logs in $FLINK_LOG_DIR" >&2
    exit 1
    ;;
  down)
    "$flink_home/bin/taskmanager.sh" stop-all >/dev/null 2>&1 || true
    "$flink_home/bin/jobmanager.sh" stop-all >/dev/null 2>&1 || true
    echo "Flink cluster down"
    ;;
  status)
    echo "TaskManagers registered at $rest: $(taskmanagers)"
    ;;
  submit)
    shift
    exec "$flink_home/bin/flink" run -m "$rest" -pyexec "$python" -pyclientexec "$python" \
      -pyfs "$root/journeys,$root/pipelines" -py "$root/jobs/journey_job.py" "$@"
    ;;
  *)
    echo "usage: scripts/cluster.sh up | down | status | add-taskmanager | submit [journey_job.py arguments...]" >&2
    exit 2
    ;;
esac
