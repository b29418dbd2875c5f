#!/bin/sh
# corpus.sh: every fuzz target over its seed corpus (TAP, one line per
# target), in whatever build `make check` runs: the standalone driver in an
# ordinary build, libFuzzer (running the files, not fuzzing) in a
# --enable-fuzzing build; under the build's sanitizers either way.
#
# The targets are the tests/fuzz/fuzz_*.c files of the source tree, so a
# target whose program was not built fails here instead of going unseen.
# A target fails on a non-zero exit, a sanitizer report, a failed
# invariant, or an empty seed directory.

set -u
: "${top_srcdir:?}" "${top_builddir:?}"

bad='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|deadly signal|fuzz: invariant failed|==ERROR'
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export UBSAN_OPTIONS

names=
for src in "$top_srcdir"/tests/fuzz/fuzz_*.c; do
	name=${src##*/fuzz_}
	names="$names ${name%.c}"
done
set -- $names
echo "1..$#"

tmp=$(mktemp "${TMPDIR:-/tmp}/parley-corpus.XXXXXX") || exit 1
trap 'rm -f "$tmp"' EXIT
n=0
failed=0
for name; do
	n=$((n + 1))
	bin=$top_builddir/tests/fuzz/fuzz_$name
	seeds=$top_srcdir/tests/fuzz/corpus/$name
	if [ ! -x "$bin" ]; then
		echo "not ok $n - fuzz_$name: not built"
		failed=$((failed + 1))
		continue
	fi
	files=$(find "$seeds" -type f 2>/dev/null | LC_ALL=C sort)
	count=$(printf '%s\n' "$files" | grep -c .)
	if [ "$count" -eq 0 ]; then
		echo "not ok $n - fuzz_$name: no seeds in $seeds"
		failed=$((failed + 1))
		continue
	fi
	# The names hold no blanks (they are ours), so word splitting is safe.
	"$bin" $files > "$tmp" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && ! grep -Eq "$bad" "$tmp"; then
		echo "ok $n - fuzz_$name: $count seeds"
	else
		echo "not ok $n - fuzz_$name: exit $rc over $count seeds"
		grep -E "$bad|Running:|SUMMARY" "$tmp" | tail -n 20 | sed 's/^/# /'
		tail -n 20 "$tmp" | sed 's/^/# /'
		failed=$((failed + 1))
	fi
done
[ "$failed" -eq 0 ]
