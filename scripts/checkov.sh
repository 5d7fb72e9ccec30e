#!/usr/bin/env bash
# Runs checkov (pinned) over deploy/terraform; installs it into .tools/checkov once.
# Every skip is justified inline where it applies (#checkov:skip=ID:reason).
#
# checkov calls no one but the package index (the install, once: pip's own
# configuration on this machine says which; this file names none). Read in checkov
# 3.2.470's source,
#   --skip-download / BC_SKIP_MAPPING=TRUE   no Prisma Cloud call for the guidelines,
#                                            ID mapping and run config (the output
#                                            loses only the guideline links)
#   CKV_SKIP_PACKAGE_UPDATE_CHECK=true       no "update available" lookup on the index,
#                                            which the banner module makes on every start,
#                                            --version included
#   --download-external-modules false        no Terraform registry or git fetch of modules
#                                            (deploy/terraform uses none; this keeps it so)
# No API key is ever given, so nothing is uploaded.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=3.2.470
VENV=.tools/checkov
export BC_SKIP_MAPPING=TRUE CKV_SKIP_PACKAGE_UPDATE_CHECK=true DOWNLOAD_EXTERNAL_MODULES=false
unset BC_API_KEY PRISMA_API_URL BC_API_URL
if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$VERSION"
fi
"$VENV/bin/checkov" -d deploy/terraform --framework terraform --compact --quiet \
  --skip-download --download-external-modules false
