// Package metrics is Postern's Prometheus instrumentation: one registry for the whole process, the metrics the
// shared seams of the proxy update (the listener's accept loop, the mail pipeline's outcomes, the upstream dial,
// the plugin host, the policy engine, the audit log, configuration reloads), and the handler that serves them at
// /metrics on the admin listener.
//
// The hooks are package functions so that each seam stays one line: a front end that uses the shared seams gets
// its metrics without code of its own. Label values are bounded by the configuration (listener, plugin and policy
// names) or by fixed sets (protocol, hook, action, reply class, error kind): never a sender, recipient, address or
// message id. Every metric is listed in docs/METRICS.md.
package metrics

import (
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "postern"

// Registry holds every Postern metric, and the Go runtime's and the process's.
var Registry = prometheus.NewRegistry()

// Handler serves Registry in the Prometheus text (or OpenMetrics) format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry, EnableOpenMetrics: true,
		MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// Durations of a plugin call, a policy evaluation or an audit append: from 50 µs (a native-speed hook) to 10 s
// (past any sensible timeout).
var latencyBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

var (
	sessionsOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "sessions_open",
		Help: "Client sessions open now."}, []string{"listener", "protocol"})
	sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "sessions_total",
		Help: "Client connections accepted, including those refused."}, []string{"listener", "protocol"})
	sessionsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "sessions_refused_total",
		Help: "Client connections refused, by reason: sessions (the listener's session limit), client_sessions (the " +
			"per-client session limit), client_rate (the per-client connection rate), shutting_down, proxy_header " +
			"(a missing or bad PROXY header, or a source not trusted to send one)."},
		[]string{"listener", "protocol", "reason"})
	commandsThrottled = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "commands_throttled_total",
		Help: "Client commands past limits.command_rate: delayed (IMAP) or refused, ending the session (POP3)."},
		[]string{"listener", "protocol"})
	clientBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "client_bytes_total",
		Help: "Bytes read from (in) and written to (out) client connections, TLS records included."},
		[]string{"listener", "protocol", "direction"})

	messages = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "messages_total",
		Help: "Messages the pipeline finished, by the hook that decided and the final action (an action that " +
			"could not be carried out counts as tempfail)."}, []string{"listener", "protocol", "hook", "action"})
	stageDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "stage_decisions_total",
		Help: "Recorded decisions at the login and envelope stages (refusals, discards), by hook and action."},
		[]string{"listener", "protocol", "hook", "action"})
	replies = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "replies_total",
		Help: "Replies the clients got to a message or a recorded stage decision, by class: 2xx, 4xx, 5xx (SMTP), " +
			"+OK, -ERR (POP3), OK, NO, BAD, BYE (IMAP), none (the session ended first)."},
		[]string{"listener", "protocol", "class"})

	upstreamDialErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "upstream_dial_errors_total",
		Help: "Connections to the upstream that failed (the connect or a TLS handshake from the first byte)."},
		[]string{"listener", "protocol"})
	upstreamDials = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "upstream_dials_total", Help: "Connections to the upstream attempted."},
		[]string{"listener", "protocol"})
	upstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "upstream_errors_total",
		Help: "Upstream sessions that failed after the connect: the greeting or a reply was an error the session " +
			"cannot go on from, or the connection broke."}, []string{"listener", "protocol"})

	pluginCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "plugin_calls_total",
		Help: "Hook calls of each plugin (failed ones included)."}, []string{"plugin", "hook"})
	pluginErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "plugin_errors_total",
		Help: "Failed plugin calls, by kind: trap, memory (a trap at the memory limit), timeout, bad_result (the " +
			"hook returned an error, broke a budget or passed a bad pointer), busy (no free instance), canceled, " +
			"closed, instance (a new instance could not be made)."}, []string{"plugin", "kind"})
	pluginDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace,
		Name: "plugin_call_duration_seconds", Help: "Duration of plugin hook calls, waiting for an instance included.",
		Buckets: latencyBuckets}, []string{"plugin"})
	pluginPoolWaits = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace,
		Name: "plugin_pool_waits_total",
		Help: "Calls that found no idle instance and the pool at its size, and had to wait."}, []string{"plugin"})

	policyDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace,
		Name: "policy_evaluation_duration_seconds", Help: "Duration of a policy evaluation at one hook, plugins included.",
		Buckets: latencyBuckets}, []string{"hook"})

	auditDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace,
		Name: "audit_append_duration_seconds", Help: "Duration of an audit append (to disk when durable).",
		Buckets: latencyBuckets})
	auditFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace,
		Name: "audit_append_failures_total", Help: "Audit records that could not be written."})

	reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "config_reloads_total",
		Help: "Configuration reloads, by result: success (unchanged included) or refused."}, []string{"result"})
	reloadSuccessTime = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace,
		Name: "config_last_reload_success_timestamp_seconds",
		Help: "When the serving configuration was loaded (at start or by the last successful reload)."})
	configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "config_info",
		Help: "The serving configuration: 1 for its sha256."}, []string{"sha256"})

	buildInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "build_info",
		Help: "The running build: 1 for its version, commit and Go version."},
		[]string{"version", "commit", "goversion"})
)

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		sessionsOpen, sessionsTotal, sessionsRefused, clientBytes,
		messages, stageDecisions, replies,
		upstreamDials, upstreamDialErrors, upstreamErrors, commandsThrottled,
		pluginCalls, pluginErrors, pluginDuration, pluginPoolWaits, pools,
		policyDuration, auditDuration, auditFailures,
		reloads, reloadSuccessTime, configInfo, buildInfo, quarantine)
}

