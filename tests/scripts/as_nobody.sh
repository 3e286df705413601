#!/usr/bin/env bash
# as_nobody.sh: runs the splicer binary named by SPLICER_REAL_BIN as the unprivileged user
# nobody, the way it runs in a non-root container: subject to the kernel's per-user pipe limits
# (F_SETPIPE_SZ above fs.pipe-max-size fails with EPERM; pipes shrink past
# fs.pipe-user-pages-soft). Used as SPLICER_BIN by the *_unprivileged ctest entries, through
# unprivileged.sh, which makes sure this runs as root.
exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "${SPLICER_REAL_BIN:?}" "$@"
