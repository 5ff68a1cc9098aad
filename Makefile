# memkernel: the two commands a user needs are `make run` and `make test`.
# Every target installs what it is missing first (the pinned Rust toolchain, QEMU, OVMF).

FIRMWARE ?= bios
MEM      ?= 512M
CPUS     ?= 4
CMDLINE  ?=
TIMEOUT  ?= 3600
# NUMA: NODES=N splits MEM and CPUS evenly over N nodes (1 to 8); NUMA='1G:0-1,1G:2-3'
# writes the layout out (SIZE 0: a memory-less node; no :CPUS: a CPU-less node);
# NUMA_DIST='10,20;20,10' gives the distances (QEMU's SLIT). Empty: one node, no SRAT.
NODES    ?=
NUMA     ?=
NUMA_DIST ?=
# RAMDISK=1 boots the images with the ramdisk (the page cache's files, ~24 MiB of RAM).
RAMDISK  ?=
RAMDISK_ARG = $(if $(filter 1 yes on,$(RAMDISK)),--ramdisk)
NUMA_ARGS = $(if $(strip $(NODES)),--nodes '$(NODES)') $(if $(strip $(NUMA)),--numa '$(NUMA)') $(if $(strip $(NUMA_DIST)),--numa-dist '$(NUMA_DIST)')
# Console commands to run instead of the interactive console, `;`-separated:
# make run SCRIPT='frag; cat /proc/buddyinfo; compact; cat /proc/buddyinfo'
SCRIPT   ?=
# Where `make report` writes its transcript, PNGs and report.md, and the machine it boots.
REPORT_DIR  ?= target/report
REPORT_MEM  ?= 512M
REPORT_CPUS ?= 2
# The font the report's plots are drawn with (Debian: fonts-dejavu-core).
REPORT_FONT ?= /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

CARGO := cargo
BOOT  := $(CARGO) run --quiet -p boot --

# apt-get as root, through sudo otherwise.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup toolchain host-tools report-tools build run test test-host test-qemu cross bench gdb report clean

all: build

## setup: install the pinned toolchain and the QEMU/OVMF packages when missing
setup: toolchain host-tools

# rustup reads rust-toolchain.toml; auto-install is disabled on our machines, so do it here.
toolchain:
	@rustup toolchain install --no-self-update >/dev/null 2>&1 || rustup toolchain install

host-tools:
	@if ! command -v qemu-system-x86_64 >/dev/null 2>&1 || [ ! -f /usr/share/OVMF/OVMF_CODE_4M.fd ]; then \
		echo "installing qemu-system-x86 and ovmf"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq qemu-system-x86 ovmf >/dev/null; \
	fi

## build: the kernel, the BIOS and UEFI images and the host runner
build: setup
	$(CARGO) build -p boot

report-tools:
	@if [ ! -f "$(REPORT_FONT)" ]; then \
		echo "installing fonts-dejavu-core (the report's plots need a TrueType font)"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq fonts-dejavu-core >/dev/null; \
	fi

## run: boot the kernel in QEMU with serial on this terminal: the demo, then the serial
## console ('help' lists its commands, 'poweroff' quits); with SCRIPT='cmd; cmd', run those
## commands instead and power off; RAMDISK=1 attaches the ramdisk (cat /ramdisk/README)
run: build
ifeq ($(strip $(SCRIPT)),)
	$(BOOT) --firmware $(FIRMWARE) --mem $(MEM) --cpus $(CPUS) $(NUMA_ARGS) $(RAMDISK_ARG) --cmdline "$(CMDLINE)" --timeout $(TIMEOUT) --interactive
else
	$(BOOT) --firmware $(FIRMWARE) --mem $(MEM) --cpus $(CPUS) $(NUMA_ARGS) $(RAMDISK_ARG) --cmdline "$(CMDLINE)" --timeout $(TIMEOUT) --script "$(SCRIPT)"
endif

