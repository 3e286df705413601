#!/usr/bin/env bash
# package.sh: builds the Debian package splicer_<version>_<arch>.deb with dpkg-deb, from a
# Release build of this tree. The version is the CMake project version, as `splicer --version`
# prints it; the architecture is dpkg's.
#
#   /usr/sbin/splicer                          the binary (stripped)
#   /lib/systemd/system/splicer.service        deploy/systemd/splicer.service
#   /etc/splicer/splicer.yaml                  configs/splicer.yaml, a conffile
#   /usr/share/doc/splicer/                    README.md.gz, copyright, changelog.gz (native),
#                                              examples/splicer.socket
#   /usr/share/man/man8/splicer.8.gz           deploy/debian/splicer.8
#   DEBIAN/{postinst,prerm,postrm}             deploy/debian/: the splicer system user, the
#                                              unit's state, purge
#
# Depends comes from dpkg-shlibdeps (the libraries the binary links) plus adduser (postinst) and
# procps (/bin/kill, the unit's ExecReload; minimal systems lack it).
# Checks before it writes the .deb: the staged config passes `splicer -t`; the units pass
# `systemd-analyze verify` (when installed); then lintian runs on the result (when installed)
# and its tags are printed, without failing the script.
#
# Usage: scripts/package.sh [OUTDIR]     (default: build-deb; the .deb lands there)
# Env:   JOBS (default 2), MAINTAINER (default: the last commit's author)
# Needs: cmake and the build dependencies (scripts/deps.sh), dpkg-dev; lintian is optional.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mkdir -p "${1:-$src/build-deb}" && cd "${1:-$src/build-deb}" && pwd)
jobs=${JOBS:-2}
log() { echo "package.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}
for tool in cmake dpkg-deb dpkg-shlibdeps dpkg-architecture; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install cmake dpkg-dev)"
done

# --- build ---------------------------------------------------------------------------------------
bdir=$out/build
log "Release build in $bdir"
# Debian's hardening flags (fortify, stack protector, relro, bindnow), as a Debian build of the
# package would get them, on top of the Release build's -O3.
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
cflags="$(dpkg-buildflags --get CPPFLAGS) $(dpkg-buildflags --get CFLAGS)"
cmake -S "$src" -B "$bdir" -DCMAKE_BUILD_TYPE=Release -DSPLICER_TESTS=OFF \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$(dpkg-buildflags --get LDFLAGS)" >/dev/null
cmake --build "$bdir" -j "$jobs" --target splicer >/dev/null
version=$("$bdir/splicer" --version | awk '{ print $2 }')
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "unexpected version '$version'"
arch=$(dpkg --print-architecture)
deb=$out/splicer_${version}_${arch}.deb

# --- stage ---------------------------------------------------------------------------------------
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
doc=$stage/usr/share/doc/splicer
install -D -m 0755 "$bdir/splicer" "$stage/usr/sbin/splicer"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/sbin/splicer"
install -D -m 0644 "$src/deploy/systemd/splicer.service" "$stage/lib/systemd/system/splicer.service"
install -D -m 0644 "$src/configs/splicer.yaml" "$stage/etc/splicer/splicer.yaml"
install -D -m 0644 "$src/deploy/systemd/splicer.socket" "$doc/examples/splicer.socket"
install -D -m 0644 "$src/deploy/debian/copyright" "$doc/copyright"
install -D -m 0644 "$src/README.md" "$doc/README.md"
gzip -9n "$doc/README.md"
install -D -m 0644 "$src/deploy/debian/splicer.8" "$stage/usr/share/man/man8/splicer.8"
gzip -9n "$stage/usr/share/man/man8/splicer.8"

# A changelog entry for this build, dated by the commit so that the same tree gives the same
# package.
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
when=$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)
maintainer=${MAINTAINER:-$(git -C "$src" log -1 --format='%an <%ae>' 2>/dev/null ||
    echo "splicer maintainers <root@localhost>")}
cat >"$doc/changelog" <<EOF
splicer ($version) unstable; urgency=medium

  * Built by scripts/package.sh from commit $commit.

 -- $maintainer  $(LC_ALL=C date -R -u -d "@$when")
EOF
gzip -9n "$doc/changelog"
find "$stage" -exec touch -h -d "@$when" {} +

for f in postinst prerm postrm; do
    install -m 0755 "$src/deploy/debian/$f" "$stage/DEBIAN/$f"
done
echo /etc/splicer/splicer.yaml >"$stage/DEBIAN/conffiles"

# --- checks on what is staged --------------------------------------------------------------------
"$stage/usr/sbin/splicer" -t -c "$stage/etc/splicer/splicer.yaml" ||
    die "the shipped config fails splicer -t"
if command -v systemd-analyze >/dev/null 2>&1; then
    # verify checks that ExecStart's binary exists on this machine: point it at the staged one.
    units=$(mktemp -d)
    trap 'rm -rf "$units"' EXIT
    sed "s#/usr/sbin/splicer#$stage/usr/sbin/splicer#g" "$src/deploy/systemd/splicer.service" \
        >"$units/splicer.service"
    cp "$src/deploy/systemd/splicer.socket" "$units/"
    # man:splicer(8) is only found once installed: MANPATH points at the staged page.
    MANPATH=$stage/usr/share/man systemd-analyze verify "$units/splicer.service" \
        "$units/splicer.socket" || die "systemd-analyze verify failed on the units"
    log "systemd-analyze verify: units OK"
else
    log "systemd-analyze not installed: units not verified"
fi

# --- control -------------------------------------------------------------------------------------
# dpkg-shlibdeps reads debian/control of the directory it runs in: give it a minimal one.
shl=$out/shlibdeps
rm -rf "$shl"
mkdir -p "$shl/debian"
printf 'Source: splicer\n\nPackage: splicer\nArchitecture: any\n' >"$shl/debian/control"
shlibs=$(cd "$shl" && dpkg-shlibdeps -O "$stage/usr/sbin/splicer" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[[ -n $shlibs ]] || die "dpkg-shlibdeps found no dependencies"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: splicer
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: adduser, procps, $shlibs
Section: net
Priority: optional
Description: layer-4 TCP reverse proxy relaying with splice()
 splicer accepts TCP connections on configured listeners and relays each one,
 byte for byte, to a server chosen from an upstream pool, moving the bytes
 through the kernel with splice(). It balances (round robin, least
 connections, source hash, random of two), checks servers' health, reloads
 its YAML configuration on SIGHUP without touching open connections, and
 serves metrics and a status page on an admin endpoint.
 .
 The package runs it under systemd (Type=notify, watchdog, a sandboxed
 splicer user); edit /etc/splicer/splicer.yaml, then enable the service.
EOF
(cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z |
    xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
log "built $deb ($(du -k "$deb" | cut -f1) KiB): Depends: adduser, procps, $shlibs"

if command -v lintian >/dev/null 2>&1; then
    log "lintian:"
    lintian --info --no-tag-display-limit "$deb" >&2 || true
else
    log "lintian not installed: not checked"
fi
echo "$deb"
