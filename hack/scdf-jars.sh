#!/usr/bin/env bash
# Puts executable Skipper and Data Flow server jars into
# ${TSP_CACHE:-~/.cache/tspipe}/scdf/<dataflow version>-<key>/, from Maven Central only.
# Why Data Flow is repackaged here and Skipper is 2.8.0: see hack/scdf/pom.xml. Skipper's
# boot jar gets the Kubernetes deployer of hack/scdf/skipper-k8s/pom.xml (why: there).
# Near-instant when warm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pom="$here/scdf/pom.xml"
k8s_pom="$here/scdf/skipper-k8s/pom.xml"
prop() { sed -n "s:.*<$2>\(.*\)</$2>.*:\1:p" "$1" | head -1; }
version="$(prop "$pom" scdf.version)"
skipper="$(prop "$pom" skipper.version)"
deployer="$(prop "$k8s_pom" k8s-deployer.version)"
cache="${TSP_CACHE:-$HOME/.cache/tspipe}"
# The key covers every input: the files under hack/scdf (sorted paths) and this script.
# Contents only, not paths: every checkout of the same sources shares the cached jars, and
# checkouts with different sources use different folders (hack/localinfra/scdf.py's jar_dir
# computes the same key).
key="$(cd "$here" && { find scdf -type f -not -path '*/target/*' | LC_ALL=C sort; echo scdf-jars.sh; } \
       | tr '\n' '\0' | xargs -0 cat | sha256sum | cut -c1-16)"
out="$cache/scdf/$version-$key"
start_ms=$(( $(date +%s%N) / 1000000 ))
elapsed() { local ms=$(( $(date +%s%N) / 1000000 - start_ms )); printf '%d.%03ds' $((ms / 1000)) $((ms % 1000)); }

jars=(spring-cloud-skipper-server.jar spring-cloud-dataflow-server.jar)
stamp="skipper=$skipper k8s-deployer=$deployer dataflow=$version key=$key"
what="Skipper $skipper (Kubernetes deployer $deployer) and Data Flow $version"
if [[ -f "$out/.complete" && "$(cat "$out/.complete")" == "$stamp" ]]; then
  echo "scdf-jars: $what already in $out ($(elapsed))"
  exit 0
fi
mkdir -p "$out"
# One build per folder at a time (two test runs may ask at once); the second finds it done.
exec 9<"$out"
flock 9
if [[ -f "$out/.complete" && "$(cat "$out/.complete")" == "$stamp" ]]; then
  echo "scdf-jars: $what already in $out ($(elapsed))"
  exit 0
fi

echo "scdf-jars: resolving $what from Maven Central into $out"
rm -f "$out/.complete"
build="$out/build"
rm -rf "$build"
# Maven 3.8 prints colour resets even in batch mode; strip them.
mvn -B -q -Dstyle.color=never -f "$pom" package -Dscdf.build="$build" -Dscdf.out="$build/stock" \
  | sed 's/\x1b\[[0-9;]*m//g'
mvn -B -q -Dstyle.color=never -f "$k8s_pom" package -Dk8s.out="$build/k8s-deployer" \
  | sed 's/\x1b\[[0-9;]*m//g'
cp "$build/spring-cloud-dataflow-server-$version.jar" "$out/spring-cloud-dataflow-server.jar"

