#!/usr/bin/env bash
# Checks the Dockerfile where no container engine exists: it reads the Dockerfile
# and carries out each instruction itself, in a clean temporary directory.
#
#   context   the files `docker build .` would send: git's view of the work tree
#             (tracked and untracked, .gitignore applied) minus .dockerignore
#   stages    each FROM gets a directory standing in for the image's root; WORKDIR,
#             COPY (also --from), ENV and RUN act inside it; the host's node stands
#             in for the base image's (same major version, checked), and npm
#             $IMAGE_NPM, the one node 20 images ship, for its npm (npm 11 refuses
#             some lockfiles npm 10 accepts: npm/cli#8805)
#   run       the Dockerfile's documented `docker run` line (its "#   run:" comment): the
#             mounted directory must hold the config CMD names, which must listen on a
#             wildcard address at the published container ports (else -p cannot reach it)
#             and keep backend.connections at 1; then the last stage's ENTRYPOINT + CMD runs
#             as an unprivileged user on that mounted config, over two real memcached. One
#             host has one network namespace, so the mounted config's copy listens on
#             127.0.0.1 at free ports standing in for the published ones, and --backends
#             replaces its cluster hostnames. Then the HEALTHCHECK as written (it must find
#             the metrics port in the config), a set/get, /readyz, a SIGHUP reload, and a
#             SIGTERM stop with exit 0
#
# Needs: git, node, npm (registry access for npm ci), memcached. KEEP=1 keeps the directory.
# OFFLINE=1: every npm runs --offline, and each stage starts with a copy of this machine's npm
# cache instead of an empty one (a copy: the Dockerfile cleans its cache). No registry access;
# IMAGE_NPM must then be in the cache, or be the host's own npm.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/replicached-dockerfile.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [[ "${KEEP:-}" == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The npm bundled with node 20 (what `npm` is inside node:20-bookworm-slim).
IMAGE_NPM=${IMAGE_NPM:-10.8.2}

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
step "build context"
ctx=$work/context
mkdir -p "$ctx"
(cd "$repo" && git ls-files -co --exclude-standard -z) | while IFS= read -r -d '' f; do
  [[ -e "$repo/$f" ]] && (cd "$repo" && cp -P --parents -- "$f" "$ctx/") # symlinks as links, as docker sends them
