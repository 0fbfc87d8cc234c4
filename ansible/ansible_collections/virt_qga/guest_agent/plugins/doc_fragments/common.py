# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Options every virt_qga.guest_agent module shares: how to reach the guest agent."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  domain:
    description:
      - Name, UUID or ID of the libvirt domain whose guest agent is used.
      - With O(socket) it is only a label used in messages and may be omitted.
      - One of O(domain) or O(socket) is required.
    type: str
  uri:
    description:
      - libvirt connection URI on the managed node, for example V(qemu:///system) or
        V(qemu+unix:///session?socket=/path/to/libvirt-sock).
      - When neither this option nor the E(VIRT_QGA_CONNECT) environment variable is set,
        V(qemu:///system) is used.
      - Ignored when O(socket) is given.
    type: str
  socket:
    description:
      - Path of the guest agent channel socket (a plain QEMU C(-chardev socket) bound to
        C(org.qemu.guest_agent.0)), used instead of libvirt.
      - The agent serves one client at a time on such a socket.
    type: path
  timeout:
    description:
      - Deadline in seconds for each single guest agent reply. It means this in every
        module.
      - Modules that wait for work to finish (a guest command, a hotplug) have a separate
        overall deadline, O(ignore:wait_timeout).
    type: float
    default: 30
requirements:
  - python >= 3.11 on the managed node
  - the virt-qga Python package on the managed node (C(pip install virt-qga))
  - libvirt-python, unless only O(socket) is used
notes:
  - The modules run on the hypervisor (the managed node), not in the guest. The guest only
    needs a running qemu-ga.
"""
