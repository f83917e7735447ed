#!/usr/bin/env bash
# simulate.sh [APP...]      (root; needs network access to the npm registry and PyPI)
#
# Builds each app (default: all of examples/ and buildpacks/test/fixtures/) with the built-in buildpacks the way
# paasd does (detect in paasd's order, compile, release; each step in sandbox.sh), twice:
# the second build changes the app's version string v1 -> v2, as a redeploy would, and must
# reuse the cache. After each build the web process (Procfile first, else the buildpack's
# default) runs in the sandbox with PORT set; GET / must name the app and its version,
# GET /health must answer ok, and SIGTERM must end it with status 0 within 5 s.
# Then the broken apps (SIMULATE_BROKEN=0 skips them) must fail with a clear message.
#
# Work files go to $SIM_DIR (default: a new /tmp/paas-bp-sim.XXXXXX, kept for reading).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
order=(nodejs python go static procfile) # paasd's detection order
sim=${SIM_DIR:-$(mktemp -d /tmp/paas-bp-sim.XXXXXX)}
mkdir -p "$sim"
passed=0 failed=0
summary=()

say() { printf '%s\n' "$*"; }
ok() { passed=$((passed + 1)); say "ok:   $*"; }
bad() { failed=$((failed + 1)); say "FAIL: $*"; }

# The file whose "v1" a redeploy changes, per app.
version_file() {
  case $1 in
    node-hello | node-express) echo server.js ;;
    node-build) echo server.js ;;
    python-hello | python-gunicorn) echo app.py ;;
    go-hello | go-vendored) echo main.go ;;
    static-hello | static-config) echo public/index.html ;;
    procfile-hello) echo server.py ;;
    worker-only) echo worker.py ;;
    python-pyproject) echo hello_pkg/__init__.py ;;
    *) echo "" ;;
  esac
}

# An app's source: examples/NAME, else buildpacks/test/fixtures/NAME.
src_of() {
  if [[ -d "$repo/examples/$1" ]]; then echo "$repo/examples/$1"; else echo "$here/fixtures/$1"; fi
}

# sandbox WORK [K=V...] CMD...: one step in the build container of WORK.
sandbox() {
  local w=$1
  shift
  unshare -m -- bash "$here/sandbox.sh" "$w/root" "$w/app" "$w/cache" "$w/env" "$w/buildpacks" "$@"
}

# build WORK: detect + compile + release; sets $bp, $web; logs in WORK/*.log. Returns
# compile's status.
build() {
  local w=$1 b start end detected
  rm -rf "$w/buildpacks"
  mkdir -p "$w/buildpacks" "$w/root" "$w/cache" "$w/env"
  for b in "${order[@]}"; do cp -a "$repo/buildpacks/$b" "$w/buildpacks/$b"; done
  chown -R 10000:10000 "$w/app" "$w/cache" "$w/buildpacks"
  # Config vars: fixtures/NAME.env holds K=V lines.
  rm -rf "$w/env"
  mkdir -p "$w/env"
  if [[ -f "$here/fixtures/${w##*/}.env" ]]; then
    while IFS='=' read -r k v; do
      [[ -n "$k" ]] && printf '%s' "$v" >"$w/env/$k"
    done <"$here/fixtures/${w##*/}.env"
  fi
  bp=""
  for b in "${order[@]}"; do
    if detected=$(sandbox "$w" "/buildpacks/$b/bin/detect" /app 2>>"$w/detect.log"); then
      bp=$b
      say "       detect: $b (printed '$detected')"
      break
    fi
  done
  if [[ -z "$bp" ]]; then
    say "       detect: no buildpack"
    return 1
  fi
  start=$EPOCHREALTIME
  sandbox "$w" "/buildpacks/$bp/bin/compile" /app /cache /env >"$w/compile.log" 2>&1
  local rc=$?
  end=$EPOCHREALTIME
  build_secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  sed 's/^/       | /' "$w/compile.log"
  say "       compile: exit $rc in ${build_secs}s"
  [[ $rc == 0 ]] || return $rc
  sandbox "$w" "/buildpacks/$bp/bin/release" /app >"$w/release.yml" 2>"$w/release.err" || return 1
  sed 's/^/       release| /' "$w/release.yml"
  web=""
  if [[ -f "$w/app/Procfile" ]]; then
    web=$(sed -n 's/^web:[[:space:]]*//p' "$w/app/Procfile" | head -n1)
  fi
  if [[ -z "$web" ]]; then
    web=$(awk '/^default_process_types:/ {in_map = 1; next} in_map && /^  web:/ {sub(/^  web:[ \t]*/, ""); print; exit} /^[^ ]/ {in_map = 0}' "$w/release.yml")
  fi
  say "       web: $web"
  return 0
}

