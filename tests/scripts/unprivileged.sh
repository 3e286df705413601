#!/usr/bin/env bash
# unprivileged.sh TEST_BINARY [ARG...]: runs an integration suite with the splicer under test
# (SPLICER_BIN) started as the user nobody through as_nobody.sh, the way it runs in a non-root
# container: the kernel's pipe limits apply to it. Exits 77 (skipped) when that cannot be done
# here: not root (then the suite's own entry already runs splicer unprivileged), or no setpriv
# that may change user.
set -euo pipefail

test_bin=${1:?usage: unprivileged.sh TEST_BINARY [ARG...]}
shift
real_bin=${SPLICER_BIN:?SPLICER_BIN must name the splicer binary}
if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: not root (uid $(id -u)): splicer already runs unprivileged in the suite's own entry"
    exit 77
fi
if ! command -v setpriv >/dev/null 2>&1; then
    echo "SKIP: setpriv (util-linux) is not installed"
    exit 77
fi
if ! setpriv --reuid=nobody --regid=nogroup --clear-groups -- true 2>/dev/null; then
    echo "SKIP: setpriv cannot switch to the user nobody here (no CAP_SETUID?)"
    exit 77
fi
export SPLICER_REAL_BIN=$real_bin
export SPLICER_BIN
SPLICER_BIN="$(dirname "${BASH_SOURCE[0]}")/as_nobody.sh"
# Without CAP_SYS_PTRACE, as root in a container (Docker drops it): the harness may then list
# the descriptors of splicer, which runs as nobody, but not read where they point.
# Dropping it needs CAP_SETPCAP; without that the suite runs with what it has.
if setpriv --bounding-set=-sys_ptrace -- true 2>/dev/null; then
    exec setpriv --bounding-set=-sys_ptrace -- "$test_bin" "$@"
fi
exec "$test_bin" "$@"
