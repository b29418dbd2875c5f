#!/bin/sh
# token_modes.sh: parley-token as a FastCGI server, without a database:
# --listen unix:PATH (mode, stale and live sockets, removal at exit) and
# HOST:PORT, systemd socket activation, spawn-fcgi (socket on stdin),
# SIGHUP key rotation and a refused reload, SIGTERM with connections idle,
# a kept-alive connection after an unread body, and a malformed record.
# Needs cgi-fcgi (libfcgi-bin); the raw-socket checks need python3.
# TAP on stdout.

bin="${top_builddir:-.}/token-fcgi/parley-token"
srcdir="${top_srcdir:-.}/tests/unit"
n=0
failed=0
pids=
dir=$(mktemp -d "${TMPDIR:-/tmp}/parley-token-modes.XXXXXX") || exit 1
cleanup() {
	for p in $pids; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$dir"
}
trap cleanup EXIT

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

if ! command -v cgi-fcgi >/dev/null 2>&1; then
	echo "1..0 # SKIP cgi-fcgi (libfcgi-bin) is not installed"
	exit 0
fi
have_python=0
command -v python3 >/dev/null 2>&1 && have_python=1

# Wait (at most 5 s) until a file exists or a log has a line.
wait_for() {	# wait_for -S|-f PATH  or  wait_for log FILE PATTERN
	i=0
	while [ $i -lt 100 ]; do
		if [ "$1" = log ]; then
			grep -q -- "$3" "$2" 2>/dev/null && return 0
		elif test "$1" "$2"; then
			return 0
		fi
		i=$((i + 1))
		sleep 0.05
	done
	return 1
}

# Wait (at most 5 s) for a process to exit; sets st to its status.
wait_exit() {
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -ge 100 ]; then
			st=timeout
			return 1
		fi
		sleep 0.05
	done
	wait "$1"
	st=$?
	return 0
}

# FastCGI request: fcgi ADDR METHOD ROUTE -> stdout of the answer
fcgi() {
	env -i REQUEST_METHOD="$2" SCRIPT_NAME="/auth/$3" cgi-fcgi -bind -connect "$1" </dev/null 2>/dev/null
}
status_of() {
	fcgi "$@" | head -n 1 | tr -d '\r'
}

head -c 48 /dev/urandom > "$dir/hs.key"
chmod 600 "$dir/hs.key"
export PARLEY_JWT_KEY_FILE="$dir/hs.key"
unset PARLEY_LISTEN PARLEY_CONFIG PARLEY_DB LISTEN_PID LISTEN_FDS
export PARLEY_DB="host=127.0.0.1 port=1"

# ----------------------------------------------------------- --listen unix
sock="$dir/token.sock"
: > "$dir/u.log"
"$bin" --listen "unix:$sock" --socket-mode 0600 --threads 3 2>"$dir/u.log" &
upid=$!
pids="$pids $upid"
if wait_for -S "$sock" && wait_for log "$dir/u.log" "3 threads"; then r=OK; else r=FAIL; fi
check $r "--listen unix: socket created, startup line logged" "$(cat "$dir/u.log")"
mode=$(stat -c %a "$sock" 2>/dev/null)
if [ "$mode" = 600 ]; then r=OK; else r=FAIL; fi
check $r "socket mode is --socket-mode (600)" "mode=$mode"
s=$(status_of "$sock" GET jwks.json)
if [ "$s" = "Status: 404 Not Found" ]; then r=OK; else r=FAIL; fi
check $r "FastCGI GET jwks.json with HS256: 404" "$s"
s=$(status_of "$sock" POST token)
if [ "$s" = "Status: 401 Unauthorized" ]; then r=OK; else r=FAIL; fi
check $r "FastCGI POST token without a cookie: 401" "$s"

"$bin" --listen "unix:$sock" 2>"$dir/u2.log"
rc=$?
if [ $rc -eq 1 ] && grep -q "another process is listening" "$dir/u2.log"; then r=OK; else r=FAIL; fi
check $r "a live socket is not taken over" "rc=$rc $(cat "$dir/u2.log")"

if [ $have_python -eq 1 ]; then
	out=$(python3 "$srcdir/token_fcgi_client.py" "unix:$sock" keepalive 2>&1)
	if [ "$out" = "Status: 401 Unauthorized
Status: 404 Not Found" ]; then r=OK; else r=FAIL; fi
	check $r "kept-alive connection: unread body drained, next request answered" "$out"
	out=$(python3 "$srcdir/token_fcgi_client.py" "unix:$sock" dups 2>&1)
	case $out in
	"Status: 401 Unauthorized
Set-Cookie: parley_session=; "*"
Status: 403 Forbidden") r=OK ;;
	*) r=FAIL ;;
	esac
	check $r "repeated Cookie parameters are joined; two different Origins: 403" "$out"
	python3 "$srcdir/token_fcgi_client.py" "unix:$sock" garbage >/dev/null 2>&1
	s=$(status_of "$sock" GET jwks.json)
	if [ "$s" = "Status: 404 Not Found" ] && kill -0 $upid; then r=OK; else r=FAIL; fi
	check $r "a non-FastCGI byte stream is dropped, the service goes on" "$s"
	python3 "$srcdir/token_fcgi_client.py" "unix:$sock" idle > "$dir/idle.out" 2>&1 &
	ipid=$!
	wait_for log "$dir/idle.out" connected
fi

