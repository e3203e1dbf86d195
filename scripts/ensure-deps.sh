#!/usr/bin/env bash
# Makes sure the programs replicached and its tests drive are installed.
#   scripts/ensure-deps.sh            what `npm test` needs: memcached, php with the memcached
#                                     and memcache extensions, memccapable, nutcracker, and
#                                     saslpasswd2 (sasl2-bin) for the memcached -S tests
#   scripts/ensure-deps.sh --runtime  what `npm start` needs: memcached
# Silent when everything is there. When something is missing and we are root on a machine
# with apt-get (Debian/Ubuntu), installs it; otherwise names the packages and exits 1.
set -euo pipefail

runtime_only=0
case "${1:-}" in
  '') ;;
  --runtime) runtime_only=1 ;;
  *) echo "usage: $0 [--runtime]" >&2; exit 2 ;;
esac

# Missing Debian packages, one per missing piece.
missing_packages() {
  local pkgs=()
  command -v memcached >/dev/null 2>&1 || pkgs+=(memcached)
  if [ "$runtime_only" -eq 0 ]; then
    if command -v php >/dev/null 2>&1; then
      local mods
      mods="$(php -m 2>/dev/null || true)"
      grep -qx memcached <<<"$mods" || pkgs+=(php-memcached)
      grep -qx memcache <<<"$mods" || pkgs+=(php-memcache)
    else
      pkgs+=(php-cli php-memcached php-memcache)
    fi
    command -v memccapable >/dev/null 2>&1 || pkgs+=(libmemcached-tools)
    # The bench harness test (test/bench/) drives twemproxy beside replicached; Debian has it in /usr/sbin.
    command -v nutcracker >/dev/null 2>&1 || pkgs+=(nutcracker)
    # The SASL tests (test/helpers/sasl.ts) write memcached -S users into a sasldb with it.
    command -v saslpasswd2 >/dev/null 2>&1 || [ -x /usr/sbin/saslpasswd2 ] || pkgs+=(sasl2-bin)
  fi
  echo "${pkgs[@]}"
}

read -r -a need <<<"$(missing_packages)"
[ "${#need[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  {
    echo "replicached: missing programs; please install these packages:"
    echo "    ${need[*]}"
    echo "  on Debian/Ubuntu, as root:"
    echo "    apt-get update && apt-get install -y --no-install-recommends ${need[*]}"
    echo "  (memcached is needed to run; php-cli, php-memcached, php-memcache,"
    echo "   libmemcached-tools (memccapable, memaslap), nutcracker and sasl2-bin are needed by the tests)"
  } >&2
  exit 1
fi

echo "replicached: installing ${need[*]} (apt-get)" >&2

# Keep the memcached package from starting its system service (it would take
# 127.0.0.1:11211, replicached's default port): policy-rc.d answering 101 means "do not
# start services" to invoke-rc.d and deb-systemd-invoke. Only if none is in place already.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
}

# apt-get update only when needed: no package lists yet, or the install failed with the
# lists we have (stale lists name versions the mirror no longer has).
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! apt_install; then
  apt-get update
  apt_install
fi

read -r -a still <<<"$(missing_packages)"
if [ "${#still[@]}" -ne 0 ]; then
  echo "replicached: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
