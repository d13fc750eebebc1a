#!/usr/bin/env bash
# Stops `make` early, with the fix spelled out, when the machine lacks what the project needs.
set -u
python_cmd="${1:-python3.11}"
problems=0

if ! command -v "$python_cmd" >/dev/null 2>&1; then
  if command -v python3 >/dev/null 2>&1 && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python_cmd=python3
  else
    echo "Missing Python 3.11: install it (Debian/Ubuntu: apt install python3.11 python3.11-venv), or run 'make PYTHON=/path/to/python3.11'." >&2
    problems=1
  fi
fi
if [ $problems -eq 0 ]; then
  found=$("$python_cmd" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
  if [ "$found" != "3.11" ]; then
    echo "$python_cmd is Python ${found:-that does not run}, but the pinned dependency set (apache-flink 2.3, Beam 2.61) needs Python 3.11. Run 'make PYTHON=/path/to/python3.11'." >&2
    problems=1
  elif ! "$python_cmd" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "$python_cmd cannot create virtual environments: install the venv module (Debian/Ubuntu: apt install python3.11-venv)." >&2
    problems=1
  fi
fi

java_cmd=java
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
  java_cmd="$JAVA_HOME/bin/java"  # what PyFlink uses too
fi
if ! command -v "$java_cmd" >/dev/null 2>&1; then
  echo "Missing Java: PyFlink runs Flink in a JVM. Install a Java 17 runtime (Debian/Ubuntu: apt install openjdk-17-jre-headless) and put 'java' on PATH or set JAVA_HOME." >&2
  problems=1
else
  java_major=$("$java_cmd" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
  if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then
    echo "Java ${java_major:-of unknown version} found; Flink 2.3 as configured here needs Java 17 or newer (Debian/Ubuntu: apt install openjdk-17-jre-headless)." >&2
    problems=1
  fi
fi

[ $problems -eq 0 ] || exit 1
echo "$python_cmd"
