#!/usr/bin/env bash
# Installs Chromium (Debian's chromium package) when missing, for the console's browser
# test that drives it headless over the DevTools protocol. Needs root or sudo on
# Debian/Ubuntu. The test finds the browser on PATH; nothing is downloaded by Go.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
