#!/usr/bin/env bash
# Makes docs/img/dashboard.png: runs `postern run` in front of smtp-sink with a real Prometheus scraping it every
# 2 s, sends it mail with smtp-source and swaks for a few minutes (clean, EICAR, quarantined, a plugin that times
# out, a listener whose upstream is down, a refused and a good reload), then draws the dashboard's panels from
# Prometheus's answers to the dashboard's own queries (dist/grafana/render) and photographs the page with headless
# Chromium. Needs: make plugins, and the Debian packages prometheus, postfix (smtp-sink, smtp-source), swaks,
# chromium. Everything listens on 127.0.0.1 and stops at the end. Usage: dist/grafana/render.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
minutes=${1:-4}
work=$(mktemp -d /tmp/postern-dashboard-XXXXXX)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

go build -o "$work/postern" ./cmd/postern
go build -o "$work/render" ./dist/grafana/render

mkdir -m 777 "$work/sink"
smtp-sink -u nobody -m 200 127.0.0.1:2626 200 & pids+=($!)

write_config() { # $1: external-tag's subject prefix
cat > "$work/postern.hcl" <<HCL
state_dir = "$work/state"
audit {
  path = "$work/state/audit.log"
}
admin {
  address = "127.0.0.1:8125"
}
listener "smtp" "mx" {
  address  = "127.0.0.1:2625"
  upstream = "127.0.0.1:2626"
}
listener "smtp" "partner" {
  address  = "127.0.0.1:2627"
  upstream = "127.0.0.1:2699"
}
plugin "eicar" {
  source = "$root/build/plugins/eicar.wasm"
}
plugin "attachment-guard" {
  source = "$root/build/plugins/attachment-guard.wasm"
}
plugin "external-tag" {
  source = "$root/build/plugins/external-tag.wasm"
  config = { internal_domains = ["example.com"], subject_prefix = "$1" }
}
plugin "hold" {
  source = "$root/build/plugins/verdict.wasm"
  config = { action = "quarantine", text = "held for review" }
}
plugin "slow" {
  source   = "$root/proxy/pluginhost/testdata/loop.wasm"
  timeout  = "200ms"
  on_error = "accept"
}
policy "hold" {
  when    = msg.subject == "hold"
  plugins = ["hold"]
}
policy "slow" {
  when    = msg.subject == "slow"
  plugins = ["slow"]
}
policy "inbound" {
  plugins = ["eicar", "attachment-guard", "external-tag"]
}
HCL
}
write_config "[EXTERNAL] "
"$work/postern" run -config "$work/postern.hcl" 2> "$work/postern.log" & pids+=($!)
postern_pid=$!

cat > "$work/prometheus.yml" <<YML
global:
  scrape_interval: 2s
scrape_configs:
  - job_name: postern
    static_configs:
      - targets: ["127.0.0.1:8125"]
        labels: { instance: "mx1" }
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
	--web.listen-address=127.0.0.1:9099 2> "$work/prometheus.log" & pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:8125/readyz >/dev/null && curl -sf http://127.0.0.1:9099/-/ready >/dev/null && break; sleep 0.2; done

printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' > "$work/eicar.com"
end=$(( $(date +%s) + minutes * 60 ))
round=0
while [ "$(date +%s)" -lt "$end" ]; do
	round=$((round + 1))
	# Bulk: a varying number of parallel sessions of 10 KiB messages.
	smtp-source -s $(( 2 + round % 6 )) -m $(( 100 + (round % 5) * 60 )) -l 10240 -f bob@other.test \
		-t alice@example.com -S "report $round" 127.0.0.1:2625 || true
	swaks -S --server 127.0.0.1:2625 --from bob@other.test --to alice@example.com --attach @"$work/eicar.com" || true
	[ $((round % 3)) -eq 0 ] && swaks -S --server 127.0.0.1:2625 --from bob@other.test --to alice@example.com --header "Subject: hold" || true
	[ $((round % 4)) -eq 0 ] && swaks -S --server 127.0.0.1:2625 --from bob@other.test --to alice@example.com --header "Subject: slow" || true
	[ $((round % 2)) -eq 0 ] && swaks -S --server 127.0.0.1:2627 --from bob@other.test --to alice@example.com || true
	if [ "$round" -eq 6 ]; then echo 'policy {' >> "$work/postern.hcl"; kill -HUP "$postern_pid"; sleep 1; fi
	if [ "$round" -eq 9 ]; then write_config "[EXT] "; kill -HUP "$postern_pid"; fi
	sleep 1
done
sleep 4 # one more scrape

"$work/render" -prometheus http://127.0.0.1:9099 -dashboard dist/grafana/postern.json -out "$work/dashboard.html" \
	-range "${minutes}m" -step 5s -rate-interval 30s \
	-note "Drawn from a real Prometheus scraping postern run every 2 s under smtp-source load (dist/grafana/render.sh, $(date -u +%Y-%m-%d))"
mkdir -p docs/img
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
	--disable-component-update --disable-sync --user-data-dir="$work/chromium" --hide-scrollbars \
	--window-size=1600,1720 --screenshot="$root/docs/img/dashboard.png" "file://$work/dashboard.html"
echo "wrote docs/img/dashboard.png (work files in $work)"
