#!/usr/bin/env bash
# Puts the seed pipeline's Spring Cloud Stream apps, as executable Spring Boot jars, into
#   ${TSP_CACHE:-~/.cache/tspipe}/spring-apps/<version>/{time-source-kafka,log-sink-kafka}.jar
# The apps' own jars are not served by the reachable Maven Central, so they are rebuilt from
# their published parts (hack/spring-apps/pom.xml says how and why). Near-instant when warm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/spring-apps"
pom="$src/pom.xml"
cache="${TSP_CACHE:-$HOME/.cache/tspipe}"
# The app version is the reactor's own <version>, the line after <artifactId>stream-apps.
version="$(sed -n '/<artifactId>stream-apps<\/artifactId>/,/<version>/s:.*<version>\(.*\)</version>.*:\1:p' "$pom" | head -1)"
[ -n "$version" ] || { echo "spring-apps: no version in $pom" >&2; exit 1; }
if [ $# -gt 0 ] && [ "$1" != "$version" ]; then
  echo "spring-apps: version $1 is not available: the recipe in $src builds $version" >&2
  exit 2
fi
out="$cache/spring-apps/$version"
apps=(time-source-kafka log-sink-kafka)
start=$(date +%s)
# The stamp names every input of the build.
stamp="$(cd "$src" && find . -type f -not -path '*/target/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)"
if [ -f "$out/.complete" ] && [ "$(cat "$out/.complete")" = "$stamp" ]; then
  echo "spring-apps: ${apps[*]} $version already in $out"
  exit 0
fi

command -v mvn >/dev/null || { echo "spring-apps: Maven (mvn) is required" >&2; exit 1; }
echo "spring-apps: building ${apps[*]} $version from Maven Central parts into $out (first time takes a minute or two)..."
mkdir -p "$out"
rm -f "$out/.complete"
mvn -q -B -Dstyle.color=never -f "$pom" package -Dapps.build="$out/build"
for app in "${apps[@]}"; do
  jar="$out/build/$app/$app-$version.jar"
  # Refuse anything but an executable Spring Boot jar: it names Boot's launcher.
  unzip -p "$jar" META-INF/MANIFEST.MF | grep -q 'org.springframework.boot.loader' \
    || { echo "spring-apps: $jar is not an executable Spring Boot jar" >&2; exit 1; }
  cp "$jar" "$out/$app.jar"
  echo "spring-apps:   $out/$app.jar $(du -h "$out/$app.jar" | cut -f1)"
done
rm -rf "$out/build"
echo "$stamp" > "$out/.complete"
echo "spring-apps: done in $(( $(date +%s) - start ))s"
