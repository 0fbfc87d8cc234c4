"""Wait until a restarted libvirtd has re-attached to its running domains.

libvirtd accepts connections before it has finished re-attaching to the QEMU processes
that kept running: each domain is reconnected in a thread holding that domain's job,
and until it is done the live XML is the one from before the restart (a vCPU list that
is about to be refreshed, for one). A QMP command through libvirt needs the job, so it
returns only once the domain is reconnected: that is the signal.
"""

from __future__ import annotations

import time


def wait_reconnected(uri: str, timeout: float = 30.0) -> None:
    """Best effort, bounded by ``timeout``: never raises, a domain that does not answer
    is left to whoever uses it next."""
    import libvirt
    import libvirt_qemu

    deadline = time.monotonic() + timeout
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    try:
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if time.monotonic() > deadline:
                return
            try:
                libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-status"}', 0)
            except libvirt.libvirtError:
                continue
    finally:
        try:
            conn.close()
        except libvirt.libvirtError:
            pass