## test: host unit/property tests of every crate, the no_std cross builds, then the QEMU
## integration matrix (memkernel's suites, console scripts, the minimal example kernel)
test: setup
	@# Separate invocations: testing mm enables its `std` feature, which must not leak
	@# into the kernel build that `boot` triggers (cargo unifies features per invocation).
	@$(MAKE) --no-print-directory lint
	$(CARGO) test -p zonebuddy --all-features
	@# Init and every public entry point on a 32 KiB stack, in the release profile too.
	$(CARGO) test -p zonebuddy --all-features --release --test host small_stack
	$(CARGO) test -p console
	$(CARGO) test -p boot
	$(CARGO) test -p report
	@$(MAKE) --no-print-directory cross
	$(CARGO) test -p integration --test qemu -- --test-threads=2
	$(CARGO) test -p integration --test numa -- --test-threads=2
	$(CARGO) test -p integration --test script -- --test-threads=2
	$(CARGO) test -p integration --test example_kernel -- --test-threads=2

## lint: the style rules, enforced: rustfmt, clippy with every warning an error for the
## host crates and for the kernel and the example kernel on their target, and zonebuddy's
## rustdoc with every warning an error (the lints the
## crates' manifests set to deny: missing_docs, undocumented unsafe blocks, unsafe
## operations in unsafe fns)
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --quiet -p zonebuddy --all-features --all-targets -- -D warnings
	$(CARGO) clippy --quiet -p console -p boot -p report -p integration --all-targets -- -D warnings
	$(CARGO) clippy --quiet -p kernel -p minimal-kernel --target x86_64-unknown-none -- -D warnings
	RUSTDOCFLAGS=-Dwarnings $(CARGO) doc --quiet -p zonebuddy --no-deps --all-features

# The no_std targets zonebuddy must keep building for. x86_64-unknown-none has a prebuilt
# `core` (rust-toolchain.toml); the other two build theirs from rust-src (-Z build-std=core:
# the crate needs neither `alloc` nor `std`).
CROSS_TARGETS := x86_64-unknown-none aarch64-unknown-none riscv64gc-unknown-none-elf
# A target directory of their own, so -Dwarnings does not invalidate the host builds' cache.
CROSS_DIR := $(or $(CARGO_TARGET_DIR),target)/cross

## cross: build zonebuddy without `std` for the three no_std targets; a warning fails it
cross: setup
	@for t in $(CROSS_TARGETS); do \
		case $$t in x86_64-unknown-none) std= ;; *) std="-Z build-std=core" ;; esac; \
		echo "cross: zonebuddy for $$t"; \
		RUSTFLAGS=-Dwarnings $(CARGO) build --quiet -p zonebuddy --target $$t $$std \
			--target-dir $(CROSS_DIR) || exit 1; \
	done

## bench: figures, not tests (host benches, then the in-guest ones under TCG)
bench: build
	$(CARGO) bench -p zonebuddy --bench memmap
	$(CARGO) bench -p zonebuddy --bench page_alloc
	$(CARGO) bench -p zonebuddy --bench compaction
	$(CARGO) bench -p zonebuddy --bench llfree_workloads
	@echo "in-guest figures (BIOS, 1G, 4 CPUs, TCG):"
	@$(BOOT) --capture --firmware bios --mem 1G --cpus 4 --cmdline bench --timeout 900 2>&1 | grep -E '^bench:|kernel reported|error'

## gdb: start QEMU halted with a gdb stub; prints the gdb command that loads the symbols
gdb: build
	$(BOOT) --firmware $(FIRMWARE) --mem $(MEM) --cpus $(CPUS) --cmdline "$(CMDLINE)" --gdb

## report: boot a scripted console session (fragment, compact, let kcompactd work) and
## plot it: $(REPORT_DIR)/report.md with free_blocks.png, fragmentation.png, pageblock_map.png;
## then a second boot with the ramdisk reads it under memory pressure: reclaim.png
report: build report-tools
	REPORT_FONT="$(REPORT_FONT)" $(CARGO) run --quiet -p report -- --out $(REPORT_DIR) --mem $(REPORT_MEM) --cpus $(REPORT_CPUS)
	@echo "open $(REPORT_DIR)/report.md"

clean:
	$(CARGO) clean
