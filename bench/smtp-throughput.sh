#!/usr/bin/env bash
# Three-way SMTP throughput, in one run: Postfix's smtp-source straight to smtp-sink, through Postern with no
# plugins, and through Postern with the four first-party plugins (eicar, attachment-guard, dlp, external-tag).
# A fourth column is the floor of any relay that opens an upstream connection per client session: a TCP
# forwarder (bench/tcpforward) that copies bytes without parsing them.
#
#   bench/smtp-throughput.sh            # 20 sessions, 20,000 messages of 10 KiB, one round
#   ROUNDS=3 MESSAGES=5000 bench/smtp-throughput.sh
#   SENDER=a@outside.test bench/smtp-throughput.sh   # every message external: external-tag rewrites each one
#   BASELINE=/tmp/old bench/smtp-throughput.sh       # also a relay built from another tree, e.g. the commit before
#                                                    # a change (git archive OLD | tar -x -C /tmp/old), each round
#   RELAY_ARGS="-audit /tmp/a.log" BASELINE=$PWD BASELINE_ARGS="-audit /tmp/b.log -audit-plain" bench/smtp-throughput.sh
#                                                    # extra bench/relay flags for Postern's relays and the baseline's:
#                                                    # here the durable audit records against records written after
#                                                    # the reply, in the same tree
#
# Needs smtp-sink and smtp-source (Debian package postfix) and Go. Run as root (smtp-sink needs -u then).
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS=${SESSIONS:-20}
MESSAGES=${MESSAGES:-20000}
SIZE=${SIZE:-10240}
ROUNDS=${ROUNDS:-1}
SENDER=${SENDER:-a@example.test}
RCPT=${RCPT:-b@example.test}

for tool in smtp-sink smtp-source; do
	command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install postfix" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

sink_port=$(free_port)
user=()
[ "$(id -u)" -eq 0 ] && user=(-u nobody)
smtp-sink "${user[@]}" -m 4096 "127.0.0.1:$sink_port" 4096 &
pids+=($!)

go build -o "$work/relay" ./bench/relay
go build -o "$work/tcpforward" ./bench/tcpforward
if [ -n "${BASELINE:-}" ]; then
	(cd "$BASELINE" && go build -o "$work/relay-baseline" ./bench/relay)
fi
start_relay() { # PORT [-forward|-baseline] ARGS...
	local port=$1 bin=$work/relay
	shift
	if [ "${1:-}" = -forward ]; then
		bin=$work/tcpforward
		shift
	elif [ "${1:-}" = -baseline ]; then
		bin=$work/relay-baseline
		shift
	fi
	local extra=${RELAY_ARGS:-}
	[ "$bin" = "$work/relay-baseline" ] && extra=${BASELINE_ARGS:-}
	[ "$bin" = "$work/tcpforward" ] && extra=
	# Each relay gets its own audit file: "-audit PATH" becomes PATH.PORT.
	# shellcheck disable=SC2086
	set -- "$@" $(sed -E "s#(-audit[[:space:]]+)([^[:space:]]+)#\\1\\2.$port#" <<<"$extra")
	"$bin" -listen "127.0.0.1:$port" -upstream "127.0.0.1:$sink_port" "$@" >"$work/relay-$port.out" 2>"$work/relay-$port.err" &
	pids+=($!)
	for _ in $(seq 600); do
		grep -q ready "$work/relay-$port.out" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "relay on $port did not start:" >&2
	cat "$work/relay-$port.err" >&2
	exit 1
}
plain_port=$(free_port)
plugins_port=$(free_port)
forward_port=$(free_port)
start_relay "$plain_port"
start_relay "$plugins_port" -plugins
start_relay "$forward_port" -forward
if [ -n "${BASELINE:-}" ]; then
	base_plain_port=$(free_port)
	base_plugins_port=$(free_port)
	start_relay "$base_plain_port" -baseline
	start_relay "$base_plugins_port" -baseline -plugins
fi

run() { # PORT -> messages per second
	local start end
	start=$(date +%s.%N)
	smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f "$SENDER" -t "$RCPT" "127.0.0.1:$1"
	end=$(date +%s.%N)
	python3 -c "print(f'{$MESSAGES / ($end - $start):.0f}')"
}

echo "smtp-source -s $SESSIONS -m $MESSAGES -l $SIZE -f $SENDER -t $RCPT; $(nproc) CPUs; Go $(go env GOVERSION)"
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }
printf '%-6s %12s %18s %6s %18s %6s %18s %6s' round direct no-plugins ratio four-plugins ratio tcp-forward ratio
[ -n "${BASELINE:-}" ] && printf ' %18s %6s %18s %6s' baseline-none ratio baseline-four ratio
echo
for r in $(seq "$ROUNDS"); do
	d=$(run "$sink_port")
	if [ -n "${BASELINE:-}" ] && [ $((r % 2)) -eq 1 ]; then
		# The baseline runs just before the relay in odd rounds and just after it in even ones, so that a
		# change of load on a shared machine does not always favour the same one.
		bp=$(run "$base_plain_port")
		p=$(run "$plain_port")
		bf=$(run "$base_plugins_port")
		f=$(run "$plugins_port")
	elif [ -n "${BASELINE:-}" ]; then
		p=$(run "$plain_port")
		bp=$(run "$base_plain_port")
		f=$(run "$plugins_port")
		bf=$(run "$base_plugins_port")
	else
		p=$(run "$plain_port")
		f=$(run "$plugins_port")
	fi
	w=$(run "$forward_port")
	printf '%-6s %8s msg/s %12s msg/s %6s %12s msg/s %6s %12s msg/s %6s' "$r" "$d" "$p" "$(ratio "$p" "$d")" \
		"$f" "$(ratio "$f" "$d")" "$w" "$(ratio "$w" "$d")"
	if [ -n "${BASELINE:-}" ]; then
		printf ' %12s msg/s %6s %12s msg/s %6s' "$bp" "$(ratio "$bp" "$d")" "$bf" "$(ratio "$bf" "$d")"
	fi
	echo
done
if grep -qi "level=error" "$work"/relay-*.err; then
	echo "relay errors:" >&2
	grep -hi "level=error" "$work"/relay-*.err | head >&2
	exit 1
fi
