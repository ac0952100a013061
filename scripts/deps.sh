#!/usr/bin/env bash
# Install what kumo needs to build and test: Go modules, and the Debian
# packages the drivers need (runc for containers; qemu-system-x86,
# qemu-utils and genisoimage for VMs; busybox-static for the tiny images;
# debootstrap and e2fsprogs for the debian image (e2fsprogs and mount also
# for ext4 volumes, loop-mounted); iperf3 for the network throughput
# benchmark; fio for the volume I/O benchmark; chromium for the web
# console's browser tests).
# The tiny-vm builder fetches linux-image-cloud-amd64 with apt-get download,
# so the package lists must be there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/usr/sbin:/sbin"

# Debian packages kumo's tests and drivers use. Installed only if missing.
PACKAGES=(ca-certificates runc busybox-static qemu-system-x86 qemu-utils genisoimage debootstrap e2fsprogs mount iproute2 iperf3 fio chromium)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
updated=
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	apt-get update -qq
	updated=1
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ -z "$updated" ] && ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then
	echo "deps: fetching the package lists (tiny-vm takes its kernel from linux-image-cloud-amd64)"
	apt-get update -qq
fi

command -v go >/dev/null || { echo "deps: Go is not installed (expected at /usr/local/go)"; exit 1; }
go mod download
# npm builds the web console in `make check` (to compare with the committed
# web/dist); the machine image has Node.js, Debian's packages otherwise.
if ! command -v npm >/dev/null; then
	echo "deps: installing nodejs npm"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi
