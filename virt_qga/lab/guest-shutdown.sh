#!/bin/sh
# /sbin/shutdown for the lab guest (busybox has no shutdown applet). qemu-ga's
# guest-shutdown runs `/sbin/shutdown -h -P|-H|-r +0 "message"`: the mode is the
# second flag, so look at every argument. Like a real guest, -H halts without
# powering off (the VM keeps running, stopped), -r reboots, anything else powers off.
mode=poweroff
for arg in "$@"; do
    case "$arg" in
        -r) mode=reboot ;;
        -H) mode=halt ;;
        -P) mode=poweroff ;;
    esac
done
sync
exec "$mode" -f
