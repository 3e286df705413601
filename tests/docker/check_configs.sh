#!/usr/bin/env bash
# check_configs.sh (ctest docker.configs): the configurations shipped for containers must load.
# Runs `splicer -t` on docker/splicer.yaml (baked into the image), docker/compose/*.yaml, and
# the splicer.yaml held in deploy/kubernetes/configmap.yaml (as shipped, and with its admin
# token_file uncommented). Needs no Docker.
# Env: SPLICER_BIN (the splicer binary), SPLICER_SOURCE_DIR (default: two levels above here)
set -euo pipefail

src=${SPLICER_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
bin=${SPLICER_BIN:?SPLICER_BIN must name the splicer binary}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

check() {
    if "$bin" -t -c "$1"; then
        echo "ok: ${2:-$1}"
    else
        echo "FAIL: ${2:-$1}" >&2
        failed=1
    fi
}

check "$src/docker/splicer.yaml"
for f in "$src"/docker/compose/*.yaml; do
    check "$f"
done

# The block scalar under `splicer.yaml: |`, its four-space indentation removed.
cm=$src/deploy/kubernetes/configmap.yaml
awk '/^  splicer.yaml: \|/ { on = 1; next }
     on && /^    / { print substr($0, 5); next }
     on && /^ *$/ { print ""; next }
     on { exit }' "$cm" >"$tmp/configmap-splicer.yaml"
if [[ ! -s $tmp/configmap-splicer.yaml ]]; then
    echo "FAIL: no splicer.yaml block found in $cm" >&2
    failed=1
else
    check "$tmp/configmap-splicer.yaml" "$cm (data.splicer.yaml)"
    # The documented variant with the admin token Secret mounted: token_file uncommented, the
    # token in a file with the Secret's mode (defaultMode 0440).
    head -c 32 /dev/urandom | base64 >"$tmp/token"
    chmod 0440 "$tmp/token"
    sed -e "s|# token_file: /etc/splicer-admin/token|token_file: $tmp/token|" \
        "$tmp/configmap-splicer.yaml" >"$tmp/configmap-token.yaml"
    if grep -q "^  token_file: $tmp/token\$" "$tmp/configmap-token.yaml"; then
        check "$tmp/configmap-token.yaml" "$cm (data.splicer.yaml, with token_file)"
    else
        echo "FAIL: no '# token_file: /etc/splicer-admin/token' line under admin in $cm" >&2
        failed=1
    fi
fi
exit "$failed"
