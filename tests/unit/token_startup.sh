#!/bin/sh
# token_startup.sh: what parley-token does before it serves anything:
# --version, --check-config, --print-config, and the one-line refusals
# (missing, unreadable or shared key, short secret, bad algorithm, '*'
# origin, bad flag), also as CGI, where the web server must get a JSON 500.
# TAP on stdout.

bin="${top_builddir:-.}/token-fcgi/parley-token"
n=0
failed=0
dir=$(mktemp -d "${TMPDIR:-/tmp}/parley-token-startup.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT

check() {	# check OK|FAIL description [diagnostic]
	n=$((n + 1))
	if [ "$1" = OK ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		[ -n "$3" ] && printf '%s\n' "$3" | sed 's/^/# /' >&2
		failed=$((failed + 1))
	fi
}

# Run the program with a clean environment plus the given variables;
# sets rc, out (stdout) and err (stderr).
run() {
	env -i PATH="$PATH" "$@" >"$dir/out" 2>"$dir/err" </dev/null
	rc=$?
	out=$(cat "$dir/out")
	err=$(cat "$dir/err")
}

# refuse DESCRIPTION PATTERN VAR=... -- one line on stderr, exit 1
refuse() {
	desc=$1 pat=$2
	shift 2
	run "$@" "$bin" --check-config
	lines=$(printf '%s\n' "$err" | grep -c .)
	if [ "$rc" -eq 1 ] && [ "$lines" -eq 1 ] &&
	    printf '%s\n' "$err" | grep -q -- "$pat" && [ -z "$out" ]; then
		check OK "refused with one line: $desc"
	else
		check FAIL "refused with one line: $desc" "rc=$rc stderr=$err stdout=$out"
	fi
}

head -c 48 /dev/urandom > "$dir/hs.key"
chmod 600 "$dir/hs.key"
head -c 31 /dev/urandom > "$dir/short.key"
chmod 600 "$dir/short.key"
head -c 48 /dev/urandom > "$dir/shared.key"
chmod 644 "$dir/shared.key"
K="PARLEY_JWT_KEY_FILE=$dir/hs.key"

run "$bin" --version
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^parley-token [0-9]'; then r=OK; else r=FAIL; fi
check $r "--version prints the version"

run "$K" "$bin" --check-config
if [ "$rc" -eq 0 ] && [ "$out" = ok ]; then r=OK; else r=FAIL; fi
check $r "--check-config with a good key prints ok" "rc=$rc $err"

run "$K" PARLEY_DB="host=db password=hunter2" "$bin" --print-config --token-ttl 90s
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^token_ttl = 90s  # flag$' &&
    printf '%s\n' "$out" | grep -q '^jwt_key_file = .*  # env$' &&
    printf '%s\n' "$out" | grep -q '^session_ttl = 7d  # default$'; then r=OK; else r=FAIL; fi
check $r "--print-config shows values and their sources" "$out"
if printf '%s\n' "$out$err" | grep -q hunter2; then r=FAIL; else r=OK; fi
check $r "--print-config does not show the conninfo (it may hold a password)"

printf 'token_ttl = 2m\nlog_level = debug\n' > "$dir/token.conf"
run "$K" WS_TOKEN_TTL=3m "$bin" --config "$dir/token.conf" --print-config
if printf '%s\n' "$out" | grep -q '^token_ttl = 3m  # env$' &&
    printf '%s\n' "$out" | grep -q '^log_level = debug  # file$'; then r=OK; else r=FAIL; fi
check $r "environment wins over the file, the file over defaults" "$out"

run "$K" PARLEY_CONFIG="$dir/token.conf" "$bin" --print-config
if printf '%s\n' "$out" | grep -q '^token_ttl = 2m  # file$'; then r=OK; else r=FAIL; fi
check $r "PARLEY_CONFIG names the file" "$out"

refuse "no key file" "jwt_key_file"
refuse "missing key file" "$dir/nope" PARLEY_JWT_KEY_FILE="$dir/nope"
refuse "HMAC secret under 32 bytes" "32" PARLEY_JWT_KEY_FILE="$dir/short.key"
refuse "key readable by other users" "other users" PARLEY_JWT_KEY_FILE="$dir/shared.key"
refuse "unknown algorithm" "jwt_alg" "$K" PARLEY_JWT_ALG=HS384
refuse "'*' in allowed origins" "'\*'" "$K" PARLEY_ALLOWED_ORIGINS='*'
refuse "bad duration" "token_ttl" "$K" WS_TOKEN_TTL=soon
refuse "missing configuration file" "No such file" "$K" PARLEY_CONFIG="$dir/bad.conf"
printf 'no_such_key = 1\n' > "$dir/bad.conf"
refuse "unknown file key" "unknown key 'no_such_key'" "$K" PARLEY_CONFIG="$dir/bad.conf"

run "$K" "$bin" --no-such-flag
if [ "$rc" -eq 2 ] && printf '%s\n' "$err" | grep -q "no-such-flag"; then r=OK; else r=FAIL; fi
check $r "unknown flag: exit 2" "rc=$rc $err"

run "$K" "$bin"
if [ "$rc" -eq 1 ] && printf '%s\n' "$err" | grep -q "nothing to serve"; then r=OK; else r=FAIL; fi
check $r "no socket, no --listen, no CGI request: exit 1 with a reason" "rc=$rc $err"

# CGI with a refused configuration: the web server gets a JSON 500.
run REQUEST_METHOD=POST SCRIPT_NAME=/auth/token "$bin"
if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q '^Status: 500 ' &&
    printf '%s\n' "$out" | grep -q '^{"error":"internal","message":"internal error"}$' &&
    printf '%s\n' "$err" | grep -q jwt_key_file; then r=OK; else r=FAIL; fi
check $r "CGI with no key: 500 internal, reason on stderr" "rc=$rc $out $err"

# CGI with a good configuration, no database needed.
run "$K" REQUEST_METHOD=GET SCRIPT_NAME=/auth PATH_INFO=/jwks.json "$bin"
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^Status: 404 ' &&
    printf '%s\n' "$out" | grep -q '"error":"not_found"'; then r=OK; else r=FAIL; fi
check $r "CGI GET jwks.json with HS256: 404" "rc=$rc $out $err"

run "$K" REQUEST_METHOD=POST SCRIPT_NAME=/auth/token HTTP_ORIGIN=https://evil.example HTTP_HOST=chat.example "$bin"
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^Status: 403 '; then r=OK; else r=FAIL; fi
check $r "CGI POST token from a foreign origin: 403" "$out"

run "$K" PARLEY_DB="host=127.0.0.1 port=1 password=hunter2" REQUEST_METHOD=GET SCRIPT_NAME=/auth/session \
    HTTP_COOKIE=parley_session=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 "$bin"
if [ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^Status: 503 ' &&
    printf '%s\n' "$out" | grep -q '^Retry-After: 5'; then r=OK; else r=FAIL; fi
check $r "CGI with the database down: 503 with Retry-After" "$out $err"
if printf '%s\n' "$out$err" | grep -q 'hunter2\|AAECAwQFBgcICQ'; then r=FAIL; else r=OK; fi
check $r "  neither the conninfo password nor the cookie is logged"

echo "1..$n"
[ "$failed" -eq 0 ]
