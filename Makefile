# probe: build, test, demo. Run as root for the kernel and testbed parts.
GO      ?= go
BIN     := bin

.PHONY: all build man test demo generate vmlinux check-generate lint clean bench-capacity bench-echo bench-tcp bench-sched bench-quic vm-box vm-up vm-test vm-shape vm-down bench-monitor bench-load

all: build

# The commit for probe --version, where the toolchain does not stamp it.
COMMIT  := $(shell git describe --always --dirty 2>/dev/null)

build:
	$(GO) build -ldflags "-X main.stampedCommit=$(COMMIT)" -o $(BIN)/probe ./cmd/probe
	$(GO) build -o $(BIN)/estimate ./cmd/estimate

# The man page, made from the command definitions.
man: build
	$(BIN)/probe man > docs/probe.1

# The one test command: README and .ci/run both use it. Tests that need root
# or a kernel feature say why when they skip.
test:
	GO=$(GO) ./scripts/test.sh

# Build, bring up a two-namespace testbed shaped to 20 Mbit/s, run the agent in
# one namespace, measure from the other, tear down.
demo: build
	./scripts/demo.sh

# Rebuild the eBPF objects from bpf/*.c (needs clang-16, llvm-16, libbpf-dev).
generate:
	cd bpf && $(GO) generate

# Regenerate bpf/headers/vmlinux.h from the running kernel's BTF (bpftool).
vmlinux:
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/headers/vmlinux.h

# Fails when the committed objects do not match their sources.
check-generate: generate
	git diff --exit-code --stat -- bpf/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

clean:
	rm -rf $(BIN)

# The capacity benchmark: one table of estimates against the testbed's truth.
bench-capacity: build
	$(GO) run ./bench/capacity

# The UDP echo benchmark: probe against irtt, sockperf and iperf3 on loopback.
bench-echo: build
	$(GO) run ./bench/echo

# The TCP benchmark: probe --mode tcp against iperf3 on loopback and the testbed.
bench-tcp: build
	$(GO) run ./bench/tcp

# The QUIC benchmark: --mode quic beside --mode tcp on loopback and the testbed.
bench-quic: build
	$(GO) run ./bench/quic

# What the scheduler tracer costs a context-switch-heavy workload.
bench-sched: build
	$(GO) run ./bench/sched

# The monitor: class rules on a namespace star, archive and page speed, /probe beside probe measure.
bench-monitor: build
	$(GO) run ./bench/monitor

# The multi-VM testbed (docs/vm.md): one server and PROBE_VM_CLIENTS (2)
# clients under Vagrant + libvirt, on an isolated network, shaped by netem
# from vm/paths.conf. Root. vm-down leaves nothing running or defined.
vm-box:
	./vm/build-box.sh

vm-up:
	./vm/up.sh

vm-test:
	./vm/test.sh

# Re-apply vm/paths.conf (or PATHS=file) to the running VMs.
vm-shape:
	./vm/shape.sh $(PATHS)

vm-down:
	./vm/down.sh

# The load and fault benchmark: one agent under many clients, killed clients
# and attacks; its RSS, descriptors and goroutines per row (root).
bench-load: build
	$(GO) run ./bench/load
