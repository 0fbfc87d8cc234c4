#!/bin/sh
# Install the Debian packages listed in scripts/system-packages.txt.
# Idempotent: does nothing when all are installed; runs `apt-get update` only when
# something is missing. Needs root (uses sudo when available).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
list="$here/system-packages.txt"

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    echo "setup-system: apt-get/dpkg not found; the virt-qga lab needs a Debian 12 (bookworm) host" >&2
    exit 1
fi

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
    echo "setup-system: missing:$missing; run this script as root" >&2
    exit 1
fi

echo "setup-system: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -q $missing
echo "setup-system: done"
