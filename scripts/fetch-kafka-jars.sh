#!/usr/bin/env bash
# Puts the Flink Kafka connector jars in jars/ and checks them. The official Apache jars
# (flink-connector-kafka 4.0.1-2.0, kafka-clients 3.9.1) are redistributed in a PyPI package;
# installing that package would drop Flink 2.0 jars beside Flink 2.3's, so only the two jars are
# taken out of the downloaded wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"
sums="$PWD/scripts/kafka-jars.sha256"
dest=jars
package=shigawire-apache-flink-libraries==2.0.0.post1

if [ -f "$dest/flink-connector-kafka.jar" ] && [ -f "$dest/kafka-clients.jar" ] \
   && (cd "$dest" && sha256sum --quiet -c "$sums" >/dev/null 2>&1); then
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching the Kafka connector jars from PyPI ($package)"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$work" "$package"
mkdir -p "$dest"
"$python" - "$work" "$dest" <<'PY'
import glob, os, sys, zipfile
work, dest = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(os.path.join(work, "*.whl"))[0])
for name in ("flink-connector-kafka.jar", "kafka-clients.jar"):
    with wheel.open(f"pyflink/lib/{name}") as source, open(os.path.join(dest, name), "wb") as target:
        target.write(source.read())
PY
if ! (cd "$dest" && sha256sum --quiet -c "$sums"); then
  rm -f "$dest/flink-connector-kafka.jar" "$dest/kafka-clients.jar"
  echo "the downloaded Kafka connector jars do not match scripts/kafka-jars.sha256; refusing to use them" >&2
  exit 1
fi
echo "Kafka connector jars verified in $dest/"