kill -TERM $upid
wait_exit $upid
if [ "$st" = 0 ]; then r=OK; else r=FAIL; fi
check $r "SIGTERM (with a connection idle): exit 0 within 5 s" "status=$st $(cat "$dir/u.log")"
if [ ! -e "$sock" ]; then r=OK; else r=FAIL; fi
check $r "the socket file is removed at exit"
if [ $have_python -eq 1 ]; then
	wait "$ipid" 2>/dev/null
	if grep -q closed "$dir/idle.out"; then r=OK; else r=FAIL; fi
	check $r "the idle connection was closed" "$(cat "$dir/idle.out")"
fi

# A stale socket file (nobody listening) is replaced.
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$sock" 2>/dev/null ||
	{ rm -f "$sock"; mkfifo "$dir/fifo"; }
if [ -S "$sock" ]; then
	"$bin" --listen "unix:$sock" --threads 1 2>"$dir/u3.log" &
	upid=$!
	pids="$pids $upid"
	wait_for log "$dir/u3.log" "1 threads"
	s=$(status_of "$sock" GET jwks.json)
	if [ "$s" = "Status: 404 Not Found" ]; then r=OK; else r=FAIL; fi
	check $r "a stale socket file is replaced" "$s $(cat "$dir/u3.log")"
	kill -TERM $upid
	wait_exit $upid
fi

# ------------------------------------------------------- --listen TCP + HUP
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 47911)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/es1.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/es2.pem" 2>/dev/null
chmod 600 "$dir/es1.pem" "$dir/es2.pem"
cp -p "$dir/es1.pem" "$dir/es.pem"
PARLEY_JWT_ALG=ES256 PARLEY_JWT_KEY_FILE="$dir/es.pem" \
    "$bin" --listen "127.0.0.1:$port" --threads 2 2>"$dir/t.log" &
tpid=$!
pids="$pids $tpid"
wait_for log "$dir/t.log" "2 threads"
j1=$(fcgi "127.0.0.1:$port" GET jwks.json | tail -n 1)
case $j1 in *'"kty":"EC"'*) r=OK ;; *) r=FAIL ;; esac
check $r "--listen HOST:PORT with ES256: JWKS served" "$j1 $(cat "$dir/t.log")"

cp -p "$dir/es2.pem" "$dir/es.pem"
kill -HUP $tpid
wait_for log "$dir/t.log" "configuration reloaded"
j2=$(fcgi "127.0.0.1:$port" GET jwks.json | tail -n 1)
if [ -n "$j2" ] && [ "$j1" != "$j2" ]; then r=OK; else r=FAIL; fi
check $r "SIGHUP loads the new key (JWKS changed)" "$j2"

chmod 644 "$dir/es.pem"
kill -HUP $tpid
wait_for log "$dir/t.log" "reload failed"
if grep -q "reload failed, keeping the previous configuration: .*other users" "$dir/t.log"; then r=OK; else r=FAIL; fi
check $r "a bad reload is refused with one line" "$(cat "$dir/t.log")"
j3=$(fcgi "127.0.0.1:$port" GET jwks.json | tail -n 1)
if [ "$j3" = "$j2" ]; then r=OK; else r=FAIL; fi
check $r "  and the previous key stays in use" "$j3"
kill -INT $tpid
wait_exit $tpid
if [ "$st" = 0 ]; then r=OK; else r=FAIL; fi
check $r "SIGINT: exit 0" "status=$st"

# --------------------------------------------------- systemd socket activation
if command -v systemd-socket-activate >/dev/null 2>&1; then
	sd="$dir/sd.sock"
	systemd-socket-activate -l "$sd" -E PARLEY_JWT_KEY_FILE -E PARLEY_DB "$bin" 2>"$dir/sd.log" &
	spid=$!
	pids="$pids $spid"
	wait_for -S "$sd"
	s=$(status_of "$sd" GET session)
	if [ "$s" = "Status: 401 Unauthorized" ]; then r=OK; else r=FAIL; fi
	check $r "systemd socket activation: served on fd 3" "$s $(cat "$dir/sd.log")"
	if wait_for log "$dir/sd.log" "FastCGI on the systemd socket"; then r=OK; else r=FAIL; fi
	check $r "  the startup line names the mode" "$(cat "$dir/sd.log")"
	kill -TERM $spid
	wait_exit $spid
fi

# ------------------------------------------------ spawn-fcgi: socket on stdin
if command -v spawn-fcgi >/dev/null 2>&1; then
	sp="$dir/spawn.sock"
	spawn-fcgi -n -s "$sp" -M 0600 -- "$bin" 2>"$dir/sp.log" &
	ppid=$!
	pids="$pids $ppid"
	wait_for -S "$sp"
	s=$(status_of "$sp" GET session)
	if [ "$s" = "Status: 401 Unauthorized" ]; then r=OK; else r=FAIL; fi
	check $r "spawn-fcgi (listening socket on stdin): served" "$s $(cat "$dir/sp.log")"
	if wait_for log "$dir/sp.log" "FastCGI on standard input"; then r=OK; else r=FAIL; fi
	check $r "  the startup line names the mode" "$(cat "$dir/sp.log")"
	kill -TERM $ppid
	wait_exit $ppid
	if [ "$st" = 0 ]; then r=OK; else r=FAIL; fi
	check $r "  SIGTERM: exit 0" "status=$st"
fi

echo "1..$n"
[ "$failed" -eq 0 ]
