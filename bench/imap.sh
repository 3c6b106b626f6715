#!/usr/bin/env bash
# IMAP proxy benchmarks (docs/PERFORMANCE.md, "IMAP proxy"), in one run, output in OUT (default build/bench):
#   - a client listing 1,000 messages (UID, RFC822.SIZE, BODYSTRUCTURE, header) then reading 100 whole, straight
#     to Dovecot, through Postern with the demo's plugins (first pass, then cached) and without plugins;
#   - imaptest's stress mode, 10 clients, straight to Dovecot and through Postern (IMAP_STRESS_SECS each, default
#     30), without STATUS;
#   - the memory of one idle, logged-in IMAP session (200 sessions).
# Needs root (it starts Dovecot from Debian's dovecot-imapd through internal/testdovecot), the plugins
# (make plugins) and imaptest (make imaptest).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/bench}
mkdir -p "$out"
export POSTERN_PLUGIN_DIR=$PWD/build/plugins
export IMAPTEST=${IMAPTEST:-$PWD/build/imaptest/bin/imaptest}
run() { local name=$1; shift; echo "bench: $name: go test $*"; go test "$@" | tee "$out/$name.txt" | grep -E '^(Benchmark|ok|FAIL)' || true; }
run imap-fetch -count=1 -run '^$' -bench BenchmarkIMAPFetch -benchtime "${FETCH_ROUNDS:-3}x" ./test/imapinterop/
run imap-stress -count=1 -run '^$' -bench BenchmarkIMAPStress -benchtime 1x ./test/imapinterop/
run imap-idle -count=1 -run '^$' -bench BenchmarkIMAPIdleSession -benchtime 1x ./test/imapinterop/
