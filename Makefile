# A thin wrapper over meson, so that the two everyday commands are short:
#   make run    build and start petrel in the foreground on localhost:11211
#   make test   build and run every test: unit + integration, then ASan/UBSan, TSan and fuzzing
# Dependencies: .ci/deps installs them on Debian 12.

MESON_SETUP := meson setup --wrap-mode=nodownload -Dwerror=true
SERVER      := build/src/bin/petrel
SERVER_ARGS := -l localhost

.PHONY: all build run test test-main test-asan test-tsan test-fuzz clean

all: build

build:
	@test -f build/build.ninja || $(MESON_SETUP) build
	meson compile -C build

run: build
	exec $(SERVER) $(SERVER_ARGS)

test: test-main test-asan test-tsan test-fuzz
	@/usr/bin/python3 tests/summary.py build build-asan build-tsan build-fuzz

test-main: build
	meson test -C build --print-errorlogs --suite unit --suite integration --suite style || true

# Unit tests, and the integration tests against the servers built the same way, under
# AddressSanitizer + UndefinedBehaviorSanitizer (jemalloc off: it would hide allocations from
# ASan).
test-asan:
	@test -f build-asan/build.ninja || $(MESON_SETUP) -Db_sanitize=address,undefined \
		-Djemalloc=disabled build-asan
	meson compile -C build-asan
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C build-asan --print-errorlogs --suite unit --suite integration || true

# The multi-threaded tests under ThreadSanitizer. clang, because gcc's TSan refuses the
# atomic_thread_fence() that the wakeup protocol relies on.
test-tsan:
	@test -f build-tsan/build.ninja || CC=clang $(MESON_SETUP) -Db_sanitize=thread \
		-Djemalloc=disabled -Db_lundef=false build-tsan
	meson compile -C build-tsan
	TSAN_OPTIONS="halt_on_error=1 abort_on_error=1" meson test -C build-tsan --print-errorlogs --suite threads || true

# libFuzzer targets, built with clang, each run for a bounded time.
test-fuzz:
	@test -f build-fuzz/build.ninja || CC=clang $(MESON_SETUP) -Dfuzz=true -Djemalloc=disabled \
		-Db_lundef=false build-fuzz
	meson compile -C build-fuzz
	meson test -C build-fuzz --print-errorlogs --suite fuzz || true

clean:
	rm -rf build build-asan build-tsan build-fuzz
