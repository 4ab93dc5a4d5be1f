#!/usr/bin/env bash
# Resolves Apache Kafka's runtime jars from Maven Central (hack/kafka/pom.xml) into
#   ${TSP_CACHE:-~/.cache/tspipe}/kafka/<version>/libs/*.jar   and   .../classpath.txt
# A stamp holding the pom's checksum makes a warm run a no-op.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pom="$here/kafka/pom.xml"
cache="${TSP_CACHE:-$HOME/.cache/tspipe}"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -1)"
[ -n "$version" ] || { echo "kafka-jars: no <kafka.version> in $pom" >&2; exit 1; }
dest="$cache/kafka/$version"
stamp="$dest/.pom.sha256"
sum="$(sha256sum "$pom" | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && [ -f "$dest/classpath.txt" ]; then
  echo "kafka-jars: Kafka $version is cached in $dest"
  exit 0
fi

command -v mvn >/dev/null || { echo "kafka-jars: Maven (mvn) is required" >&2; exit 1; }
command -v java >/dev/null || { echo "kafka-jars: Java 17+ is required" >&2; exit 1; }
echo "kafka-jars: resolving Kafka $version with Maven into $dest (first time takes a minute)..."
start=$(date +%s)
mkdir -p "$dest"
tmp="$(mktemp -d "$dest/libs.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies -DoutputDirectory="$tmp"
rm -rf "$dest/libs"
mv "$tmp" "$dest/libs"
trap - EXIT
# One absolute path per line; the Python helper joins them with ':'.
ls -1 "$dest"/libs/*.jar > "$dest/classpath.txt"
echo "$sum" > "$stamp"
echo "kafka-jars: $(wc -l < "$dest/classpath.txt") jars for Kafka $version in $(( $(date +%s) - start ))s"
