#!/usr/bin/env bash
# Stop the server started by scripts/up.sh (gracefully: SIGTERM).
set -euo pipefail
SOCKET="${KUMO_SOCKET_PATH:-/run/kumo/kumo.sock}"
PIDFILE="$(dirname "$SOCKET")/server.pid"
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
	pid=$(cat "$PIDFILE")
	kill -TERM "$pid"
	for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
	rm -f "$PIDFILE"
	echo "kumo server stopped"
else
	echo "no kumo server running"
fi
