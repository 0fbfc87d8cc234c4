"""The lab: real libvirt + QEMU + qemu-ga guests for integration tests and demos.

    from virt_qga.lab import Lab
    lab = Lab()                       # root: $VIRT_QGA_LAB_DIR or the default (see paths)
    [g] = lab.up(agent="10.0")        # builds (cached), boots, waits for guest-ping
    ...
    lab.down()

See docs/lab.md.
"""

from virt_qga.lab.errors import LabError
from virt_qga.lab.manager import GuestStatus, Lab, LabGuest

__all__ = ["GuestStatus", "Lab", "LabError", "LabGuest"]
