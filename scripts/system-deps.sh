#!/usr/bin/env bash
# Installs the Debian packages the project needs, once. Idempotent and quiet when everything is present.
set -euo pipefail
need=()
# unshare + setpriv, seccomp, worker interpreter, a C compiler for the sandbox's native helper (built when
# the package installs); headless chromium for the report's browser test
for pkg in util-linux libseccomp2 python3 gcc libc6-dev chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} (run as root or install them with apt-get)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