done
shopt -s nullglob dotglob
while IFS= read -r pattern; do
  pattern=${pattern%%#*}
  pattern=$(echo "$pattern" | xargs)
  [[ -z "$pattern" ]] && continue
  for hit in "$ctx"/$pattern; do rm -rf -- "$hit"; done
done < "$repo/.dockerignore"
shopt -u nullglob dotglob
echo "$(find "$ctx" -type f | wc -l) files, $(du -sh "$ctx" | cut -f1)"

# ---------------------------------------------------------------------------
# The npm cache each stage starts with: an empty one, as in a fresh image, or (OFFLINE=1) a copy of ours.
host_cache=''
if [[ "${OFFLINE:-}" == 1 ]]; then
  export npm_config_offline=true
  host_cache=$(npm config get cache)
  echo "OFFLINE=1: npm --offline, each stage on a copy of $host_cache"
fi

step "npm $IMAGE_NPM, as in the base image"
if [[ "$(npm --version)" != "$IMAGE_NPM" ]]; then
  npm install --prefix "$work/tools" --no-audit --no-fund --loglevel=error "npm@$IMAGE_NPM" >/dev/null
  export PATH="$work/tools/node_modules/.bin:$PATH"
fi
[[ "$(npm --version)" == "$IMAGE_NPM" ]] || fail "npm $IMAGE_NPM not on PATH"
echo "npm $(npm --version)"

# ---------------------------------------------------------------------------
# Instructions, one per line (continuations joined, comments dropped).
mapfile -t instructions < <(sed -e '/^[[:space:]]*#/d' "$repo/Dockerfile" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | sed -e '/^[[:space:]]*$/d')

declare -A args=()
stage=''
root=''
workdir=/
user=''
stage_env=()
entrypoint=()
cmd=()
healthcheck=()
exposed=''
volumes=()

json_words() { # prints a JSON array's strings NUL-separated
  node -e 'for (const w of JSON.parse(process.argv[1])) process.stdout.write(w + "\0")' "$1"
}
expand_args() { # ${NAME} of ARGs
  local s=$1 k
  for k in "${!args[@]}"; do s=${s//\$\{$k\}/${args[$k]}}; done
  echo "$s"
}
in_stage() { # container path -> host path inside the current stage
  local p=$1
  [[ "$p" != /* ]] && p="${workdir%/}/$p"
  echo "$root$p"
}
run_in_stage() {
  local dir
  dir=$(in_stage .)
  (cd "$dir" && env HOME="$root/root" npm_config_cache="$root/root/.npm" npm_config_update_notifier=false "${stage_env[@]}" bash -ec "$1")
}

for line in "${instructions[@]}"; do
  keyword=${line%% *}
  rest=${line#* }
  case "${keyword^^}" in
    ARG)
      [[ "$rest" == *=* ]] && args[${rest%%=*}]=${rest#*=}
      ;;
    FROM)
      image=$(expand_args "${rest%% *}")
      stage=${rest##* }
      [[ "$rest" == *" AS "* || "$rest" == *" as "* ]] || stage=stage$RANDOM
      root=$work/stages/$stage
      mkdir -p "$root/root"
      if [[ -n "$host_cache" ]]; then
        mkdir -p "$root/root/.npm"
        cp -a "$host_cache/_cacache" "$root/root/.npm/"
      fi
      workdir=/
      user=''
      stage_env=()
      step "stage $stage (FROM $image)"
      image_major=$(sed -nE 's/^node:([0-9]+).*/\1/p' <<<"$image")
      host_major=$(node -p 'process.versions.node.split(".")[0]')
      [[ "$image_major" == "$host_major" ]] || fail "base image node $image_major, host node $host_major: not a faithful stand-in"
      echo "host node $(node -v) stands in for $image"
      ;;
    WORKDIR)
      workdir=$rest
      mkdir -p "$(in_stage .)"
      echo "WORKDIR $workdir"
      ;;
    ENV)
      stage_env+=("$rest")
      echo "ENV $rest"
      ;;
    COPY)
      from=''
      if [[ "$rest" == --from=* ]]; then
        from=${rest%% *}
        from=${from#--from=}
        rest=${rest#* }
      fi
      read -r -a words <<<"$rest"
      dest=${words[-1]}
      unset 'words[-1]'
      target=$(in_stage "$dest")
      for src in "${words[@]}"; do
        if [[ -n "$from" ]]; then origin=$work/stages/$from$src; else origin=$ctx/$src; fi
        [[ -e "$origin" ]] || fail "COPY: $src not found ${from:+in stage $from}${from:-in the build context (.dockerignore?)}"
        if [[ -d "$origin" ]]; then
          mkdir -p "$target" && cp -a "$origin/." "$target/"
        elif [[ "$dest" == */ || ${#words[@]} -gt 1 ]]; then
          mkdir -p "$target" && cp -a "$origin" "$target/"
        else
          mkdir -p "$(dirname "$target")" && cp -a "$origin" "$target"
        fi
      done
      echo "COPY ${from:+--from=$from }${words[*]} -> $dest"
      ;;
    RUN)
      echo "RUN $rest"
      [[ -z "$user" ]] || fail "RUN after USER is not checked by this script"
      run_in_stage "$rest"
      ;;
    USER) user=$rest; echo "USER $user" ;;
    EXPOSE) exposed=$rest; echo "EXPOSE $rest" ;;
    VOLUME) mapfile -d '' -t volumes < <(json_words "$rest"); echo "VOLUME ${volumes[*]}" ;;
    HEALTHCHECK)
      [[ "$rest" == *" CMD ["* ]] || fail "HEALTHCHECK: expected the exec form CMD [...]"
      mapfile -d '' -t healthcheck < <(json_words "[${rest#* CMD [}")
      echo "HEALTHCHECK ${healthcheck[*]}"
      ;;
    ENTRYPOINT) mapfile -d '' -t entrypoint < <(json_words "$rest"); echo "ENTRYPOINT ${entrypoint[*]}" ;;
    CMD) mapfile -d '' -t cmd < <(json_words "$rest"); echo "CMD ${cmd[*]}" ;;
    *) fail "instruction not handled by this script: $keyword" ;;
  esac
done

# ---------------------------------------------------------------------------
step "runtime image contents ($stage)"
app=$(in_stage .)
[[ -f "$app/dist/cli.js" ]] || fail "no dist/cli.js in the runtime stage"
for dev in typescript vitest @types/node fast-check; do
  [[ ! -e "$app/node_modules/$dev" ]] || fail "dev dependency $dev in the runtime stage"
