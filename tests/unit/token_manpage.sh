#!/bin/sh
# token_manpage.sh: every option that `parley-token --help` lists is
# documented in parley-token(8) with its flag (.Fl), environment name (.Ev)
# and file key (.Cm), and every option the man page documents exists.
# TAP on stdout.

bin="${top_builddir:-.}/token-fcgi/parley-token"
man="${top_srcdir:-.}/token-fcgi/parley-token.8"
n=0
failed=0

check() {	# check OK|FAIL description
	n=$((n + 1))
	if [ "$1" = OK ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failed=$((failed + 1))
	fi
}

if ! help=$("$bin" --help 2>&1); then
	echo "Bail out! cannot run $bin --help"
	exit 1
fi
if [ ! -r "$man" ]; then
	echo "Bail out! no man page at $man"
	exit 1
fi

# The standard flags.
for f in help version config check-config print-config; do
	if grep -q -- "^\.It .*Fl -$f\b" "$man"; then r=OK; else r=FAIL; fi
	check $r "man page documents --$f"
done

# One --help line per option: "  --flag METAVAR   help (env NAME, ...)".
rows=$(printf '%s\n' "$help" | sed -n 's/^  --\([a-z0-9-]*\) [A-Z]* .*(env \([A-Z0-9_]*\).*/\1 \2/p')
if [ -n "$rows" ]; then r=OK; else r=FAIL; fi
check $r "--help lists options with their environment names"

printf '%s\n' "$rows" > "${TMPDIR:-/tmp}/token_manpage.$$"
while read -r flag env; do
	[ -n "$flag" ] || continue
	[ "$flag" = config ] && continue	# a standard flag, checked above
	key=$(printf '%s' "$env" | sed 's/^PARLEY_//; s/^WS_//' | tr 'A-Z' 'a-z')
	if grep -q -- "^\.It Fl -$flag Ar [a-z]* , Ev $env , Cm $key\$" "$man"; then
		r=OK
	else
		r=FAIL
	fi
	check $r "man page: --$flag, $env, file key $key"
	# The default --help shows must appear in the man page's paragraph.
	def=$(printf '%s\n' "$help" | sed -n "s/^  --$flag .*default \([^,)]*\).*/\1/p")
	if [ -n "$def" ]; then
		para=$(sed -n "/^\.It Fl -$flag Ar/,/^\.It /p" "$man")
		if printf '%s\n' "$para" | grep -q -- "Default: $def\."; then
			r=OK
		else
			r=FAIL
		fi
		check $r "man page: default of --$flag is $def"
	fi
done < "${TMPDIR:-/tmp}/token_manpage.$$"
rm -f "${TMPDIR:-/tmp}/token_manpage.$$"

# The other way round: no documented flag that the program lacks.
for f in $(sed -n 's/^\.It Fl -\([a-z0-9-]*\).*/\1/p' "$man"); do
	if printf '%s\n' "$help" | grep -q -- "--$f\b"; then r=OK; else r=FAIL; fi
	check $r "--$f in the man page exists in --help"
done

echo "1..$n"
[ "$failed" -eq 0 ]
