#!/bin/sh
# /init of the virt-qga lab guest (PID 1 until it execs busybox init).
# Mounts the basics, loads the virtio modules, mounts the data disk on /data,
# then hands over to busybox init, which keeps the agent running (guest-run-qga).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /run/lock
: > /run/utmp

# Order matters: each module needs the ones before it (no depmod/modprobe here).
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
         virtio_console virtio_blk virtio_mem virtio_balloon; do
    if [ -f /lib/modules/lab/$m.ko ]; then
        insmod /lib/modules/lab/$m.ko || echo "virt-qga-lab: insmod $m failed"
    fi
done

for arg in $(cat /proc/cmdline); do
    case "$arg" in
        lab.hostname=*) hostname "${arg#lab.hostname=}" ;;
    esac
done
ip link set lo up 2>/dev/null

mkdir -p /data
i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if mount -t ext4 /dev/vda /data; then
    echo "virt-qga-lab: /dev/vda mounted on /data"
else
    echo "virt-qga-lab: could not mount /dev/vda on /data"
fi

echo "virt-qga-lab: init done, starting busybox init"
exec /sbin/init
