#!/bin/sh
# chpasswd for the lab guest (busybox-static has none). qemu-ga's
# guest-set-user-password runs `chpasswd [-e]` and writes "user:password" to stdin.
encrypted=0
[ "$1" = "-e" ] && encrypted=1
while IFS= read -r line; do
    user=${line%%:*}
    pw=${line#*:}
    if ! grep -q "^$user:" /etc/shadow; then
        echo "chpasswd: unknown user '$user'" >&2
        exit 1
    fi
    if [ $encrypted = 0 ]; then
        pw=$(printf '%s\n' "$pw" | mkpasswd -m sha512) || exit 1
    fi
    awk -F: -v u="$user" -v p="$pw" 'BEGIN { OFS = ":" } $1 == u { $2 = p } { print }' \
        /etc/shadow > /etc/shadow.new || exit 1
    chmod 640 /etc/shadow.new
    mv /etc/shadow.new /etc/shadow
done
