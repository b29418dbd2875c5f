#!/bin/sh
# run.sh: fuzz targets with libFuzzer for a bounded time and judge the runs
# (used by `make fuzz` and, through it, by short-run.sh).
#
#   top_srcdir=... top_builddir=... FUZZ_SECONDS=60 FUZZ_JOBS=1 \
#       sh tests/fuzz/run.sh util cfg tests/fuzz/fuzz_cookie ...
#
# Each target NAME runs as tests/fuzz/fuzz_NAME of the build tree, niced,
# for FUZZ_SECONDS, on tests/fuzz/out/NAME/corpus (new entries land there)
# plus the seeds of tests/fuzz/corpus/NAME (read only), with
# tests/fuzz/NAME.dict when it exists.  Its log and any crash input go to
# tests/fuzz/out/NAME/ (inputs of earlier runs are kept).  FUZZ_JOBS targets run at a time.  Output is TAP,
# one line per target with executions and coverage (libFuzzer's cov: and
# ft:); a crash, leak, timeout, sanitizer report or failed invariant fails
# the target, and the script exits 1 when any target failed.

set -u
: "${top_srcdir:?}" "${top_builddir:?}"
secs=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
outroot=$top_builddir/tests/fuzz/out

names=
for arg in "$@"; do
	name=${arg##*/}
	name=${name#fuzz_}
	names="$names $name"
done
set -- $names
[ $# -gt 0 ] || { echo "run.sh: no targets" >&2; exit 2; }

# Patterns that mean the run found something, whatever the exit status.
bad='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|deadly signal|fuzz: invariant failed|ERROR: libFuzzer|ALARM: working on the last Unit|==ERROR'

UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export UBSAN_OPTIONS

# One target: fuzz, then write its TAP line (without the number) to result.
run_one() {
	name=$1
	bin=$top_builddir/tests/fuzz/fuzz_$name
	out=$outroot/$name
	seeds=$top_srcdir/tests/fuzz/corpus/$name
	dict=$top_srcdir/tests/fuzz/$name.dict
	mkdir -p "$out/corpus" "$out/artifacts"
	rm -f "$out/result"
	touch "$out/start"
	if [ ! -x "$bin" ]; then
		echo "not ok - fuzz_$name: not built ($bin)" > "$out/result"
		return
	fi
	set -- -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
	    -artifact_prefix="$out/artifacts/"
	[ -f "$dict" ] && set -- "$@" -dict="$dict"
	before=$(ls "$out/corpus" | wc -l)
	t0=$(date +%s)
	nice -n 10 "$bin" "$@" "$out/corpus" "$seeds" > "$out/log" 2>&1
	rc=$?
	t1=$(date +%s)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/log" | tail -n 1)
	stats=$(grep -E '^#[0-9]+.*cov: ' "$out/log" | tail -n 1 |
	    sed -n 's/.*\(cov: [0-9]*\) \(ft: [0-9]*\).*/\1 \2/p')
	after=$(ls "$out/corpus" | wc -l)
	summary="${execs:-?} execs in $((t1 - t0))s, ${stats:-cov: ? ft: ?}, corpus +$((after - before)) (seeds $(ls "$seeds" | wc -l))"
	if [ $rc -eq 0 ] && ! grep -Eq "$bad" "$out/log"; then
		echo "ok - fuzz_$name: $summary" > "$out/result"
	else
		{
			echo "not ok - fuzz_$name: exit $rc; $summary"
			echo "# log: $out/log"
			find "$out/artifacts" -type f -newer "$out/start" |
			    sed 's|^|# input: |'
			grep -E "$bad|SUMMARY" "$out/log" | head -n 5 | sed 's/^/#   /'
		} > "$out/result"
	fi
}

echo "1..$#"
start=$(date +%s)
running=0
for name; do
	run_one "$name" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait
		running=0
	fi
done
wait

n=0
failed=0
for name; do
	n=$((n + 1))
	line=$(cat "$outroot/$name/result" 2>/dev/null || echo "not ok - fuzz_$name: no result")
	echo "$line" | sed "1s/^\(not ok\|ok\) -/\1 $n -/"
	case $line in "not ok"*) failed=$((failed + 1)) ;; esac
done
echo "# $# targets x ${secs}s in $(($(date +%s) - start))s wall, $failed failed; output in $outroot"
[ "$failed" -eq 0 ]
