#!/bin/sh
# Started (and restarted) by busybox init: run qemu-ga on the virtio port named
# org.qemu.guest_agent.0, or idle when the guest has no agent channel.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
port=""
for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    if [ "$(cat "$p/name")" = "org.qemu.guest_agent.0" ]; then
        port="/dev/${p##*/}"
    fi
done
if [ -z "$port" ]; then
    echo "virt-qga-lab: no org.qemu.guest_agent.0 port; agent not started"
    exec sleep 2147483647
fi
echo "virt-qga-lab: starting qemu-ga on $port"
exec /usr/sbin/qemu-ga -m virtio-serial -p "$port"