# serve WORK PORT NAME VERSION: runs the web process and checks it.
serve() {
  local w=$1 port=$2 name=$3 version=$4 pid i body health code rc
  # shellcheck disable=SC2016 # expanded in the sandbox
  # unshare itself in the background (not the sandbox function, a subshell): $! is the app.
  unshare -m -- bash "$here/sandbox.sh" "$w/root" "$w/app" "$w/cache" "$w/env" "$w/buildpacks" \
    PORT="$port" /bin/bash -c 'cd /app && for f in /app/.profile.d/*.sh; do [ -f "$f" ] && . "$f"; done; exec bash -c "$1"' web "$web" >"$w/run.log" 2>&1 &
  pid=$!
  for ((i = 0; i < 100; i++)); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/health" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  body=$(curl -s "http://127.0.0.1:$port/")
  health=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")
  say "       GET / -> $(grep -m1 -o 'Hello from[^<]*' <<<"$body" || head -c 100 <<<"$body")"
  if [[ "$body" == *"$name"* && "$body" == *"$version"* ]]; then ok "$name: GET / names the app and $version"; else bad "$name: GET / is '$body'"; fi
  if [[ "$health" == 200 && "$(curl -s "http://127.0.0.1:$port/health")" == ok* ]]; then ok "$name: GET /health is 200 ok"; else bad "$name: GET /health is $health"; fi
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/no-such-page")
  say "       GET /no-such-page -> $code"
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    bad "$name: still running 5 s after SIGTERM"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null
  else
    wait "$pid"
    rc=$?
    if [[ $rc == 0 ]]; then ok "$name: SIGTERM -> exit 0 after $((i * 100)) ms"; else bad "$name: SIGTERM -> exit $rc"; fi
  fi
  sed 's/^/       run| /' "$w/run.log"
}

port=5100
if [[ $# == 0 ]]; then
  mapfile -t apps < <(for d in "$repo/examples" "$here/fixtures"; do find "$d" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort; done)
  set -- "${apps[@]}"
fi

for name in "$@"; do
  w="$sim/$name"
  rm -rf "$w"
  mkdir -p "$w/app"
  cp -a "$(src_of "$name")/." "$w/app/"
  vf=$(version_file "$name")
  times=""
  for n in 1 2; do
    version=v$n
    say "-----> $name: build $n ($version)"
    if [[ $n == 2 ]]; then
      # A redeploy: fresh source with the version changed, same cache.
      rm -rf "$w/app"
      mkdir -p "$w/app"
      cp -a "$(src_of "$name")/." "$w/app/"
      [[ -n "$vf" ]] && sed -i 's/\bv1\b/v2/g' "$w/app/$vf"
    fi
    if ! build "$w"; then
      bad "$name: build $n failed"
      continue
    fi
    ok "$name: build $n"
    if [[ -x "$here/fixtures/$name.check" ]]; then
      if "$here/fixtures/$name.check" "$w/app"; then ok "$name: $name.check"; else bad "$name: $name.check"; fi
    fi
    times+="${times:+ / }${build_secs}s"
    if [[ $n == 2 ]] && [[ $bp == nodejs || $bp == python ]]; then
      if grep -q -- '-----> Reusing cached' "$w/compile.log" && ! grep -q -- '-----> Installing dependencies' "$w/compile.log"; then
        ok "$name: build 2 reused the cache"
      else
        bad "$name: build 2 did not reuse the cache"
      fi
    fi
    if [[ $n == 1 ]] && [[ $bp == nodejs || $bp == python ]]; then
      if grep -q -- '-----> Installing dependencies' "$w/compile.log"; then ok "$name: build 1 installed"; else bad "$name: build 1 did not say it installed"; fi
    fi
    if [[ -n "$web" ]]; then
      port=$((port + 1))
      serve "$w" "$port" "$name" "$version"
    else
      bad "$name: no web process"
    fi
  done
  summary+=("$name ($bp): builds $times")
done

# new_deps NAME MUTATION: a third build of NAME (after the loop above, same cache) whose
# dependencies changed (the shell MUTATION, run in the source): it must install again.
new_deps() {
  local name=$1 mutation=$2 w="$sim/$1"
  [[ -d "$w/cache" ]] || return 0
  rm -rf "$w/app"
  mkdir -p "$w/app"
  cp -a "$(src_of "$name")/." "$w/app/"
  (cd "$w/app" && eval "$mutation")
  say "-----> $name: build 3 (dependencies changed)"
  if ! build "$w"; then
    bad "$name: build 3 failed"
  elif grep -q -- '-----> Installing dependencies' "$w/compile.log" && ! grep -q -- '-----> Reusing cached' "$w/compile.log"; then
    ok "$name: build 3 installed the changed dependencies"
  else
    bad "$name: build 3 did not install the changed dependencies"
  fi
}
new_deps python-hello "sed -i 's/^six==.*/six==1.16.0/' requirements.txt"
new_deps node-build "sed -i 's/\"is-number\": \"^7.0.0\"/\"is-number\": \"7.0.0\"/' package.json"

# broken NAME BASE PATTERN MUTATION: copies examples/BASE, runs the shell MUTATION in it,
# builds, and expects the build to fail with PATTERN in its output.
broken() {
  local name=$1 base=$2 pattern=$3 mutation=$4 w="$sim/broken-$1"
  [[ " $selected " == *" $base "* ]] || return 0
  rm -rf "$w"
  mkdir -p "$w/app"
  cp -a "$(src_of "$base")/." "$w/app/"
  (cd "$w/app" && eval "$mutation")
  say "-----> broken: $name"
  if build "$w"; then
    bad "broken $name: the build succeeded"
  elif grep -q -- "$pattern" "$w/compile.log"; then
    ok "broken $name: fails with '$pattern'"
  else
    bad "broken $name: no '$pattern' in the output"
  fi
}

selected="$*"
if [[ ${SIMULATE_BROKEN:-1} == 1 ]]; then
  broken node-bad-json node-hello "package.json is not valid JSON" "printf '{\"name\": \"x\",}' > package.json"
  broken node-bad-lock node-hello "npm ci failed" "sed -i 's/\"ms\": \"^2.1.3\"/\"ms\": \"^2.1.3\", \"left-pad\": \"1.3.0\"/' package.json"
  broken node-bad-build node-hello "npm run build failed" "sed -i 's/\"start\": \"node server.js\"/\"start\": \"node server.js\", \"build\": \"exit 3\"/' package.json"
  broken go-syntax go-hello "go build failed" "printf 'package main\nfunc main() {\n' > broken.go"
  broken go-121 go-hello "go.mod says go 1.21.0 but the stack has go 1.19" "sed -i 's/^go 1.19$/go 1.21.0/' go.mod"
  broken go-three-part go-hello "only reads two-part go directives" "sed -i 's/^go 1.19$/go 1.19.0/' go.mod"
  broken go-no-vendor go-hello "no vendor/ directory" "printf 'require example.com/dep v1.0.0\n' >> go.mod"
  broken python-bad-req python-hello "pip install failed" "echo 'six >= = 1' >> requirements.txt"
  broken python-bad-toml python-hello "pyproject.toml is not valid TOML" "rm requirements.txt; printf '[project\nname=1\n' > pyproject.toml"
  broken static-bad-json static-hello "static.json is not valid JSON" "printf '{root: public}' > static.json"
  broken static-bad-root static-hello "is not a directory" "printf '{\"root\": \"dist\"}' > static.json"
  broken static-root-escape static-hello "must stay inside the app" "printf '{\"root\": \"../etc\"}' > static.json"
fi

say ""
for s in "${summary[@]}"; do say "$s"; done
say "work files: $sim"
say "$passed passed, $failed failed"
[[ $failed == 0 ]]
