#!/usr/bin/env bash
# Install what kumo needs to build and test: Go modules, and the Debian
# packages the drivers need (runc for containers, busybox-static for the
# tiny rootfs image).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

# Debian packages kumo's tests and drivers use. Installed only if missing.
PACKAGES=(ca-certificates runc busybox-static)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

command -v go >/dev/null || { echo "deps: Go is not installed (expected at /usr/local/go)"; exit 1; }
go mod download