// SetBuild publishes the build information.
func SetBuild(version, commit string) {
	buildInfo.Reset()
	buildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
}

// Listener is the metrics of one listener's sessions, as its accept loop updates them; NewListener makes one.
// Its children are looked up once, so that counting a connection or its bytes costs an atomic add.
type Listener struct {
	open                         prometheus.Gauge
	total                        prometheus.Counter
	in, out                      prometheus.Counter
	busy, clientBusy, clientRate prometheus.Counter
	shuttingDown, proxyHeader    prometheus.Counter
}

// NewListener returns the session metrics of the listener name speaking protocol.
func NewListener(name, protocol string) *Listener {
	refused := func(reason string) prometheus.Counter { return sessionsRefused.WithLabelValues(name, protocol, reason) }
	return &Listener{
		open: sessionsOpen.WithLabelValues(name, protocol), total: sessionsTotal.WithLabelValues(name, protocol),
		in: clientBytes.WithLabelValues(name, protocol, "in"), out: clientBytes.WithLabelValues(name, protocol, "out"),
		busy: refused("sessions"), clientBusy: refused("client_sessions"), clientRate: refused("client_rate"),
		shuttingDown: refused("shutting_down"), proxyHeader: refused("proxy_header"),
	}
}

// Accepted counts a connection accepted and open.
func (l *Listener) Accepted() {
	l.total.Inc()
	l.open.Inc()
}

// Closed counts a connection closed.
func (l *Listener) Closed() { l.open.Dec() }

// Refusal reasons of Listener.Refused.
const (
	RefusedSessions       = "sessions"
	RefusedClientSessions = "client_sessions"
	RefusedClientRate     = "client_rate"
	RefusedShuttingDown   = "shutting_down"
	RefusedProxyHeader    = "proxy_header"
)

// Refused counts a connection refused for reason (one of the Refused* constants).
func (l *Listener) Refused(reason string) {
	switch reason {
	case RefusedSessions:
		l.busy.Inc()
	case RefusedClientSessions:
		l.clientBusy.Inc()
	case RefusedClientRate:
		l.clientRate.Inc()
	case RefusedShuttingDown:
		l.shuttingDown.Inc()
	default:
		l.proxyHeader.Inc()
	}
}

// BytesIn counts bytes read from a client.
func (l *Listener) BytesIn(n int) { l.in.Add(float64(n)) }

// BytesOut counts bytes written to a client.
func (l *Listener) BytesOut(n int) { l.out.Add(float64(n)) }

// Message counts a message the pipeline finished, and the reply class the client got.
func Message(listener, protocol, hook, action, replyClass string) {
	messages.WithLabelValues(listener, protocol, hook, action).Inc()
	replies.WithLabelValues(listener, protocol, replyClass).Inc()
}

// StageDecision counts a recorded decision at a login or envelope stage, and the reply class the client got.
func StageDecision(listener, protocol, hook, action, replyClass string) {
	stageDecisions.WithLabelValues(listener, protocol, hook, action).Inc()
	replies.WithLabelValues(listener, protocol, replyClass).Inc()
}

// ReplyClass is the class of a reply for replies_total: "2xx", "4xx" or "5xx" for an SMTP code, the status for
// POP3 and IMAP, "none" when the client got no reply.
func ReplyClass(status string, code int) string {
	switch {
	case status != "":
		switch status {
		case "+OK", "-ERR", "OK", "NO", "BAD", "BYE":
			return status
		}
		return "other"
	case code >= 200 && code < 600:
		return [...]string{"2xx", "3xx", "4xx", "5xx"}[code/100-2]
	case code == 0:
		return "none"
	}
	return "other"
}

// Throttled counts a client command past the listener's command rate.
func Throttled(listener, protocol string) {
	commandsThrottled.WithLabelValues(listener, protocol).Inc()
}

// UpstreamDial counts a connection to the upstream attempted, and its failure when err is not nil.
func UpstreamDial(listener, protocol string, err error) {
	upstreamDials.WithLabelValues(listener, protocol).Inc()
	if err != nil {
		upstreamDialErrors.WithLabelValues(listener, protocol).Inc()
	}
}

// UpstreamError counts an upstream session that failed after the connect.
func UpstreamError(listener, protocol string) {
	upstreamErrors.WithLabelValues(listener, protocol).Inc()
}

// Kinds of plugin errors (plugin_errors_total's kind).
const (
	KindTrap      = "trap"
	KindMemory    = "memory"
	KindTimeout   = "timeout"
	KindBadResult = "bad_result"
	KindBusy      = "busy"
	KindCanceled  = "canceled"
	KindClosed    = "closed"
	KindInstance  = "instance"
)