done
[[ ! -e "$app/src" ]] || fail "sources in the runtime stage"
for v in "${volumes[@]}"; do [[ -d "$root$v" ]] || fail "VOLUME $v: no such directory in the stage"; done
[[ "$user" != '' && "$user" != root && "$user" != 0 ]] || fail "the runtime stage must end with a non-root USER"
[[ " $exposed " == *" 11211 "* && " $exposed " == *" 9150 "* ]] || fail "EXPOSE must list 11211 and 9150"
echo "app: $(du -sh "$app" | cut -f1) (node_modules $(du -sh "$app/node_modules" | cut -f1)); user $user"

# ---------------------------------------------------------------------------
step "the documented docker run line"
run_line=$(sed -nE 's/^#[[:space:]]+run:[[:space:]]+(docker run .*)$/\1/p' "$repo/Dockerfile")
[[ -n "$run_line" ]] || fail 'no "#   run:    docker run ..." line in the Dockerfile'
echo "$run_line"
# Run from the repository's root; its quotes hold no spaces.
read -r -a run_words <<<"${run_line//\"/}"
mount_host='' mount_target='' image_name='' published=() run_args=()
set -- "${run_words[@]:2}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    -v) IFS=: read -r mount_host mount_target _ <<<"$2"; mount_host=${mount_host/\$PWD/$repo}; shift 2 ;;
    -p) published+=("$2"); shift 2 ;;
    -*) fail "docker run option $1 is not handled by this script" ;;
    *) image_name=$1; shift; run_args=("$@"); break ;;
  esac
