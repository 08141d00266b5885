#!/usr/bin/env bash
# Make sure headless Chromium (Debian's `chromium` package) is available for the report's
# browser test (tests/test_report_browser.py). Installs it with apt-get when missing and root.
set -euo pipefail

CHROMIUM="${CHROMIUM:-chromium}"

if command -v "$CHROMIUM" >/dev/null 2>&1; then
    echo "chromium present: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing and this is not root; install it with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y chromium" >&2
    echo "or set BSE_BENCH_SKIP_BROWSER=1 to skip the browser test." >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing and apt-get is not available; install Chromium by hand" >&2
    echo "(or set BSE_BENCH_SKIP_BROWSER=1 to skip the browser test)." >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium
echo "chromium installed: $(chromium --version 2>/dev/null || echo chromium)"