# Skipper: swap each artifact of the deployer's set for the new version in BOOT-INF/lib, drop
# the old fabric8 client's other model jars, keep both indexes (classpath.idx orders the class
# path; layers.idx is for layertools) in step. Boot reads nested jars in place: stored, not
# deflated (`zip -0`).
stock="$build/stock/spring-cloud-skipper-server.jar"
new="$build/spring-cloud-skipper-server.jar"
stage="$build/stage"
mkdir -p "$stage/BOOT-INF/lib"
cp "$stock" "$new"
unzip -q "$stock" BOOT-INF/classpath.idx BOOT-INF/layers.idx -d "$stage"
artifact() { sed -E 's/-[0-9][0-9A-Za-z.]*\.jar$//'; }
mapfile -t libs < <(unzip -Z1 "$stock" 'BOOT-INF/lib/*.jar' | sed 's:^BOOT-INF/lib/::')
old_fabric8="$(printf '%s\n' "${libs[@]}" | sed -n -E 's/^kubernetes-client-([0-9][0-9A-Za-z.]*)\.jar$/\1/p')"
[[ -n "$old_fabric8" ]] || { echo "scdf-jars: no kubernetes-client jar in $stock" >&2; exit 1; }
removed=()
added=()
for path in "$build"/k8s-deployer/*.jar; do
  jar="$(basename "$path")"
  a="$(artifact <<<"$jar")"
  old="$(printf '%s\n' "${libs[@]}" | grep -E "^${a}-[0-9][0-9A-Za-z.]*\.jar$" || true)"
  cp "$path" "$stage/BOOT-INF/lib/"
  if [[ -z "$old" ]]; then
    added+=("$jar")
  elif [[ "$old" != "$jar" ]]; then
    removed+=("$old")
    sed -i "s:BOOT-INF/lib/$old\":BOOT-INF/lib/$jar\":" "$stage/BOOT-INF/classpath.idx" "$stage/BOOT-INF/layers.idx"
  fi
done
for old in "${libs[@]}"; do
  # fabric8 model modules the new client no longer has (kubernetes-model-settings).
  if [[ "$old" =~ ^kubernetes-(client|model-[a-z]+)-${old_fabric8//./\\.}\.jar$ ]] \
     && [[ ! -f "$stage/BOOT-INF/lib/$old" ]] && ! printf '%s\n' "${removed[@]}" | grep -qxF "$old"; then
    removed+=("$old")
    sed -i "\:BOOT-INF/lib/$old\":d" "$stage/BOOT-INF/classpath.idx" "$stage/BOOT-INF/layers.idx"
  fi
done
client="$(cd "$build/k8s-deployer" && ls kubernetes-client-*.jar)"
for jar in "${added[@]}"; do
  # New modules go beside the client, at its indentation.
  sed -i -E "s:^( *)- \"BOOT-INF/lib/$client\"$:&\n\1- \"BOOT-INF/lib/$jar\":" \
    "$stage/BOOT-INF/classpath.idx" "$stage/BOOT-INF/layers.idx"
done
zip -q -d "$new" "${removed[@]/#/BOOT-INF/lib/}"
(cd "$stage" && zip -q -0 -X "$new" BOOT-INF/classpath.idx BOOT-INF/layers.idx BOOT-INF/lib/*.jar)
# Check the result: every nested jar stored and indexed once, no artifact twice.
lib_now="$(unzip -Z1 "$new" 'BOOT-INF/lib/*.jar' | sed 's:^BOOT-INF/lib/::' | LC_ALL=C sort)"
idx_now="$(unzip -p "$new" BOOT-INF/classpath.idx | sed -E 's:^- "BOOT-INF/lib/(.*)"$:\1:' | LC_ALL=C sort)"
[[ "$lib_now" == "$idx_now" ]] || { echo "scdf-jars: $new: classpath.idx does not list BOOT-INF/lib" >&2; exit 1; }
dup="$(artifact <<<"$lib_now" | uniq -d)"
[[ -z "$dup" ]] || { echo "scdf-jars: $new: two versions of $dup" >&2; exit 1; }
deflated="$(zipinfo "$new" 'BOOT-INF/lib/*.jar' | awk '$6 != "stor" {print $NF}')"
[[ -z "$deflated" ]] || { echo "scdf-jars: $new: compressed nested jars: $deflated" >&2; exit 1; }
grep -qx "spring-cloud-deployer-kubernetes-$deployer.jar" <<<"$lib_now" \
  || { echo "scdf-jars: $new lacks spring-cloud-deployer-kubernetes-$deployer.jar" >&2; exit 1; }
mv "$new" "$out/spring-cloud-skipper-server.jar"
echo "scdf-jars:   Skipper's BOOT-INF/lib: -${removed[*]}"
echo "scdf-jars:   Skipper's BOOT-INF/lib: +$(cd "$build/k8s-deployer" && echo *.jar)"
rm -rf "$build"

for j in "${jars[@]}"; do
  # Refuse a truncated or non-executable jar: a Boot jar names its launcher in the manifest.
  unzip -p "$out/$j" META-INF/MANIFEST.MF | grep -q 'org.springframework.boot.loader' \
    || { echo "scdf-jars: $out/$j is not an executable Spring Boot jar" >&2; exit 1; }
  echo "scdf-jars:   $j $(du -h "$out/$j" | cut -f1)"
done
echo "$stamp" > "$out/.complete"
echo "scdf-jars: done in $(elapsed)"
