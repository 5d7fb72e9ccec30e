#!/usr/bin/env bash
# Runs checkov (pinned) over deploy/terraform; installs it into .tools/checkov once.
# Every skip is justified inline where it applies (#checkov:skip=ID:reason).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.2.470
VENV=.tools/checkov
if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$VERSION"
fi
"$VENV/bin/checkov" -d deploy/terraform --framework terraform --compact --quiet
