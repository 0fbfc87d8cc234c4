"""One-line summaries of every guest agent command, written for virt-qga.

These are the first lines of the generated method docstrings in
``virt_qga/_commands.py``. They are deliberately our own wording: the schema's doc
comments are not copied into the project. ``tools/gen_spec.py`` refuses to run if a
command in the schema has no entry here (or if an entry names no command).
"""

from __future__ import annotations

SUMMARIES: dict[str, str] = {
    "guest-sync-delimited": "Resynchronise the channel: the agent echoes id after a 0xFF marker byte.",
    "guest-sync": "Resynchronise the channel: the agent echoes id back unchanged.",
    "guest-ping": "Check that the agent answers at all; returns nothing.",
    "guest-get-time": "Read the guest's clock as nanoseconds since the Unix epoch (UTC).",
    "guest-set-time": "Set the guest clock to time (ns since the epoch), or from the RTC if omitted.",
    "guest-info": "Report the agent's version and the state of each command it knows.",
    "guest-shutdown": "Ask the guest OS to power down, halt or reboot (mode defaults to powerdown).",
    "guest-file-open": "Open a file inside the guest and return a handle for the other guest-file-* calls.",
    "guest-file-close": "Release a handle obtained from file_open.",
    "guest-file-read": "Read up to count bytes from an open guest file; the data comes back base64-encoded.",
    "guest-file-write": "Write base64-encoded bytes to an open guest file.",
    "guest-file-seek": "Move the position of an open guest file and report where it ended up.",
    "guest-file-flush": "Push data buffered by the agent for an open file down to the guest kernel.",
    "guest-fsfreeze-status": "Tell whether the guest's filesystems are currently frozen or thawed.",
    "guest-fsfreeze-freeze": "Flush and freeze every local guest filesystem; returns how many were frozen.",
    "guest-fsfreeze-freeze-list": "Flush and freeze only the given mountpoints (all of them when omitted).",
    "guest-fsfreeze-thaw": "Thaw all frozen guest filesystems; returns how many were thawed.",
    "guest-fstrim": "Discard unused blocks on the guest's mounted filesystems (fstrim).",
    "guest-suspend-disk": "Hibernate the guest (suspend to disk).",
    "guest-suspend-ram": "Put the guest to sleep (suspend to RAM).",
    "guest-suspend-hybrid": "Write the guest's state to disk and then suspend to RAM.",
    "guest-network-get-interfaces": "List guest network interfaces with MAC, IP addresses and counters.",
    "guest-get-vcpus": "List the guest's logical CPUs and whether each is online.",
    "guest-set-vcpus": "Bring logical CPUs online or offline; returns how many entries were applied.",
    "guest-get-disks": "List the guest's block devices with their bus addresses and dependencies.",
    "guest-get-fsinfo": "List mounted guest filesystems with usage and backing disk addresses.",
    "guest-set-user-password": "Change a guest user's password (base64-encoded, plain or already hashed).",
    "guest-get-memory-blocks": "List the guest's hot-pluggable memory blocks and their online state.",
    "guest-set-memory-blocks": "Online or offline guest memory blocks; returns one result per block.",
    "guest-get-memory-block-info": "Report the size of one guest memory block in bytes.",
    "guest-exec-status": "Poll a process started by exec; once it has exited, reap it and return its output.",
    "guest-exec": "Start a program inside the guest without waiting for it; returns its pid.",
    "guest-get-host-name": "Return the guest's host name as the guest OS reports it.",
    "guest-get-users": "List the users currently logged in to the guest.",
    "guest-get-timezone": "Report the guest's time zone name and its offset from UTC in seconds.",
    "guest-get-osinfo": "Describe the guest operating system (kernel, distribution, version).",
    "guest-get-devices": "List devices and their drivers (implemented for Windows guests).",
    "guest-ssh-get-authorized-keys": "Read a guest user's SSH authorized_keys entries.",
    "guest-ssh-add-authorized-keys": "Add keys to a user's SSH authorized_keys (reset=True replaces it).",
    "guest-ssh-remove-authorized-keys": "Remove entries from a guest user's SSH authorized_keys.",
    "guest-get-diskstats": "Report per-disk I/O counters from inside the guest.",
    "guest-get-cpustats": "Report per-CPU time counters from inside the guest.",
}
