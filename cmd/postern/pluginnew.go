package main

import (
	"bytes"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

func init() {
	register(command{
		name:    "plugin new",
		summary: "write a ready-to-build plugin folder (Go or C) with a sample message and a test",
		run:     runPluginNew,
	})
}

// newPluginFiles are the templates of `postern plugin new`: newplugin/LANG/ and newplugin/common/, each file's
// name with .tmpl removed (gitignore becomes .gitignore; plugin.c becomes NAME.c).
//
//go:embed newplugin
var newPluginFiles embed.FS

// pluginName is what a plugin block's label and a .wasm file name can be: lower case, digits and dashes.
var pluginName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// newPluginData fills the templates.
type newPluginData struct {
	Name    string
	Dir     string // absolute path of the new folder
	SDK     string // absolute path of the checkout's sdk folder (holding postern/ and c/)
	Postern string // absolute path of this postern binary
	Go, C   bool
}

func runPluginNew(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("postern plugin new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: postern plugin new [-lang go|c] [-dir DIR] [-sdk DIR] NAME")
		fmt.Fprintln(fs.Output(), "\nWrites a plugin folder, anywhere: the source (tag a message whose subject mentions an overdue")
		fmt.Fprintln(fs.Output(), "invoice; in C, reject one whose subject has a configured word), a Makefile (`make` builds")
		fmt.Fprintln(fs.Output(), "NAME.wasm, `make test` runs it with `postern plugin test` on sample.eml), go.mod (Go) and a README.")
		fmt.Fprintln(fs.Output(), "The folder uses the SDK of the Postern checkout this binary was built in.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	var (
		lang = fs.String("lang", "go", "the plugin's language: go or c")
		dir  = fs.String("dir", "", "the folder to create (default: ./NAME); it must not exist or be empty")
		sdk  = fs.String("sdk", "", "the Postern checkout's sdk `DIR` (default: found beside this binary or above the current folder)")
	)
	// NAME may come first (postern plugin new NAME -lang c), as users of go and git expect.
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch {
	case name == "" && fs.NArg() == 1:
		name = fs.Arg(0)
	case name != "" && fs.NArg() == 0:
	default:
		fs.Usage()
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "postern plugin new: "+format+"\n", a...)
		return 1
	}
	if !pluginName.MatchString(name) {
		fmt.Fprintf(stderr, "postern plugin new: %q is not a plugin name (a lower-case letter, then letters, digits or dashes)\n", name)
		return 2
	}
	if *lang != "go" && *lang != "c" {
		fmt.Fprintf(stderr, "postern plugin new: -lang %q: want go or c\n", *lang)
		return 2
	}
	if *dir == "" {
		*dir = name
	}
	target, err := filepath.Abs(*dir)
	if err != nil {
		return fail("%v", err)
	}
	if entries, err := os.ReadDir(target); err == nil && len(entries) > 0 {
		return fail("%s exists and is not empty", target)
	}
	sdkDir := *sdk
	if sdkDir == "" {
		if sdkDir, err = findSDK(); err != nil {
			return fail("%v", err)
		}
	} else if sdkDir, err = checkSDK(sdkDir); err != nil {
		return fail("-sdk: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail("finding this binary: %v", err)
	}
	data := newPluginData{Name: name, Dir: target, SDK: sdkDir, Postern: self, Go: *lang == "go", C: *lang == "c"}
	files, err := renderPlugin(data, *lang)
	if err != nil {
		return fail("%v", err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fail("%v", err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(target, f.name), f.content, 0o644); err != nil {
			return fail("%v", err)
		}
	}
	rel := *dir
	fmt.Fprintf(stdout, "wrote a %s plugin in %s:\n", map[string]string{"go": "Go", "c": "C"}[*lang], target)
	for _, f := range files {
		fmt.Fprintf(stdout, "  %s\n", f.name)
	}
	fmt.Fprintf(stdout, "\nnext:\n  cd %s\n  make        # builds %s.wasm\n  make test   # runs it on sample.eml with postern plugin test\n", rel, name)
	return 0
}

type renderedFile struct {
	name    string
	content []byte
}

// renderPlugin fills the templates of lang and the common ones.
func renderPlugin(data newPluginData, lang string) ([]renderedFile, error) {
	var files []renderedFile
	for _, folder := range []string{"newplugin/" + lang, "newplugin/common"} {
		entries, err := fs.ReadDir(newPluginFiles, folder)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			src, err := fs.ReadFile(newPluginFiles, folder+"/"+e.Name())
			if err != nil {
				return nil, err
			}
			name := strings.TrimSuffix(e.Name(), ".tmpl")
			switch name {
			case "gitignore":
				name = ".gitignore"
			case "plugin.c":
				name = data.Name + ".c"
			}
			t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{"modpath": modPath}).Parse(string(src))
			if err != nil {
				return nil, fmt.Errorf("template %s: %w", e.Name(), err)
			}
			var b bytes.Buffer
			if err := t.Execute(&b, data); err != nil {
				return nil, fmt.Errorf("template %s: %w", e.Name(), err)
			}
			files = append(files, renderedFile{name, b.Bytes()})
		}
	}
	return files, nil
}

// modPath writes a path for go.mod, quoted when it holds spaces or quotes.
func modPath(p string) string {
	if strings.ContainsAny(p, " \t\"'`") {
		return strconv.Quote(p)
	}
	return p
}

// sdkModule is the first line of the Go SDK's go.mod that identifies a Postern checkout's sdk folder.
const sdkModule = "module github.com/postern/postern/sdk/postern"

// findSDK finds the sdk folder of the Postern checkout: beside this binary (build/postern in a checkout, as make
// builds it), else in the current folder or one above it.
func findSDK() (string, error) {
	var tried []string
	if self, err := os.Executable(); err == nil {
		if self, err = filepath.EvalSymlinks(self); err == nil {
			dir := filepath.Join(filepath.Dir(filepath.Dir(self)), "sdk")
			if sdk, err := checkSDK(dir); err == nil {
				return sdk, nil
			}
			tried = append(tried, dir)
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if sdk, err := checkSDK(filepath.Join(dir, "sdk")); err == nil {
				return sdk, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
		tried = append(tried, wd+" and the folders above it")
	}
	return "", fmt.Errorf("cannot find the Postern SDK (sdk/postern/go.mod) in %s; give -sdk DIR", strings.Join(tried, ", "))
}

// checkSDK returns the absolute path of dir if it is a Postern checkout's sdk folder.
func checkSDK(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(abs, "postern", "go.mod"))
	if err != nil {
		return "", err
	}
	if !bytes.Contains(mod, []byte(sdkModule+"\n")) {
		return "", errors.New(filepath.Join(abs, "postern", "go.mod") + " is not the Postern Go SDK's")
	}
	if _, err := os.Stat(filepath.Join(abs, "c", "postern.h")); err != nil {
		return "", err
	}
	return abs, nil
}
