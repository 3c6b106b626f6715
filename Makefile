# Postern build. `make run` starts the proxy on the embedded default; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
BUILD := build
# Go plugins: every folder under plugins/ (and the SDK conformance kits) with a main.go.
GO_PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/main.go sdk/conformance/kit-go/main.go)))
# C plugins: every folder under plugins/ (and the C kit) with a .c file.
C_PLUGIN_DIRS := $(sort $(dir $(wildcard plugins/*/*.c sdk/conformance/kit-c/*.c)))
GO_PLUGINS := $(foreach d,$(GO_PLUGIN_DIRS),$(BUILD)/plugins/$(notdir $(d:/=)).wasm)
C_PLUGINS := $(foreach d,$(C_PLUGIN_DIRS),$(BUILD)/plugins/$(notdir $(d:/=)).wasm)

# C guests: clang from Debian with wasi-libc, built as WASI reactors (crt1-reactor.o: _initialize runs the C
# constructors, there is no _start). Hooks are exported by the SDK's export_name attributes, so a plugin exports only
# the hooks it defines; --export=postern_abi_version makes a forgotten POSTERN_ABI_VERSION a link error rather than a
# load-time refusal. --strip-all drops the name and producers sections (header-sanity: 33 KiB, not 125).
CLANG ?= clang
WASI_SYSROOT ?= /usr
C_FLAGS := --target=wasm32-wasi --sysroot=$(WASI_SYSROOT) -mexec-model=reactor -std=c11 -O2 \
	-Wall -Wextra -Werror -I sdk/c -Wl,--export=postern_abi_version -Wl,--strip-all

.PHONY: all build plugins run deps test test-unit lint bench clean c-plugin imaptest

all: build plugins

build: $(BUILD)/postern

# VERSION and COMMIT are what `postern version` prints: the checkout's tag (git describe; "(devel)" without one)
# and its commit, "+dirty" with uncommitted changes. They are linked in because the Go build information has no
# VCS stamp when -buildvcs is off (the postern binary falls back to it when these are empty).
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo +dirty)
LDFLAGS := $(if $(VERSION),-X main.version=$(VERSION)) $(if $(COMMIT),-X main.commit=$(COMMIT))

$(BUILD)/postern: FORCE
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $@ ./cmd/postern

plugins: $(GO_PLUGINS) $(C_PLUGINS)

$(BUILD)/plugins/%.wasm: FORCE
	@mkdir -p $(dir $@)
	@src=$$(for d in $(GO_PLUGIN_DIRS) $(C_PLUGIN_DIRS); do [ "$$(basename $$d)" = "$*" ] && echo $$d; done | head -1); \
	if ls $$src*.c >/dev/null 2>&1; then \
		echo "clang $$src -> $@"; $(MAKE) -s c-plugin SRC=$$src OUT=$@; \
	else \
		echo "go $$src -> $@"; (cd $$src && GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 $(GO) build -buildmode=c-shared -trimpath -o $(CURDIR)/$@ .); \
	fi

# c-plugin builds one C plugin from every .c file of a folder: make c-plugin SRC=plugins/x OUT=build/plugins/x.wasm
c-plugin:
	@test -n "$(OUT)" || { echo "c-plugin: set OUT=file.wasm" >&2; exit 2; }
	@test -n "$(wildcard $(SRC)/*.c)" || { echo "c-plugin: no .c files in SRC=$(SRC)" >&2; exit 2; }
	$(CLANG) $(C_FLAGS) -o $(OUT) $(wildcard $(SRC)/*.c)

# The demo needs only the Go plugins, so `make run` works with nothing but Go installed.
run: build $(GO_PLUGINS)
	$(BUILD)/postern run -config policies/demo.hcl

# deps installs the Debian packages the tests need (clang for the C plugins, the interop peers) when run as root,
# and otherwise names them.
deps:
	@.ci/deps

# imaptest: Dovecot's IMAP compliance and stress tester, built from the kit in test/imapinterop/imaptest (MIT, not
# packaged in Debian) into build/imaptest; the IMAP interop tests run it (IMAPTEST=build/imaptest/bin/imaptest).
imaptest: $(BUILD)/imaptest/bin/imaptest

$(BUILD)/imaptest/bin/imaptest:
	test/imapinterop/imaptest/build.sh $(CURDIR)/$(BUILD)/imaptest

# The Go SDK is a module of its own (sdk/postern/go.mod), which `go test ./...` at the root does not enter.
SDK_MODULE := sdk/postern

test: deps build plugins imaptest
	POSTERN_PLUGIN_DIR=$(CURDIR)/$(BUILD)/plugins IMAPTEST=$(CURDIR)/$(BUILD)/imaptest/bin/imaptest $(GO) test -count=1 ./...
	cd $(SDK_MODULE) && $(GO) test -count=1 ./...

lint:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))"
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd $(SDK_MODULE) && $(GO) vet ./... && GOOS=wasip1 GOARCH=wasm $(GO) vet ./...
	cd $(SDK_MODULE) && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: build plugins
	POSTERN_PLUGIN_DIR=$(CURDIR)/$(BUILD)/plugins $(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf $(BUILD)

FORCE:
