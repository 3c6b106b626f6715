#!/usr/bin/env bash
# Runs the Go micro-benchmarks that docs/PERFORMANCE.md reports, each with the command given there, and writes
# their output to OUT (default build/bench). Needs the plugins built (make plugins).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/bench}
mkdir -p "$out"
export POSTERN_PLUGIN_DIR=$PWD/build/plugins
run() { local name=$1; shift; echo "bench: $name: go test $*"; go test "$@" | tee "$out/$name.txt" | grep -E '^(Benchmark|ok|FAIL)' || true; }
run pluginhost-calls -run '^$' -bench 'CallEmpty|CallHeaderOnly|PartMatch1MiB' -benchmem -count 5 ./proxy/pluginhost/
run pluginhost-scan -run '^$' -bench 'Scan1MiB|Load' -benchtime 3x -benchmem ./proxy/pluginhost/
run message -run '^$' -bench . -benchmem -count 3 ./proxy/message/
run policy -run '^$' -bench . -benchmem -count 5 ./proxy/policy/
run when -run '^$' -bench BenchmarkWhen -benchmem -count 3 ./proxy/config/
run audit -run '^$' -bench . -benchmem -count 3 ./proxy/audit/
run sdk -run '^$' -bench BenchmarkSDK -benchtime 2s -count 3 ./sdk/hosttest/
run plugins -run '^$' -bench . -benchmem -count 3 ./plugins/...
run relay -run '^$' -bench BenchmarkRelaySession -benchtime 3000x -benchmem -count 3 ./proxy/smtpproxy/
