#!/usr/bin/env bash
# Puts executable Skipper and Data Flow server jars into
# ${TSP_CACHE:-~/.cache/tspipe}/scdf/<dataflow version>/, from Maven Central only.
# Why Data Flow is repackaged here and Skipper is 2.8.0: see hack/scdf/pom.xml.
# Near-instant when warm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pom="$here/scdf/pom.xml"
prop() { sed -n "s:.*<$1>\(.*\)</$1>.*:\1:p" "$pom" | head -1; }
version="$(prop scdf.version)"
skipper="$(prop skipper.version)"
cache="${TSP_CACHE:-$HOME/.cache/tspipe}"
out="$cache/scdf/$version"
start_ms=$(( $(date +%s%N) / 1000000 ))
elapsed() { local ms=$(( $(date +%s%N) / 1000000 - start_ms )); printf '%d.%03ds' $((ms / 1000)) $((ms % 1000)); }

jars=(spring-cloud-skipper-server.jar spring-cloud-dataflow-server.jar)
# The stamp names the inputs; it is written only after both jars were checked below.
# Contents only, not paths: every checkout of the same sources shares the cached jars
# (with paths in the hash, two worktrees rebuilt the jars in turn, under each other's JVMs).
stamp="skipper=$skipper dataflow=$version pom=$(cat "$pom" "$here"/scdf/src/main/java/io/tspipe/hack/scdf/*.java "$here"/scdf/src/main/resources/* | sha256sum | cut -c1-16)"
if [[ -f "$out/.complete" && "$(cat "$out/.complete")" == "$stamp" ]]; then
  echo "scdf-jars: Skipper $skipper and Data Flow $version already in $out ($(elapsed))"
  exit 0
fi

echo "scdf-jars: resolving Skipper $skipper and Data Flow $version from Maven Central into $out"
mkdir -p "$out"
rm -f "$out/.complete"
# Maven 3.8 prints colour resets even in batch mode; strip them.
mvn -B -q -Dstyle.color=never -f "$pom" package -Dscdf.build="$out/build" -Dscdf.out="$out" \
  | sed 's/\x1b\[[0-9;]*m//g'

cp "$out/build/spring-cloud-dataflow-server-$version.jar" "$out/spring-cloud-dataflow-server.jar"
rm -rf "$out/build"
for j in "${jars[@]}"; do
  # Refuse a truncated or non-executable jar: a Boot jar names its launcher in the manifest.
  unzip -p "$out/$j" META-INF/MANIFEST.MF | grep -q 'org.springframework.boot.loader' \
    || { echo "scdf-jars: $out/$j is not an executable Spring Boot jar" >&2; exit 1; }
  echo "scdf-jars:   $j $(du -h "$out/$j" | cut -f1)"
done
echo "$stamp" > "$out/.complete"
echo "scdf-jars: done in $(elapsed)"
