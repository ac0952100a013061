#!/usr/bin/env bash
# Start the all-in-one kumo server in the background and wait until it
# answers. State: $KUMO_DATA_DIR (default /var/lib/kumo). Log: $KUMO_LOG.
set -euo pipefail
umask 077 # the log holds the first-start admin password
cd "$(dirname "$0")/.."
DATA_DIR="${KUMO_DATA_DIR:-/var/lib/kumo}"
SOCKET="${KUMO_SOCKET_PATH:-/run/kumo/kumo.sock}"
LISTEN="${KUMO_LISTEN:-:8443}"
LOG="${KUMO_LOG:-/var/log/kumo/server.log}"
PIDFILE="$(dirname "$SOCKET")/server.pid"

install -m 0755 bin/kumo /usr/local/bin/kumo
mkdir -p "$(dirname "$LOG")" "$(dirname "$SOCKET")"

if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
	echo "kumo server already running (pid $(cat "$PIDFILE")); 'make down' stops it"
else
	# Containers and VMs on this machine (one host offering both); VMs use
	# KVM when a probe boot under it works, else TCG.
	DRIVERS=container
	command -v qemu-system-x86_64 >/dev/null && DRIVERS=container,qemu
	nohup /usr/local/bin/kumo server --data-dir "$DATA_DIR" --listen "$LISTEN" --socket "$SOCKET" --drivers "$DRIVERS" >>"$LOG" 2>&1 &
	echo $! >"$PIDFILE"
fi
for _ in $(seq 1 300); do
	if kumo --socket "$SOCKET" version 2>/dev/null | grep -q '^server:'; then
		break
	fi
	if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		echo "kumo server exited; last lines of $LOG:"; tail -20 "$LOG"; exit 1
	fi
	sleep 0.2
done
kumo --socket "$SOCKET" version
# The tiny rootfs image, built offline from busybox-static, and a demo container.
export KUMO_SOCKET="$SOCKET"
if ! kumo image show tiny >/dev/null 2>&1; then
	kumo image build tiny-rootfs -f "$DATA_DIR/tiny-rootfs.tar.gz" >/dev/null
	kumo image import "$DATA_DIR/tiny-rootfs.tar.gz" --name tiny --public >/dev/null
	echo "imported image tiny (busybox rootfs)"
fi
if command -v qemu-system-x86_64 >/dev/null && ! kumo image show tiny-vm >/dev/null 2>&1; then
	kumo image build tiny-vm -f "$DATA_DIR/tiny-vm.tar.gz" --import --public >/dev/null
	echo "imported image tiny-vm (Debian cloud kernel + busybox initramfs)"
fi
# A demo network (VXLAN, DHCP, metadata; tenants never see the host) with
# a container and a VM on it, once the local host has joined (its agent
# first probes KVM, up to 15 s).
for _ in $(seq 1 120); do
	kumo host list 2>/dev/null | grep -q ONLINE && break
	sleep 0.5
done
if ! kumo network show demo >/dev/null 2>&1; then
	kumo network create demo --subnet 10.99.0.0/24 --dns 10.99.0.1 >/dev/null && echo "network demo: 10.99.0.0/24"
fi
if ! kumo instance show demo >/dev/null 2>&1; then
	kumo instance create demo --type container --image tiny --flavor tiny --network demo --wait >/dev/null &&
		echo "demo container: $(kumo instance list | awk '$1 == "demo" {print $3, $5}')"
fi
if kumo image show tiny-vm >/dev/null 2>&1 && ! kumo instance show demo-vm >/dev/null 2>&1; then
	kumo instance create demo-vm --type vm --image tiny-vm --flavor tiny --network demo --wait >/dev/null &&
		echo "demo VM: $(kumo instance list | awk '$1 == "demo-vm" {print $3, $5}')"
fi
echo
grep -h "first start" "$LOG" | tail -1 || true
grep -h "CA fingerprint" "$LOG" | tail -1 || true
echo
echo "kumo is up. As root on this machine, no login needed:"
echo "  kumo instance list ; kumo instance history demo ; kumo host list"
echo "  kumo instance exec demo -- ping -c1 IP-OF-demo-vm     # 'kumo instance list' shows the IPs"
echo "  kumo instance exec demo -- wget -qO- http://169.254.169.254/latest/meta-data/local-ipv4"
echo "  kumo instance create vm1 --type vm --image tiny-vm --flavor tiny --wait ; kumo instance console vm1"
echo "  kumo flavor list"
echo "  kumo project create web --quota instances=10,vcpus=20,memory=20GiB"
echo "From elsewhere: kumo login https://$(hostname -f 2>/dev/null || hostname):${LISTEN##*:} --user admin"
echo "(admin password: $DATA_DIR/admin-credentials; log: $LOG; stop: make down)"
