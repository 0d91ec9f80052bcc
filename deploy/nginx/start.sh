#!/bin/sh
# Render the nginx configuration from the environment (the server's own settings where they overlap), then run nginx.
set -eu

# Empty means the default, as in the server's settings.
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
# 4 admitted requests per worker: one running, the next ones already queued so no worker idles between
# requests, and a queue short enough that /health and a new request wait ~3 requests' time (README, Limits).
PROXY_MAX_IN_FLIGHT=$(integer PROXY_MAX_IN_FLIGHT "${PROXY_MAX_IN_FLIGHT:-}" $((workers * 4)) 1)
PROXY_CLIENT_TIMEOUT=$(integer PROXY_CLIENT_TIMEOUT "${PROXY_CLIENT_TIMEOUT:-}" 10 1)
PROXY_PORT=$(integer PROXY_PORT "${PROXY_PORT:-}" 8080 1)
PROXY_UPSTREAM=${PROXY_UPSTREAM:-127.0.0.1:7860}
PROXY_RUN_DIR=${PROXY_RUN_DIR:-/tmp/nginx}
# The app answers its own 503 at EMBEDDING_SERVER_TIMEOUT; the proxy waits longer, the edge longer still.
PROXY_READ_TIMEOUT=$((timeout + 30))
PROXY_EDGE_READ_TIMEOUT=$((timeout + 40))
export MAX_REQUEST_BYTES PROXY_MAX_IN_FLIGHT PROXY_CLIENT_TIMEOUT PROXY_PORT PROXY_UPSTREAM PROXY_RUN_DIR \
    PROXY_READ_TIMEOUT PROXY_EDGE_READ_TIMEOUT

templates=${PROXY_TEMPLATES:-$(dirname "$0")}
mkdir -p "$PROXY_RUN_DIR"
# Only these names are replaced: nginx's own $variables stay as they are.
names='${MAX_REQUEST_BYTES} ${PROXY_MAX_IN_FLIGHT} ${PROXY_CLIENT_TIMEOUT} ${PROXY_PORT} ${PROXY_UPSTREAM}
       ${PROXY_RUN_DIR} ${PROXY_READ_TIMEOUT} ${PROXY_EDGE_READ_TIMEOUT}'
for name in nginx.conf error-pages.conf; do
    envsubst "$names" < "$templates/$name.template" > "$PROXY_RUN_DIR/$name"
done
echo "proxy: :$PROXY_PORT -> $PROXY_UPSTREAM, at most $PROXY_MAX_IN_FLIGHT requests in flight," \
     "bodies up to $MAX_REQUEST_BYTES bytes, clients dropped after ${PROXY_CLIENT_TIMEOUT}s of silence" >&2
exec nginx -c "$PROXY_RUN_DIR/nginx.conf" -e stderr -g "daemon off;" "$@"
