#!/bin/sh
# promtool_check.sh TEST_BINARY: lints `TEST_BINARY --dump` (a sample Prometheus rendering)
# with `promtool check metrics`. Exits 77 (ctest: skipped) when promtool is not installed.
set -eu
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found (Debian package: prometheus): skipped"
    exit 77
fi
out=$("$1" --dump)
# promtool accepts empty input, so make sure there is something to lint
case "$out" in
*"splicer_build_info{"*) ;;
*)
    echo "no metrics rendered" >&2
    exit 1
    ;;
esac
printf '%s\n' "$out" | promtool check metrics
echo "promtool check metrics: ok ($(printf '%s\n' "$out" | grep -c '^# TYPE') families)"
