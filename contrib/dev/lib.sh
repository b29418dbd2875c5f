# Shell helpers shared by contrib/dev/run and the benchmark scripts: a private
# PostgreSQL cluster, key files, and services stopped by PID on exit.
# Source it; it defines functions only.  Everything listens on loopback.

# Where PostgreSQL's server binaries live.
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

# Run a command as the postgres user when we are root (PostgreSQL refuses
# to run as root), as ourselves otherwise.
dev_as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# PIDs started by this script, stopped by dev_stop_all (installed as trap).
DEV_PIDS=

# dev_spawn LOGFILE CMD...: start CMD in the background, remember its PID.
dev_spawn() {
	_log=$1; shift
	"$@" >>"$_log" 2>&1 &
	DEV_PIDS="$! $DEV_PIDS"
	DEV_LAST_PID=$!
}

# Stop every remembered PID: SIGTERM, then SIGKILL after 5 s.
dev_stop_all() {
	for _p in $DEV_PIDS; do kill -TERM "$_p" 2>/dev/null || true; done
	for _p in $DEV_PIDS; do
		_n=0
		while kill -0 "$_p" 2>/dev/null && [ $_n -lt 50 ]; do sleep 0.1; _n=$((_n + 1)); done
		kill -KILL "$_p" 2>/dev/null || true
	done
	DEV_PIDS=
	[ -z "${DEV_PGDATA:-}" ] || dev_pg_stop "$DEV_PGDATA"
}

# dev_wait_port HOST PORT [SECONDS]: wait until something accepts there.
dev_wait_port() {
	_n=0
	while ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
		_n=$((_n + 1))
		[ $_n -lt $((${3:-20} * 10)) ] || { echo "nothing listens on $1:$2" >&2; return 1; }
		sleep 0.1
	done
}

# dev_wait_file PATH [SECONDS]: wait until PATH exists (a Unix socket, say).
dev_wait_file() {
	_n=0
	while [ ! -e "$1" ]; do
		_n=$((_n + 1))
		[ $_n -lt $((${2:-20} * 10)) ] || { echo "$1 did not appear" >&2; return 1; }
		sleep 0.1
	done
}

# dev_free_port: print a TCP port on 127.0.0.1 that nothing listens on.
dev_free_port() {
	# Below the ephemeral range (32768 and up): a port the kernel gave to an
	# outgoing connection a moment ago (a proxy's upstream, a load
	# generator's client) would make the server's bind fail.
	while :; do
		_p=$(( (($(od -An -N2 -tu2 /dev/urandom) % 12000)) + 20000 ))
		(exec 3<>"/dev/tcp/127.0.0.1/$_p") 2>/dev/null || { echo "$_p"; return; }
	done
}

# dev_pg_start DATADIR PORT: create (once) and start a private cluster that
# listens on 127.0.0.1:PORT and a socket inside DATADIR; trust on loopback.
dev_pg_start() {
	_d=$1 _port=$2
	if [ ! -f "$_d/PG_VERSION" ]; then
		mkdir -p "$_d"
		[ "$(id -u)" -ne 0 ] || chown postgres: "$_d"
		chmod 700 "$_d"
		dev_as_pg "$PG_BINDIR/initdb" -D "$_d" -U postgres -A trust -E UTF8 \
			--locale=C.UTF-8 >"$_d.initdb.log" 2>&1 ||
			{ cat "$_d.initdb.log" >&2; return 1; }
	fi
	dev_as_pg "$PG_BINDIR/pg_ctl" -D "$_d" -l "$_d/server.log" -w -t 30 \
		-o "-c listen_addresses=127.0.0.1 -p $_port -c unix_socket_directories=$_d" \
		start >/dev/null
	DEV_PGDATA=$_d
}

dev_pg_stop() {
	[ -f "$1/postmaster.pid" ] || return 0
	dev_as_pg "$PG_BINDIR/pg_ctl" -D "$1" -m fast -w stop >/dev/null 2>&1 || true
}

# dev_hmac_key FILE [GROUP]: a fresh 48-byte HMAC secret, mode 0640.
dev_hmac_key() {
	[ -s "$1" ] || { umask 077; head -c 48 /dev/urandom | base64 | tr -d '\n=' >"$1"; }
	chmod 0640 "$1"
	[ -z "${2:-}" ] || [ "$(id -u)" -ne 0 ] || chgrp "$2" "$1"
}
