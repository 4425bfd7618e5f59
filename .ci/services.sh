# shellcheck shell=bash
# Test services for teeml's CI: a throwaway PostgreSQL 15 on loopback and
# SoftHSM2. Two ways to use it:
#
#   . .ci/services.sh                 # from a bash script (.ci/run does this):
#                                     # starts the services, exports the test
#                                     # variables, stops them when the shell exits
#   .ci/services.sh go test ./kms/... # runs one command with the services up
#
# It exports
#   TEEML_TEST_POSTGRES_DSN=postgres://teeml@127.0.0.1:PORT/teeml_test?sslmode=disable
#   TEEML_TEST_SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
# which internal/testsvc reads. The cluster lives in a temporary directory,
# listens on 127.0.0.1 only (trust authentication, so no password exists
# anywhere), keeps its socket in that directory and is deleted when stopped.
# Nothing touches a system PostgreSQL cluster or the system SoftHSM2 tokens
# (tests point SOFTHSM2_CONF at their own temporary token directories).

_teeml_pg_bin=/usr/lib/postgresql/15/bin
_teeml_softhsm_module=/usr/lib/softhsm/libsofthsm2.so
_teeml_pg_dir=""
_teeml_pg_user_cmd=()

_teeml_svc_log() { printf '[services] %s\n' "$*" >&2; }

# _teeml_svc_install installs the Debian packages the services need, the
# same way .ci/run installs its other packages.
_teeml_svc_install() {
	local p missing=()
	for p in softhsm2 postgresql-15; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		_teeml_svc_log "apt-get install ${missing[*]}"
		if [ "$(id -u)" -ne 0 ]; then
			_teeml_svc_log "need root to install ${missing[*]}"
			return 1
		fi
		DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
		# The package may create a system cluster "15/main"; it is never used.
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || return 1
	fi
	[ -x "$_teeml_pg_bin/initdb" ] || { _teeml_svc_log "$_teeml_pg_bin/initdb missing after install"; return 1; }
	[ -f "$_teeml_softhsm_module" ] || { _teeml_svc_log "$_teeml_softhsm_module missing after install"; return 1; }
	command -v softhsm2-util >/dev/null || { _teeml_svc_log "softhsm2-util missing after install"; return 1; }
}

# _teeml_as_pg runs a command as the cluster's owner: PostgreSQL refuses to
# run as root, so under root it runs as Debian's "postgres" user.
_teeml_as_pg() { "${_teeml_pg_user_cmd[@]}" "$@"; }

# _teeml_port_free reports whether nothing listens on 127.0.0.1:$1.
_teeml_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

teeml_services_start() {
	_teeml_svc_install || return 1

	if [ "$(id -u)" -eq 0 ]; then
		getent passwd postgres >/dev/null || { _teeml_svc_log "running as root but there is no postgres user to run PostgreSQL"; return 1; }
		_teeml_pg_user_cmd=(runuser -u postgres --)
	else
		_teeml_pg_user_cmd=()
	fi

	_teeml_pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/teeml-pg.XXXXXX") || return 1
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$_teeml_pg_dir" || return 1
	fi
	_teeml_svc_log "initdb in $_teeml_pg_dir"
	if ! _teeml_as_pg "$_teeml_pg_bin/initdb" -D "$_teeml_pg_dir/data" -U teeml \
		--auth-local=trust --auth-host=trust --encoding=UTF8 --locale=C.UTF-8 \
		>"$_teeml_pg_dir/initdb.log" 2>&1; then
		cat "$_teeml_pg_dir/initdb.log" >&2
		_teeml_svc_log "initdb failed"
		return 1
	fi

	# A free port: random in 20000-59999, checked, and retried if the server
	# still loses a race for it.
	local attempt port started=""
	for attempt in 1 2 3 4 5 6 7 8; do
		port=$((20000 + RANDOM % 40000))
		_teeml_port_free "$port" || continue
		# fsync off: the cluster is thrown away after the run. The key
		# broker's kill tests SIGKILL the broker, not PostgreSQL, so what
		# they check (acknowledged = committed in the server) does not
		# depend on the server's own fsync. Do not benchmark against it.
		if _teeml_as_pg "$_teeml_pg_bin/pg_ctl" start -w -t 60 -D "$_teeml_pg_dir/data" \
			-l "$_teeml_pg_dir/server.log" \
			-o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$_teeml_pg_dir -c fsync=off -c max_connections=50" \
			>/dev/null; then
			started=1
			break
		fi
		_teeml_svc_log "server did not start on port $port (attempt $attempt):"
		tail -n 5 "$_teeml_pg_dir/server.log" >&2 || true
	done
	if [ -z "$started" ]; then
		_teeml_svc_log "PostgreSQL did not start; log in $_teeml_pg_dir/server.log"
		return 1
	fi

	local i
	for i in $(seq 1 60); do
		"$_teeml_pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U teeml && break
		sleep 0.5
	done
	if ! "$_teeml_pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U teeml; then
		_teeml_svc_log "PostgreSQL on 127.0.0.1:$port not ready after 30 s"
		cat "$_teeml_pg_dir/server.log" >&2 || true
		return 1
	fi
	"$_teeml_pg_bin/createdb" -h 127.0.0.1 -p "$port" -U teeml teeml_test || return 1

	export TEEML_TEST_POSTGRES_DSN="postgres://teeml@127.0.0.1:$port/teeml_test?sslmode=disable"
	export TEEML_TEST_SOFTHSM_MODULE="$_teeml_softhsm_module"
	_teeml_svc_log "PostgreSQL $("$_teeml_pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (database teeml_test, data in $_teeml_pg_dir)"
	_teeml_svc_log "SoftHSM2 module $TEEML_TEST_SOFTHSM_MODULE"
}

# teeml_services_stop stops the server and deletes its directory. It is
# safe to call more than once and when start failed half-way.
teeml_services_stop() {
	if [ -n "$_teeml_pg_dir" ] && [ -d "$_teeml_pg_dir" ]; then
		if [ -f "$_teeml_pg_dir/data/postmaster.pid" ]; then
			_teeml_as_pg "$_teeml_pg_bin/pg_ctl" stop -w -t 30 -m fast -D "$_teeml_pg_dir/data" >/dev/null 2>&1 ||
				_teeml_svc_log "pg_ctl stop failed; server in $_teeml_pg_dir may still run"
		fi
		rm -rf "$_teeml_pg_dir"
		_teeml_svc_log "PostgreSQL stopped, $_teeml_pg_dir removed"
	fi
	_teeml_pg_dir=""
	unset TEEML_TEST_POSTGRES_DSN
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
	# Sourced: stop at exit of the sourcing shell, also on Ctrl-C and
	# SIGTERM (which otherwise end bash without running the EXIT trap). An
	# EXIT trap already set by the caller still runs, after ours.
	_teeml_prev_exit_trap=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT\$/\\1/")
	# shellcheck disable=SC2064
	trap "teeml_services_stop; ${_teeml_prev_exit_trap}" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	teeml_services_start || { teeml_services_stop; return 1; }
else
	# Executed: run the given command (default: print the variables) with
	# the services up, then stop them and pass on its exit status.
	set -uo pipefail
	trap teeml_services_stop EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	teeml_services_start || exit 1
	if [ $# -eq 0 ]; then
		env | grep '^TEEML_TEST_'
	else
		"$@"
	fi
fi
