#!/usr/bin/env bash
# Tools `npm run bench` drives: memcached, memaslap (Debian: memcaslap in
# libmemcached-tools) and nutcracker (twemproxy). Installs what is missing with apt-get.
set -euo pipefail
missing=()
command -v memcached >/dev/null || missing+=(memcached)
command -v memcaslap >/dev/null || command -v memaslap >/dev/null || missing+=(libmemcached-tools)
command -v nutcracker >/dev/null || missing+=(nutcracker)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
