package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"

	"github.com/postern/postern/proxy/config"
	"github.com/postern/postern/proxy/guestprof"
	"github.com/postern/postern/proxy/message"
	"github.com/postern/postern/proxy/pluginhost"
	"github.com/postern/postern/proxy/policy"
)

func init() {
	register(command{
		name:    "plugin test",
		summary: "run one plugin on one message and print its verdict as JSON",
		run:     runPluginTest,
	})
}

// pluginTestOutput is the JSON printed by `postern plugin test`. Its field names are a stable interface: plugin
// authors script against them.
type pluginTestOutput struct {
	Plugin     string            `json:"plugin"`
	SHA256     string            `json:"sha256"`
	Verdict    string            `json:"verdict"`
	Code       int               `json:"code"`
	Enhanced   string            `json:"enhanced"`
	Text       string            `json:"text"`
	Tags       map[string]string `json:"tags"`
	Score      float64           `json:"score"`
	Changes    []message.Change  `json:"changes"`
	Recipients []string          `json:"added_recipients,omitempty"`
	DurationUS int64             `json:"duration_us"`
	Logs       []logOutput       `json:"logs"`
	Defects    []string          `json:"defects,omitempty"`
	Error      string            `json:"error,omitempty"`
}

type logOutput struct {
	Level string `json:"level"`
	Text  string `json:"text"`
}

func runPluginTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern plugin test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern plugin test -plugin FILE.wasm [-config FILE.json] [flags] MESSAGE.eml|-")
		fmt.Fprintln(fs.Output(), "       postern plugin test -config POSTERN.hcl -plugin NAME [flags] MESSAGE.eml|-")
		fmt.Fprintln(fs.Output(), "\nRuns one plugin's message hook on one message and prints its verdict, tags, score, changes and")
		fmt.Fprintln(fs.Output(), "log as JSON. With a Postern configuration, NAME is one of its plugin blocks, run with that block's")
		fmt.Fprintln(fs.Output(), "module, configuration, grants and timeout, and the configuration's state_dir compilation cache.")
		fmt.Fprintln(fs.Output(), "Exit status: 0 the plugin ran, 1 it failed (or could not be loaded), 2 usage error.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	var (
		pluginPath = fs.String("plugin", "", "the plugin `FILE.wasm` to run, or a plugin block's name with a .hcl -config (required)")
		configPath = fs.String("config", "", "the plugin's configuration as a JSON `FILE` (default {}), or a Postern configuration (.hcl)")
		showDiff   = fs.Bool("diff", false, "also print a unified diff of the message before and after the changes")
		timeout    = fs.Duration("timeout", 2*time.Second, "time limit of the plugin call (default with a .hcl -config: the block's)")
		protocol   = fs.String("protocol", "test", "value of the protocol field")
		from       = fs.String("from", "", "envelope sender (MAIL FROM)")
		clientIP   = fs.String("client-ip", "", "client IP address")
		helo       = fs.String("helo", "", "client HELO name")
		user       = fs.String("user", "", "authenticated user")
		grants     = fs.String("grant", "", "comma-separated grants: clock, random (default with a .hcl -config: the block's)")
		cpuProfile = fs.String("cpuprofile", "", "write a pprof profile of the plugin's own functions (call timing) to `FILE`")
		repeat     = fs.Int("repeat", 1, "run the hook `N` times on the message (each with a fresh input), for -cpuprofile; the last call is printed")
	)
	cache := cacheFlag(fs)
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *pluginPath == "" || fs.NArg() != 1 || *repeat < 1 {
		fs.Usage()
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "postern plugin test: "+format+"\n", a...)
		return 1
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	raw, err := readMessage(fs.Arg(0))
	if err != nil {
		return fail("%v", err)
	}
	name := strings.TrimSuffix(filepath.Base(*pluginPath), ".wasm")
	var (
		wasm     []byte
		cfgJSON  []byte
		g        pluginhost.Grants
		memory   uint32 // 0: the host's default
		cacheDir = cache.dirFor(nil)
	)
	if strings.HasSuffix(*configPath, ".hcl") {
		cfg, err := config.Load(*configPath)
		if err != nil {
			return reportConfigError(stderr, err)
		}
		p := cfg.Plugin(*pluginPath)
		if p == nil {
			names := make([]string, len(cfg.Plugins))
			for i, p := range cfg.Plugins {
				names[i] = p.Name
			}
			return fail("%s has no plugin %q (it has: %s)", *configPath, *pluginPath, strings.Join(names, ", "))
		}
		pc, err := policy.PluginConfig(p)
		if err != nil {
			return fail("%v", err)
		}
		name, wasm, cfgJSON, g, memory, cacheDir = p.Name, p.Wasm, p.Config, pc.Grants, pc.Memory, cache.dirFor(cfg)
		if !given["timeout"] && pc.Timeout > 0 {
			*timeout = pc.Timeout
		}
	} else {
		if wasm, err = os.ReadFile(*pluginPath); err != nil {
			return fail("reading plugin: %v", err)
		}
		if *configPath != "" {
			if cfgJSON, err = os.ReadFile(*configPath); err != nil {
				return fail("reading plugin configuration: %v", err)
			}
			if !json.Valid(cfgJSON) {
				return fail("%s: not valid JSON", *configPath)
			}
		}
	}
	if given["grant"] {
		g = pluginhost.Grants{}
	}
	for _, name := range strings.Split(*grants, ",") {
		switch strings.TrimSpace(name) {
		case "":
		case "clock":
			g.Clock = true
		case "random":
			g.Random = true
		default:
			return fail("unknown grant %q (want clock or random)", name)
		}
	}

	msg, err := message.Parse(bytes.NewReader(raw), int64(len(raw)), message.DefaultLimits())
	if err != nil {
		return fail("parsing message: %v", err)
	}

	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var prof *guestprof.Profiler
	if *cpuProfile != "" {
		prof = guestprof.New()
	}
	host, err := pluginhost.NewHost(ctx, pluginhost.Options{CacheDir: cacheDir, Logger: logger, Profiler: prof})
	if err != nil {
		return fail("%v", err)
	}
	defer host.Close(ctx)
	plugin, err := host.Load(ctx, pluginhost.Config{
		Name:     name,
		Wasm:     wasm,
		Config:   cfgJSON,
		Memory:   memory,
		Timeout:  *timeout,
		PoolSize: 1,
		Grants:   g,
	})
	if err != nil {
		return fail("%v", err)
	}
	if !plugin.Hooks().Has(pluginhost.HookMessage) {
		return fail("plugin %q does not implement the message hook", name)
	}

	env := pluginhost.Envelope{
		Protocol:    *protocol,
		Listener:    "plugin-test",
		ClientIP:    *clientIP,
		HELO:        *helo,
		AuthUser:    *user,
		MailFrom:    *from,
		HasMailFrom: true,
		Rcpts:       rcpts,
	}
	var res *pluginhost.Result
	for range *repeat {
		res = plugin.Call(ctx, pluginhost.HookMessage, &pluginhost.Input{Env: env, Msg: msg})
	}
	if prof != nil {
		if err := writeProfile(*cpuProfile, prof); err != nil {
			return fail("%v", err)
		}
	}

	out := pluginTestOutput{
		Plugin:     name,
		SHA256:     plugin.SHA256(),
		Verdict:    res.Verdict.Kind.String(),
		Code:       res.Verdict.Code,
		Enhanced:   res.Verdict.Enhanced,
		Text:       res.Verdict.Text,
		Tags:       res.Tags,
		Score:      res.Score,
		Changes:    res.Changes.List(),
		Recipients: res.Changes.Recipients(),
		DurationUS: res.Duration.Microseconds(),
		Logs:       []logOutput{},
	}
	if out.Tags == nil {
		out.Tags = map[string]string{}
	}
	if out.Changes == nil {
		out.Changes = []message.Change{}
	}
	for _, l := range res.Logs {
		out.Logs = append(out.Logs, logOutput{Level: strings.ToLower(l.Level.String()), Text: l.Text})
	}
	for _, d := range msg.Defects() {
		out.Defects = append(out.Defects, d.String())
	}
	if res.Err != nil {
		out.Error = res.Err.Error()
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return fail("writing output: %v", err)
	}
	if *showDiff {
		var after bytes.Buffer
		if _, err := msg.WriteTo(&after, res.Changes); err != nil {
			return fail("applying changes: %v", err)
		}
		diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A:        difflib.SplitLines(string(raw)),
			B:        difflib.SplitLines(after.String()),
			FromFile: "before",
			ToFile:   "after",
			Context:  3,
		})
		if err != nil {
			return fail("diff: %v", err)
		}
		if diff == "" {
			diff = "(no changes)\n"
		}
		fmt.Fprint(stdout, diff)
	}
	if res.Err != nil {
		// The verdict above is the on_error outcome; a plugin that fails on a message is a broken plugin, and the
		// author's script should notice.
		fmt.Fprintf(stderr, "postern plugin test: %v\n", res.Err)
		return 1
	}
	return 0
}

// writeProfile writes the guest profile to path.
func writeProfile(path string, prof *guestprof.Profiler) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the profile: %w", err)
	}
	if _, err := prof.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("writing the profile to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the profile to %s: %w", path, err)
	}
	return nil
}

// stdin is where a message named "-" is read from (a variable so that tests can feed it).
var stdin io.Reader = os.Stdin

// readMessage reads a message file, or standard input for "-".
func readMessage(path string) ([]byte, error) {
	if path == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading message from standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading message: %w", err)
	}
	return b, nil
}

// defaultCacheDir is where compiled plugins are cached between runs: compiling a Go plugin takes about a second,
// loading it from the cache tens of milliseconds.
func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "postern", "wazero")
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*s = append(*s, v)
	return nil
}
