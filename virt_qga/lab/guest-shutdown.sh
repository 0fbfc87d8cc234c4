#!/bin/sh
# /sbin/shutdown for the lab guest. qemu-ga's guest-shutdown runs
# `/sbin/shutdown -h|-P|-r +0 "message"`; busybox has no shutdown applet.
sync
case "$1" in
    -r) exec reboot -f ;;
    *) exec poweroff -f ;;
esac
