#!/bin/sh
# Install the Debian packages listed in scripts/system-packages.txt.
# Idempotent: does nothing when all are installed; runs `apt-get update` only when
# something is missing. Needs root (uses sudo when available).
# The lab runs on Debian 12 (bookworm) or 13 (trixie), x86_64; anywhere else this
# stops with one line saying what is missing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
list="$here/system-packages.txt"

fail() { echo "setup-system: $*" >&2; exit 1; }

# shellcheck disable=SC1091 # the host's os-release
[ -r /etc/os-release ] && . /etc/os-release
case "${ID:-}:${VERSION_CODENAME:-}" in
    debian:bookworm|debian:trixie) ;;
    *) fail "virt-qga's lab needs Debian 12 (bookworm) or 13 (trixie); this is ${PRETTY_NAME:-an unknown system (no /etc/os-release)}" ;;
esac
arch=$(uname -m)
[ "$arch" = x86_64 ] || fail "virt-qga's lab needs an x86_64 host (its guests are x86_64); this is $arch"
command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1 \
    || fail "apt-get/dpkg not found on this Debian system"

packages=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$list")
missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "setup-system: all $(echo "$packages" | wc -w) packages already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo "$0" "$@"
    fi
    fail "missing:$missing; run this script as root"
fi

echo "setup-system: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -q $missing
echo "setup-system: done"
