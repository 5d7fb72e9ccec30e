#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's prometheus package) when missing, for the
# observability test that scrapes a real worker. Needs root or sudo on Debian/Ubuntu.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: the server and promtool only, not the exporters.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package may start a system service; the test runs its own server.
$SUDO service prometheus stop >/dev/null 2>&1 || true
command -v promtool >/dev/null