done
[[ -n "$image_name" ]] || fail "no image name in the run line"
[[ ${#run_args[@]} -eq 0 ]] || cmd=("${run_args[@]}")
[[ -n "$mount_target" && -d "$mount_host" ]] || fail "the run line mounts ${mount_host:-nothing}: no such directory"
[[ " ${volumes[*]} " == *" $mount_target "* ]] || fail "the run line mounts $mount_target, which is no VOLUME"
config_path=''
for ((i = 0; i < ${#cmd[@]}; i++)); do [[ "${cmd[i]}" == --config ]] && config_path=${cmd[i + 1]}; done
[[ "$config_path" == "$mount_target"/* ]] || fail "CMD's --config ($config_path) is not in the mounted $mount_target"
[[ -f "$mount_host${config_path#"$mount_target"}" ]] ||
  fail "the mounted directory has no ${config_path#"$mount_target/"}: the container would exit with ENOENT"
echo "mounts $mount_host at $mount_target, which holds ${config_path#"$mount_target/"}; publishes ${published[*]}"
# The settings replicached reads from it, by the runtime stage's own code.
mapfile -t settings < <(cd "$app" && node -e '
  const { loadConfig, parseArgs } = require("./dist/config");
  const c = loadConfig(parseArgs(process.argv.slice(1)));
  const hp = (a) => (a === null ? "off" : `${a.host} ${a.port}`);
  console.log(hp(c.listen)); console.log(hp(c.metricsListen)); console.log(c.backend.connections);
' -- "${cmd[@]/#"$mount_target"/$mount_host}")
read -r listen_host listen_container_port <<<"${settings[0]}"
read -r metrics_host metrics_container_port <<<"${settings[1]}"
is_published() { local p; for p in "${published[@]}"; do [[ "$p" == *":$1" ]] && return 0; done; return 1; }
for what in "listen $listen_host $listen_container_port" "metricsListen $metrics_host $metrics_container_port"; do
  read -r name host port <<<"$what"
  [[ "$host" == 0.0.0.0 || "$host" == :: ]] || fail "$name is $host:$port: inside a container, -p reaches only 0.0.0.0 or ::"
  is_published "$port" || fail "$name port $port is not published by the run line (-p ...:$port)"
  echo "$name $host:$port, published"
done
[[ "${settings[2]}" == 1 ]] || fail "backend.connections is ${settings[2]}: more than 1 may reorder a client's pipelined requests (README)"
echo "backend.connections 1"

step "run ENTRYPOINT + CMD as an unprivileged user, on the mounted config"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
as_user=()
if [[ $(id -u) == 0 ]]; then
  chmod -R a+rX "$work"
  as_user=(runuser -u nobody --)
  echo "the image's user $user is played by nobody"
fi
mc_root=(); [[ $(id -u) == 0 ]] && mc_root=(-u root)
backends=()
for i in 1 2; do
  p=$(free_port)
  memcached -l 127.0.0.1 -p "$p" -U 0 -m 16 "${mc_root[@]}" &
  pids+=($!)
  disown $!
  backends+=("127.0.0.1:$p")
done
listen_port=$(free_port)
metrics_port=$(free_port)
# The mount hides what the image holds there. Its copy listens where the published ports lead.
rm -rf "$root$mount_target"
mkdir -p "$root$mount_target"
cp -a "$mount_host/." "$root$mount_target/"
chmod -R a+rX "$root$mount_target"
(cd "$app" && node -e '
  const fs = require("fs");
  const { parseDocument } = require("yaml");
  const [file, listen, metrics] = process.argv.slice(1);
  const doc = parseDocument(fs.readFileSync(file, "utf8"));
  doc.set("listen", listen);
  doc.set("metricsListen", metrics);
  fs.writeFileSync(file, doc.toString());
' -- "$root$config_path" "127.0.0.1:$listen_port" "127.0.0.1:$metrics_port")
echo "published $listen_container_port -> 127.0.0.1:$listen_port, $metrics_container_port -> 127.0.0.1:$metrics_port"
# Absolute paths in a command are container paths: map them into the stage.
in_container() {
  local w
  for w in "$@"; do
    if [[ "$w" == /* && -e "$root$w" ]]; then printf '%s\0' "$root$w"; else printf '%s\0' "$w"; fi
  done
}
mapfile -d '' -t command < <(in_container "${entrypoint[@]}" "${cmd[@]}")
# The example config's backends are cluster hostnames: point them at the local memcached.
command+=(--backends "$(IFS=,; echo "${backends[*]}")")
echo "${command[*]}"
log=$work/replicached.log
: >"$log"
(cd "$app" && exec env NODE_ENV=production "${as_user[@]}" "${command[@]}") >"$log" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
# Until it listens or exits: no deadline of our own (a loaded machine may take a while).
until grep -q 'replicached listening' "$log"; do
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$log"; fail "replicached exited"; }
  sleep 0.1
done
runner=$(pgrep -P "$proxy_pid" -f 'dist/cli.js' || echo "$proxy_pid")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$runner/status")
echo "listening on $listen_port, metrics on $metrics_port, uid $uid"
[[ $(id -u) != 0 || "$uid" != 0 ]] || fail "replicached runs as root"

step "HEALTHCHECK, as written"
mapfile -d '' -t hc < <(in_container "${healthcheck[@]}")
(cd "$app" && "${as_user[@]}" "${hc[@]}") || fail "HEALTHCHECK failed"
echo "exit 0"

step "traffic, /readyz, /metrics"
node - "$listen_port" "$metrics_port" <<'EOF'
const net = require('net');
const [port, metricsPort] = process.argv.slice(2).map(Number);
const s = net.connect(port, '127.0.0.1');
let buf = '';
s.on('data', (d) => {
  buf += d;
  if (!buf.endsWith('END\r\n')) return;
  s.end();
  if (buf !== 'STORED\r\nVALUE dockerfile-check 0 2\r\nok\r\nEND\r\n') throw new Error(`unexpected reply ${JSON.stringify(buf)}`);
  (async () => {
    const ready = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
    if (ready.status !== 200) throw new Error(`/readyz ${ready.status}`);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    if (!/replicached_requests_total\{command="get",result="hit"\} 1/.test(metrics)) throw new Error('get not counted');
    console.log('set + get through the proxy, /readyz 200, /metrics counts them');
  })().catch((e) => { console.error(e.message); process.exit(1); });
});
s.write('set dockerfile-check 0 0 2\r\nok\r\nget dockerfile-check\r\n');
EOF

step "SIGHUP reloads the mounted config"
kill -HUP "$runner"
for _ in $(seq 50); do grep -q '"msg":"config reloaded"' "$log" && break; sleep 0.1; done
grep '"msg":"config reloaded"' "$log" || { cat "$log"; fail "no reload after SIGHUP"; }

step "SIGTERM stops it with exit 0"
kill -TERM "$runner"
code=0
wait "$proxy_pid" || code=$?
[[ "$code" == 0 ]] || { cat "$log"; fail "exit code $code after SIGTERM"; }
echo "exit 0"

printf '\nDockerfile check passed\n'
