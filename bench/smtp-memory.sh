#!/usr/bin/env bash
# Memory of the SMTP relay (no plugins, and with the four first-party plugins):
#  1. RSS with 1,000 concurrent idle sessions (each said EHLO, so each holds its upstream connection);
#  2. peak RSS growth while relaying one 100 MiB message (smtp-source -l 104857600 -m 1): VmHWM after it minus
#     VmRSS before it.
#
#   bench/smtp-memory.sh
#   BIG=$((50<<20)) IDLE=500 bench/smtp-memory.sh
#   BASELINE=/tmp/old bench/smtp-memory.sh    # also a relay built from another tree (see smtp-throughput.sh)
#
# Needs smtp-sink and smtp-source (Debian package postfix), python3 and Go. Run as root (smtp-sink needs -u then).
set -euo pipefail
cd "$(dirname "$0")/.."

BIG=${BIG:-104857600}
IDLE=${IDLE:-1000}

for tool in smtp-sink smtp-source python3; do
	command -v "$tool" >/dev/null || { echo "$tool not found (smtp-sink, smtp-source: apt-get install postfix)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

sink_port=$(free_port)
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
smtp-sink "${user[@]}" -m 8192 "127.0.0.1:$sink_port" 8192 &
pids+=($!)
go build -o "$work/relay" ./bench/relay
if [ -n "${BASELINE:-}" ]; then
	(cd "$BASELINE" && go build -o "$work/relay-baseline" ./bench/relay)
fi

measure() { # LABEL [-baseline] RELAY-ARGS...
	local label=$1 port pid before after base idle bin=$work/relay
	shift
	if [ "${1:-}" = -baseline ]; then
		bin=$work/relay-baseline
		shift
	fi
	port=$(free_port)
	"$bin" -listen "127.0.0.1:$port" -upstream "127.0.0.1:$sink_port" -sessions $((IDLE + 100)) "$@" \
		>"$work/out" 2>"$work/err" &
	pid=$!
	pids+=($pid)
	for _ in $(seq 600); do grep -q ready "$work/out" 2>/dev/null && break; sleep 0.1; done
	grep -q ready "$work/out" || { cat "$work/err" >&2; exit 1; }
	# Warm up: a few ordinary messages, so the baseline includes the steady-state heap and plugin instances.
	smtp-source -s 4 -m 40 -l 10240 -f a@example.test -t b@example.test "127.0.0.1:$port"
	base=$(kib "$pid" VmRSS)
	python3 - "$port" "$IDLE" "$pid" >"$work/idle" <<'EOF2'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(30)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220"), "no greeting"
    s.sendall(b"EHLO idle.test\r\n")
    while True:
        l = f.readline()
        assert l.startswith(b"250"), l
        if l[3:4] == b" ":
            break
    socks.append((s, f))
time.sleep(1)
rss = [l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0]
print(rss)
for s, f in socks:
    s.sendall(b"QUIT\r\n")
    s.close()
EOF2
	idle=$(cat "$work/idle")
	sleep 1
	before=$(kib "$pid" VmRSS)
	smtp-source -s 1 -m 1 -l "$BIG" -f a@example.test -t b@example.test "127.0.0.1:$port"
	after=$(kib "$pid" VmHWM)
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	printf '%-14s %d idle sessions: RSS %d MiB (%d MiB before them); one %d MiB message: peak RSS growth %d MiB (%d KiB, from %d MiB)\n' \
		"$label" "$IDLE" $((idle / 1024)) $((base / 1024)) $((BIG >> 20)) $(((after - before) / 1024)) $((after - before)) $((before / 1024))
}

if [ -n "${BASELINE:-}" ]; then
	measure "baseline, none" -baseline
	measure "no plugins"
	measure "baseline, four" -baseline -plugins
	measure "four plugins" -plugins
else
	measure "no plugins"
	measure "four plugins" -plugins
fi