// PluginCall counts a hook call of plugin that took d; kind is "" for a call that succeeded, or one of the Kind*
// constants.
func PluginCall(plugin, hook string, d time.Duration, kind string) {
	pluginCalls.WithLabelValues(plugin, hook).Inc()
	pluginDuration.WithLabelValues(plugin).Observe(d.Seconds())
	if kind != "" {
		pluginErrors.WithLabelValues(plugin, kind).Inc()
	}
}

// PluginPoolWait counts a call that had to wait for an instance of plugin.
func PluginPoolWait(plugin string) { pluginPoolWaits.WithLabelValues(plugin).Inc() }

// PolicyEvaluation observes the duration of an evaluation at hook.
func PolicyEvaluation(hook string, d time.Duration) {
	policyDuration.WithLabelValues(hook).Observe(d.Seconds())
}

// AuditAppend observes an audit append that took d, and counts it as failed when err is not nil.
func AuditAppend(d time.Duration, err error) {
	auditDuration.Observe(d.Seconds())
	if err != nil {
		auditFailures.Inc()
	}
}

// Reload results of ConfigReload.
const (
	ReloadSuccess = "success"
	ReloadRefused = "refused"
)

// ConfigLoaded publishes the serving configuration's sha256 (at start and after each successful reload).
func ConfigLoaded(sha256 string) {
	configInfo.Reset()
	configInfo.WithLabelValues(sha256).Set(1)
	reloadSuccessTime.SetToCurrentTime()
}

// ConfigReload counts a reload: err nil is a success.
func ConfigReload(err error) {
	if err != nil {
		reloads.WithLabelValues(ReloadRefused).Inc()
		return
	}
	reloads.WithLabelValues(ReloadSuccess).Inc()
}

func init() {
	// Both results are there from the start, so a rate() over them works before the first reload.
	reloads.WithLabelValues(ReloadSuccess)
	reloads.WithLabelValues(ReloadRefused)
}

// poolCollector reports the instance pools of the loaded plugins. Two configurations (the one serving and an
// older one whose last sessions are ending) may each have a plugin of the same name: their pools are added up.
type poolCollector struct {
	mu    sync.Mutex
	pools map[*Pool]struct{}
	live  *prometheus.Desc
	idle  *prometheus.Desc
}

// Pool is one plugin's instance pool, as RegisterPool registered it.
type Pool struct {
	name  string
	stats func() (live, idle int)
}

var pools = &poolCollector{pools: map[*Pool]struct{}{},
	live: prometheus.NewDesc(namespace+"_plugin_pool_instances",
		"Instances of each plugin that exist (idle, busy or being made).", []string{"plugin"}, nil),
	idle: prometheus.NewDesc(namespace+"_plugin_pool_idle_instances",
		"Instances of each plugin ready in its pool.", []string{"plugin"}, nil)}

// RegisterPool makes the pool of plugin name visible; stats is called at each scrape. Unregister it when the
// plugin is closed.
func RegisterPool(name string, stats func() (live, idle int)) *Pool {
	p := &Pool{name: name, stats: stats}
	pools.mu.Lock()
	pools.pools[p] = struct{}{}
	pools.mu.Unlock()
	return p
}

// Unregister removes the pool.
func (p *Pool) Unregister() {
	if p == nil {
		return
	}
	pools.mu.Lock()
	delete(pools.pools, p)
	pools.mu.Unlock()
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.live
	ch <- c.idle
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	live, idle := map[string]int{}, map[string]int{}
	for p := range c.pools {
		l, i := p.stats()
		live[p.name] += l
		idle[p.name] += i
	}
	c.mu.Unlock()
	for name, n := range live {
		ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(n), name)
		ch <- prometheus.MustNewConstMetric(c.idle, prometheus.GaugeValue, float64(idle[name]), name)
	}
}

// QuarantineStats reports what the quarantine holds: messages and bytes.
type QuarantineStats func() (messages, bytes int64, err error)

type quarantineCollector struct {
	mu       sync.Mutex
	source   QuarantineStats
	messages *prometheus.Desc
	bytes    *prometheus.Desc
}

var quarantine = &quarantineCollector{
	messages: prometheus.NewDesc(namespace+"_quarantine_messages", "Messages held in the quarantine.", nil, nil),
	bytes:    prometheus.NewDesc(namespace+"_quarantine_bytes", "Bytes of the messages held in the quarantine.", nil, nil),
}

// SetQuarantine sets what reports the quarantine's contents at each scrape; nil removes it (the metrics are then
// absent).
func SetQuarantine(f QuarantineStats) {
	quarantine.mu.Lock()
	quarantine.source = f
	quarantine.mu.Unlock()
}

func (c *quarantineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.bytes
}

func (c *quarantineCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	f := c.source
	c.mu.Unlock()
	if f == nil {
		return
	}
	n, b, err := f()
	if err != nil {
		// Left out rather than failing the whole scrape; the store logs its own errors.
		return
	}
	ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(b))
}
