#!/bin/sh
# Render the nginx configuration from the environment (the server's own settings where they overlap), then run nginx.
set -eu

# Empty means the default. The settings shared with the server (MAX_REQUEST_BYTES, EMBEDDING_SERVER_TIMEOUT and
# _WORKERS) default to the server's values (embedding_app/config/settings.py; this image does not hold the server's
# code): tests/test_settings.py checks the copies below against them. The PROXY_* defaults live here only.
fail() { echo "proxy: $*" >&2; exit 2; }
integer() {  # integer NAME VALUE DEFAULT MINIMUM: VALUE, or DEFAULT when empty; else a message naming NAME
    value=${2:-$3}
    case $value in '' | *[!0-9]*) fail "$1=$value is not an integer" ;; esac
    [ "$value" -ge "$4" ] || fail "$1=$value is out of range: allowed $4 or more"
    echo "$value"
}

MAX_REQUEST_BYTES=$(integer MAX_REQUEST_BYTES "${MAX_REQUEST_BYTES:-}" 8388608 1024)
timeout=$(integer EMBEDDING_SERVER_TIMEOUT "${EMBEDDING_SERVER_TIMEOUT:-}" 120 1)
workers=$(integer EMBEDDING_SERVER_WORKERS "${EMBEDDING_SERVER_WORKERS:-}" 2 1)
# 16 admitted requests per worker: one running, the rest queued in gunicorn. A dozen OpenAI SDK clients per worker
# then wait instead of failing after their two retries; the server refuses (503, Retry-After) any that waited past
# its time limit, and /health no longer waits behind them (it goes to the health port).
PROXY_MAX_IN_FLIGHT=$(integer PROXY_MAX_IN_FLIGHT "${PROXY_MAX_IN_FLIGHT:-}" $((workers * 16)) 1)
PROXY_CLIENT_TIMEOUT=$(integer PROXY_CLIENT_TIMEOUT "${PROXY_CLIENT_TIMEOUT:-}" 10 1)
# Per client address: requests at once (each may hold a body buffer of up to 256 KiB) and requests a second.
PROXY_CLIENT_CONNECTIONS=$(integer PROXY_CLIENT_CONNECTIONS "${PROXY_CLIENT_CONNECTIONS:-}" 64 1)
PROXY_CLIENT_RATE=$(integer PROXY_CLIENT_RATE "${PROXY_CLIENT_RATE:-}" 200 1)
PROXY_CLIENT_BURST=$((PROXY_CLIENT_RATE * 2))
# Every open connection, stalled ones included, takes one of these (and a descriptor).
PROXY_WORKER_CONNECTIONS=$(integer PROXY_WORKER_CONNECTIONS "${PROXY_WORKER_CONNECTIONS:-}" 16384 64)
# Twice that in descriptors (temp files, upstream sockets), within the hard limit nginx may raise its own to.
PROXY_RLIMIT_NOFILE=$((PROXY_WORKER_CONNECTIONS * 2))
hard=$(ulimit -Hn)
case $hard in unlimited) ;; *) [ "$PROXY_RLIMIT_NOFILE" -le "$hard" ] || PROXY_RLIMIT_NOFILE=$hard ;; esac
[ "$PROXY_RLIMIT_NOFILE" -gt "$PROXY_WORKER_CONNECTIONS" ] ||
    echo "proxy: warning: the open-files limit ($hard) is below PROXY_WORKER_CONNECTIONS=$PROXY_WORKER_CONNECTIONS" >&2
PROXY_PORT=$(integer PROXY_PORT "${PROXY_PORT:-}" 8080 1)
PROXY_UPSTREAM=${PROXY_UPSTREAM:-127.0.0.1:7860}
PROXY_HEALTH_UPSTREAM=${PROXY_HEALTH_UPSTREAM:-127.0.0.1:7861}
PROXY_RUN_DIR=${PROXY_RUN_DIR:-/tmp/nginx}
# The app answers its own 503 at EMBEDDING_SERVER_TIMEOUT; the proxy waits longer, the edge longer still.
PROXY_READ_TIMEOUT=$((timeout + 30))
PROXY_EDGE_READ_TIMEOUT=$((timeout + 40))
export MAX_REQUEST_BYTES PROXY_MAX_IN_FLIGHT PROXY_CLIENT_TIMEOUT PROXY_PORT PROXY_UPSTREAM PROXY_RUN_DIR \
    PROXY_READ_TIMEOUT PROXY_EDGE_READ_TIMEOUT PROXY_CLIENT_CONNECTIONS PROXY_CLIENT_RATE PROXY_CLIENT_BURST \
    PROXY_WORKER_CONNECTIONS PROXY_RLIMIT_NOFILE PROXY_HEALTH_UPSTREAM

templates=${PROXY_TEMPLATES:-$(dirname "$0")}
mkdir -p "$PROXY_RUN_DIR"
# Only these names are replaced: nginx's own $variables stay as they are.
names='${MAX_REQUEST_BYTES} ${PROXY_MAX_IN_FLIGHT} ${PROXY_CLIENT_TIMEOUT} ${PROXY_PORT} ${PROXY_UPSTREAM}
       ${PROXY_RUN_DIR} ${PROXY_READ_TIMEOUT} ${PROXY_EDGE_READ_TIMEOUT} ${PROXY_CLIENT_CONNECTIONS}
       ${PROXY_CLIENT_RATE} ${PROXY_CLIENT_BURST} ${PROXY_WORKER_CONNECTIONS} ${PROXY_RLIMIT_NOFILE}
       ${PROXY_HEALTH_UPSTREAM}'
for name in nginx.conf error-pages.conf; do
    envsubst "$names" < "$templates/$name.template" > "$PROXY_RUN_DIR/$name"
done
echo "proxy: :$PROXY_PORT -> $PROXY_UPSTREAM (health $PROXY_HEALTH_UPSTREAM), at most $PROXY_MAX_IN_FLIGHT requests" \
     "in flight, $PROXY_CLIENT_CONNECTIONS at once and $PROXY_CLIENT_RATE/s per client address," \
     "$PROXY_WORKER_CONNECTIONS connections, bodies up to $MAX_REQUEST_BYTES bytes," \
     "clients dropped after ${PROXY_CLIENT_TIMEOUT}s of silence" >&2
exec nginx -c "$PROXY_RUN_DIR/nginx.conf" -e stderr -g "daemon off;" "$@"
