#!/bin/sh
# short-run.sh: a bounded real fuzzing run of every target (TAP), for
# `make fuzz-short` and, when wanted, `make check`
# (make check FUZZ_SHORT_TEST=tests/fuzz/short-run.sh).
#
# In a --enable-fuzzing build it fuzzes that build's targets.  Otherwise it
# configures a clang tree of its own
# (FUZZ_BUILD_DIR, default tests/fuzz/clang-build in the build tree;
# CC=${FUZZ_CC:-clang} --enable-fuzzing --disable-werror: warnings are the
# gcc build's business), builds only the fuzz targets and what they link,
# and runs `make fuzz` there.  Each target gets FUZZ_SHORT_SECONDS
# (default 10), FUZZ_JOBS (default 1) at a time; any crash, leak or
# sanitizer report fails.  Without clang and its libFuzzer runtime the
# whole test is skipped.

set -u
: "${top_srcdir:?}" "${top_builddir:?}"
secs=${FUZZ_SHORT_SECONDS:-10}
cc=${FUZZ_CC:-clang}
t0=$(date +%s)

# Is this build a --enable-fuzzing one?  (local.mk says so in the Makefile.)
if [ -z "${FUZZ_IN_TREE:-}" ]; then
	FUZZ_IN_TREE=no
	grep -q '^FUZZ_IN_TREE = yes' "$top_builddir/Makefile" 2>/dev/null &&
	    FUZZ_IN_TREE=yes
fi
if [ "$FUZZ_IN_TREE" = yes ]; then
	build=$top_builddir
else
	build=${FUZZ_BUILD_DIR:-$top_builddir/tests/fuzz/clang-build}
	probe=$(mktemp -d "${TMPDIR:-/tmp}/parley-fuzzprobe.XXXXXX") || exit 1
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
	    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
	    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return (int)(d[0] * 0 + n * 0); }' \
	    > "$probe/p.c"
	if ! "$cc" -fsanitize=fuzzer,address,undefined -o "$probe/p" \
	    "$probe/p.c" > /dev/null 2>&1; then
		rm -rf "$probe"
		echo "1..0 # SKIP $cc with libFuzzer is not available (Debian: clang libclang-rt-14-dev)"
		exit 0
	fi
	rm -rf "$probe"
	mkdir -p "$build" || exit 1
	if [ ! -f "$build/Makefile" ]; then
		if ! (cd "$build" && "$top_srcdir/configure" CC="$cc" \
		    --enable-fuzzing --disable-werror) > "$build/configure.out" 2>&1; then
			echo "1..1"
			echo "not ok 1 - configure $build (see $build/configure.out)"
			exit 1
		fi
	fi
	if ! make -C "$build" -j"${FUZZ_MAKE_JOBS:-2}" fuzz-programs \
	    > "$build/build.out" 2>&1; then
		echo "1..1"
		echo "not ok 1 - build in $build (see $build/build.out)"
		tail -n 20 "$build/build.out" | sed 's/^/# /'
		exit 1
	fi
fi
t1=$(date +%s)

make -s --no-print-directory -C "$build" fuzz FUZZ_SECONDS="$secs" \
    FUZZ_JOBS="${FUZZ_JOBS:-1}"
rc=$?
echo "# fuzz-short: build $((t1 - t0))s, fuzzing $(($(date +%s) - t1))s, total $(($(date +%s) - t0))s"
exit $rc
