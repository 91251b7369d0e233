# Quick start on a fresh Debian 12 machine:  make run   |   make test
# Every target installs the Debian packages it needs first (idempotent).

CXX_CLANG ?= clang++-19
JOBS      ?= $(shell nproc)
comma     := ,
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

BUILD_PKGS := clang-19 libclang-rt-19-dev g++ libasio-dev libboost1.81-dev \
              nlohmann-json3-dev doctest-dev libspdlog-dev redis-tools meson ninja-build cmake pkg-config python3 \
              erlang-nox
BENCH_PKGS := erlang-nox libcaf-dev redis-server

# Installs whatever of the given packages is missing; `apt-get update` only when needed.
define ensure_pkgs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

.PHONY: all deps bench-deps build run test test-asan test-tsan test-gcc test-all fuzz bench clean

all: build

deps:
	$(call ensure_pkgs,$(BUILD_PKGS))

bench-deps: deps
	$(call ensure_pkgs,$(BENCH_PKGS))

# $(1) = build dir, $(2) = compiler, $(3) = extra meson options, $(4) = targets (default: all)
define meson_build
	@[ -f $(1)/build.ninja ] || CXX=$(2) meson setup $(1) $(3)
	ninja -C $(1) -j $(JOBS) $(4)
endef

build: deps
	$(call meson_build,build,$(CXX_CLANG),)

# The flagship: a Redis-speaking key-value server on 127.0.0.1:6380 (Ctrl-C
# stops it); only its own target is built. Options go in ARGS, e.g.
#   make run ARGS="--port 7000 --data ./data"
run: deps
	$(call meson_build,build,$(CXX_CLANG),,samples/kvstore/kvstore)
	./build/samples/kvstore/kvstore $(ARGS)

test: build
	meson test -C build --print-errorlogs

test-asan: deps
	$(call meson_build,build-asan,$(CXX_CLANG),-Db_sanitize=address$(comma)undefined -Db_lundef=false -Dbench=disabled)
	ASAN_OPTIONS=detect_leaks=1 meson test -C build-asan --print-errorlogs

test-tsan: deps
	$(call meson_build,build-tsan,$(CXX_CLANG),-Db_sanitize=thread -Db_lundef=false -Dbench=disabled)
	meson test -C build-tsan --print-errorlogs

test-gcc: deps
	$(call meson_build,build-gcc,g++,-Dbench=disabled)
	meson test -C build-gcc --print-errorlogs

test-all: test test-asan test-tsan test-gcc

# libFuzzer on the JSON application loader (tests/fuzz/): fails on any crash.
FUZZ_SECONDS ?= 60
fuzz: deps
	CXX_CLANG=$(CXX_CLANG) tests/fuzz/run.sh $(FUZZ_SECONDS) build-fuzz $(JOBS)

bench: bench-deps
	@[ ! -f build-release/build.ninja ] || meson configure build-release -Dsamples=enabled
	$(call meson_build,build-release,$(CXX_CLANG),--buildtype=release -Dtests=disabled)
	python3 bench/run.py --otp-bin build-release/bench/otp_bench
	python3 bench/scaling.py --otp-bin build-release/bench/otp_bench
	python3 bench/redis_bench.py --kvstore build-release/samples/kvstore/kvstore
	python3 bench/kvstore_memory.py --kvstore build-release/samples/kvstore/kvstore
	python3 bench/table.py --update README.md --chart docs/bench-chart.svg

clean:
	rm -rf build build-asan build-tsan build-gcc build-release build-bench build-fuzz
