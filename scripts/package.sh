#!/usr/bin/env bash
# `npm run package`: release artifacts for Linux x64 machines without Node.js.
#
#   scripts/package.sh [--out DIR]      (default: release/)
#
#   DIR/replicached-<version>-linux-x64.tar.gz
#       replicached-<version>-linux-x64/
#         bin/replicached        launcher: runs dist/cli.js on node/bin/node, never on a PATH node
#         node/bin/node          this machine's node (process.execPath), an official Node.js build
#         node/LICENSE           its license
#         dist/                  the compiled TypeScript (no source maps: no sources ship)
#         node_modules/          production dependencies only (npm ci --omit=dev)
#         package.json           replicached --version reads it
#         share/replicached.yaml       the default config for a VM
#         share/replicached.service    the systemd unit
#         share/doc/             docs/install.md, CHANGELOG.md
#   DIR/replicached_<version>_amd64.deb
#       /opt/replicached/        the tree above
#       /usr/bin/replicached     -> /opt/replicached/bin/replicached
#       /usr/lib/systemd/system/replicached.service
#       /etc/replicached/replicached.yaml (a conffile), control files from packaging/deb/
#
# A tarball carrying the official node binary, not a single executable application: the
# code, its dependencies and package.json stay files that node loads as in development and
# in the Docker image; --workers forks dist/cli.js with the same node; no bundler is needed.
#
# Needs: node (>= 20, linux x64: the runtime shipped), npm, the dev dependencies (tsc; run
# `npm install` first), tar, gzip, dpkg-deb. npm ci prefers its cache and goes to the
# registry only for what the cache lacks.
set -euo pipefail
umask 022

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$repo/release
case "$#:${1:-}" in
  0:) ;;
  2:--out) out=$(mkdir -p "$2" && cd "$2" && pwd) ;;
  *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
esac

fail() { echo "package: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

for tool in tar gzip dpkg-deb; do
  command -v "$tool" >/dev/null || fail "$tool is needed (Debian: apt-get install tar gzip dpkg)"
done
[[ -x "$repo/node_modules/.bin/tsc" ]] || fail "no TypeScript compiler in node_modules: run npm install first"

version=$(node -p 'require(process.argv[1]).version' "$repo/package.json")
# Debian orders a pre-release after its release unless it is marked with ~ (0.2.0~rc.1 < 0.2.0).
deb_version=${version/-/\~}
name=replicached-$version-linux-x64

step "runtime: this machine's node"
read -r node_bin node_version node_target < <(node -p '[process.execPath, process.version, `${process.platform}-${process.arch}`].join(" ")')
[[ "$node_target" == linux-x64 ]] || fail "node runs on $node_target: the artifacts are for linux-x64"
[[ "${node_version#v}" =~ ^(2[0-9]|[3-9][0-9])\. ]] || fail "node $node_version: package.json's engines want 20 or later"
# An official build's LICENSE sits beside its bin/; a Debian-style package keeps it in its docs.
node_license=''
for candidate in "$(dirname "$node_bin")/../LICENSE" /usr/share/doc/nodejs/LICENSE; do
  [[ -f "$candidate" ]] && { node_license=$candidate; break; }
done
[[ -n "$node_license" ]] || fail "cannot find the LICENSE of $node_bin (looked beside it and in /usr/share/doc/nodejs)"
echo "$node_bin ($node_version)"

work=$(mktemp -d "${TMPDIR:-/tmp}/replicached-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A signal ends the script once the step running finishes, through the EXIT trap (bash runs
# no EXIT trap when a signal it does not trap kills it).
trap 'exit 130' INT
trap 'exit 143' TERM
app=$work/$name
mkdir -p "$app/bin" "$app/node/bin" "$app/share/doc"

step "dist/: tsc"
# Into the staging tree, not the checkout's dist/: a test running this must not rewrite the
# dist/ that other tests are running.
"$repo/node_modules/.bin/tsc" -p "$repo/tsconfig.json" --outDir "$app/dist" --sourceMap false

step "node_modules/: production dependencies"
cp "$repo/package.json" "$repo/package-lock.json" "$app/"
(cd "$app" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error)
rm "$app/package-lock.json"

step "launcher, runtime, config, unit, docs"
cp "$node_bin" "$app/node/bin/node"
cp "$node_license" "$app/node/LICENSE"
cp "$repo/packaging/launcher.sh" "$app/bin/replicached"
cp "$repo/packaging/replicached.yaml" "$repo/packaging/replicached.service" "$app/share/"
cp "$repo/docs/install.md" "$repo/CHANGELOG.md" "$app/share/doc/"
chmod 755 "$app/bin/replicached" "$app/node/bin/node"

mkdir -p "$out"
tarball=$out/$name.tar.gz
deb=$out/replicached_${deb_version}_amd64.deb

step "$tarball"
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner -czf "$tarball" "$name"

step "$deb"
root=$work/deb
mkdir -p "$root/opt" "$root/usr/bin" "$root/usr/lib/systemd/system" "$root/etc/replicached" "$root/DEBIAN"
cp -a "$app" "$root/opt/replicached"
ln -s /opt/replicached/bin/replicached "$root/usr/bin/replicached"
cp "$repo/packaging/replicached.service" "$root/usr/lib/systemd/system/"
cp "$repo/packaging/replicached.yaml" "$root/etc/replicached/"
cp "$repo"/packaging/deb/{conffiles,postinst,prerm,postrm} "$root/DEBIAN/"
chmod 644 "$root/DEBIAN/conffiles"
chmod 755 "$root"/DEBIAN/{postinst,prerm,postrm}
# Depends: the shared libraries the official node binary links (glibc 2.28, GLIBCXX_3.4.21 from
# GCC 5's libstdc++, libgcc_s), and adduser for postinst. Recommends memcached: a web node
# usually runs one of the backends, and with no backends configured replicached starts its own.
cat >"$root/DEBIAN/control" <<EOF
Package: replicached
Version: $deb_version
Architecture: amd64
Maintainer: replicached maintainers <maintainers@users.noreply.h-seed-f60a0b97.example>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: adduser, libc6 (>= 2.28), libgcc-s1, libstdc++6 (>= 5)
Recommends: memcached
Section: net
Priority: optional
Description: memcached proxy that replicates PHP sessions over several memcached servers
 replicached speaks the memcached text and binary protocols to PHP (php-memcached,
 pecl-memcache) and writes every item to several memcached servers, so that sessions
 survive the loss of any one of them. It carries its own Node.js runtime in
 /opt/replicached. Config: /etc/replicached/replicached.yaml; service: replicached.service.
EOF
# xz at level 1: about 30 MB where gzip -9 gives 38 MB, in less CPU time; dpkg-deb's default
# level 6 saves about 5 MB more for five times the time, every build (npm test builds it too).
dpkg-deb --root-owner-group -Zxz -z1 --build "$root" "$deb" >/dev/null

step "done"
ls -l "$tarball" "$deb"
