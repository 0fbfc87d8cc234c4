# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible connection plugin: run tasks inside a guest through its QEMU guest agent."""

from __future__ import annotations

DOCUMENTATION = r"""
name: qga
short_description: Run tasks inside libvirt/QEMU guests through the QEMU guest agent
version_added: 0.1.0
author:
  - virt-qga developers (@virt-qga)
description:
  - Runs ordinary Ansible tasks inside a guest through its QEMU guest agent (C(qemu-ga)), over
    libvirt (C(qemuAgentCommand)) or over the agent's channel socket. The guest needs no network,
    no SSH server and no account, only a running qemu-ga with C(guest-exec) and the
    C(guest-file-*) commands enabled.
  - Commands run with C(/bin/sh -c) as the user qemu-ga runs as (normally root). Modules need
    Python in the guest; M(ansible.builtin.raw) does not.
  - Module code goes to the interpreter's stdin (pipelining) inside the C(guest-exec) request when
    it fits the transport's request limit (about 140 KiB through libvirt 9.0, 36 MiB over the
    socket); larger payloads are written to a private temporary file in the guest first.
  - Files are copied with virt-qga's file copy, in chunks sized to the transport, verified by
    SHA-256 and renamed into place atomically (in the guest and on the control node).
  - Guest output is never written to Ansible's log or display, at any verbosity.
requirements:
  - the virt-qga Python package on the control node (C(pip install virt-qga))
  - libvirt-python on the control node, unless only O(socket) is used
notes:
  - The plugin runs on the control node, which must reach the hypervisor's libvirt (O(uri), for
    example V(qemu+ssh://root@hv01/system)) or the agent socket.
  - A guest without a running agent (not started, rebooting, no agent channel) makes the host
    unreachable; every other failure fails the task.
  - M(ansible.builtin.reboot) and C(meta) C(reset_connection) work; after a reset the next task
    connects again.
  - Privilege escalation (C(become)) is not needed to act as root and is not tested.
options:
  remote_addr:
    description:
      - The libvirt domain (name, UUID or ID) whose guest agent runs the tasks.
      - Defaults to the inventory host name; V(ansible_host) is not used, because it usually
        holds a network address.
      - With O(socket) only a label used in messages.
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_virt_qga_domain
  uri:
    description:
      - libvirt connection URI of the hypervisor that runs the domain.
      - Ignored when O(socket) is set.
    type: str
    default: qemu:///system
    env:
      - name: VIRT_QGA_CONNECT
    ini:
      - section: virt_qga_connection
        key: uri
    vars:
      - name: ansible_virt_qga_uri
  socket:
    description:
      - Path (on the control node) of the guest agent's channel socket, for a plain QEMU guest
        started with C(-chardev socket,...) bound to C(org.qemu.guest_agent.0). Used instead of
        libvirt.
      - The agent serves one client at a time on such a socket.
    type: str
    vars:
      - name: ansible_virt_qga_socket
  timeout:
    description:
      - Seconds to wait for the guest agent to answer when connecting. An agent that does not
        answer in time makes the host unreachable.
    type: int
    default: 10
    env:
      - name: ANSIBLE_TIMEOUT
    ini:
      - section: defaults
        key: timeout
    vars:
      - name: ansible_virt_qga_connect_timeout
    cli:
      - name: timeout
  reply_timeout:
    description:
      - Seconds to wait for each reply of the guest agent (one C(guest-exec-status) poll, one
        file chunk).
    type: float
    default: 30
    env:
      - name: VIRT_QGA_TIMEOUT
    ini:
      - section: virt_qga_connection
        key: reply_timeout
    vars:
      - name: ansible_virt_qga_reply_timeout
  command_timeout:
    description:
      - Deadline in seconds for one whole command in the guest, from its start to its exit.
      - A task's C(timeout) keyword bounds the command too, whichever ends first.
      - A command past its deadline is killed in the guest, with all its child processes, and the
        task fails.
    type: float
    default: 3600
    env:
      - name: VIRT_QGA_COMMAND_TIMEOUT
    ini:
      - section: virt_qga_connection
        key: command_timeout
    vars:
      - name: ansible_virt_qga_command_timeout
  pipelining:
    description:
      - Send module code on the interpreter's stdin instead of copying it to a file first, saving
        several agent round trips per task.
    type: bool
    default: true
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: defaults
        key: pipelining
      - section: virt_qga_connection
        key: pipelining
    vars:
      - name: ansible_pipelining
      - name: ansible_virt_qga_pipelining
"""

EXAMPLES = r"""
# inventory.yml: guests reached through the hypervisor's libvirt, nothing inside the guests but qemu-ga
# guests:
#   hosts:
#     web01:
#     db01:
#       ansible_virt_qga_domain: db01.example.com   # libvirt name differs from the host name
#   vars:
#     ansible_connection: virt_qga.guest_agent.qga
#     ansible_virt_qga_uri: qemu+ssh://root@hv01/system

- name: Configure guests without SSH
  hosts: guests
  gather_facts: false
  tasks:
    - name: Works even without Python in the guest
      ansible.builtin.raw: cat /etc/os-release

    - name: Ordinary modules (Python in the guest)
      ansible.builtin.copy:
        src: app.conf
        dest: /etc/app/app.conf
        mode: "0644"

    - name: A long job, killed in the guest after ten minutes
      ansible.builtin.command: /usr/local/bin/reindex
      timeout: 600
"""

import base64
import os
import signal
import time
import typing as t

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

try:
    from virt_qga.agent import GuestAgent
    from virt_qga.connection import lookup_domain, open_connection, require_running
    from virt_qga.errors import (
        AgentNotConfiguredError,
        AgentNotConnectedError,
        AgentTimeoutError,
        DomainError,
        GuestError,
        OperationError,
        VirtQgaError,
    )
    from virt_qga.exitcodes import ExitCode
    from virt_qga.outcome import State
    from virt_qga.retry import call_with, transient
    from virt_qga.transport.libvirt import LibvirtTransport
    from virt_qga.workflows import exec as gexec
    from virt_qga.workflows import files as gfiles
except ImportError as _exc:  # reported when the plugin is used
    VIRT_QGA_IMPORT_ERROR: ImportError | None = _exc
else:
    VIRT_QGA_IMPORT_ERROR = None

display = Display()

#: Run before every command: qemu-ga passes its own environment, which under systemd has
#: no HOME, so Ansible's C(~/.ansible/tmp) would not expand.
ENV_DEFAULTS = 'export HOME="${HOME:-/root}" PATH="${PATH:-%s}"\n'

#: Module stdin too large for one guest-exec request comes from this private file
#: ($1), which is removed as soon as the shell has it open; $2 is the command.
STDIN_FROM_FILE = 'exec <"$1" || exit 125\nrm -f -- "$1"\n'

#: Creates that file (mode 0600, unpredictable name).
MKTEMP = 'umask 077 && mktemp "${TMPDIR:-/tmp}/.ansible-qga-stdin.XXXXXXXXXX"'

#: Seconds kept back from a task's own ``timeout`` to kill the command in the guest and
#: report it before Ansible's alarm interrupts the task.
KILL_MARGIN = 2.0


class Connection(ConnectionBase):
    """Tasks in a guest through its agent (see DOCUMENTATION)."""

    transport = "virt_qga.guest_agent.qga"
    has_pipelining = True
    has_tty = False
    default_user = "root"

    def __init__(self, play_context: t.Any, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(play_context, *args, **kwargs)
        self._connected: bool = False
        self._agent: t.Any = None
        self._libvirt: t.Any = None
        self._label = ""

    # ------------------------------------------------------------------ connection

    def _connect(self) -> Connection:
        if self._connected:
            return self
        if VIRT_QGA_IMPORT_ERROR is not None:
            raise AnsibleError("the virt_qga.guest_agent.qga connection needs the virt-qga Python package on "
                               f"the control node (pip install virt-qga): {VIRT_QGA_IMPORT_ERROR}")
        domain = _option(self, "remote_addr")
        sock = _option(self, "socket")
        uri = _option(self, "uri")
        reply_timeout = _positive(_option(self, "reply_timeout"), "reply_timeout")
        wait = _positive(_option(self, "timeout"), "timeout")
        self._label = str(domain or sock)
        where = f"socket {sock}" if sock else f"libvirt {uri}"
        display.vvv(f"ESTABLISH QGA CONNECTION TO {self._label} ({where})", host=self._label)
        try:
            if sock:
                agent = GuestAgent.for_socket(sock, timeout=reply_timeout, name=self._label)
            else:
                if not domain:
                    raise AnsibleConnectionFailure("no libvirt domain to connect to (remote_addr is empty)")
                # A connection of our own: one opened in the parent process (inventory) must
                # never be shared with the forked worker that runs this task.
                self._libvirt = open_connection(uri, fresh=True)
                dom = lookup_domain(self._libvirt, domain)
                require_running(dom)
                agent = GuestAgent(LibvirtTransport(dom, timeout=reply_timeout), timeout=reply_timeout,
                                   name=self._label)
            policy = transient(attempts=1000, seconds=wait, first_wait=0.2, max_wait=1.0)
            call_with(policy, agent.call, "guest-ping", timeout=min(reply_timeout, wait))
        except VirtQgaError as exc:
            self._drop()
            raise AnsibleConnectionFailure(f"{self._label}: guest agent unreachable: {exc}") from None
        self._agent = agent
        self._connected = True
        return self

    def _ensure_connected(self) -> None:
        """What ConnectionBase's ensure_connect decorator does for the abstract methods."""
        if not self._connected:
            self._connect()

    def reset(self) -> None:
        """Forget the agent (and its cached capabilities); the next command reconnects.
        After a reboot the agent is a new process: nothing of the old one may be reused."""
        display.vvv("RESET QGA CONNECTION", host=self._label or None)
        self.close()

    def close(self) -> None:
        self._drop()
        self._connected = False

    def _drop(self) -> None:
        agent, self._agent = self._agent, None
        conn, self._libvirt = self._libvirt, None
        if agent is not None:
            try:
                agent.close()
            except VirtQgaError:
                pass
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead libvirt connection has nothing left to release
                pass

    # ------------------------------------------------------------------ commands

    def exec_command(self, cmd: str, in_data: bytes | None = None,
                     sudoable: bool = True) -> tuple[int, bytes, bytes]:
        self._ensure_connected()
        agent = self._agent
        display.vvv(f"EXEC {cmd}", host=self._label)
        deadline, why = self._command_deadline()
        argv = ["/bin/sh", "-c", ENV_DEFAULTS % gexec.DEFAULT_GUEST_PATH + cmd]
        stdin = in_data or None
        staged = None
        started = time.monotonic()
        try:
            if stdin is not None and len(stdin) > gexec.stdin_capacity(agent, argv):
                staged = self._stage_stdin(stdin)
                argv = ["/bin/sh", "-c", STDIN_FROM_FILE + ENV_DEFAULTS % gexec.DEFAULT_GUEST_PATH
                        + 'exec /bin/sh -c "$2"', "sh", staged, cmd]
                display.vvv(f"QGA stdin: {len(stdin)} bytes through a guest file", host=self._label)
                stdin = None
            pid = gexec.start(agent, argv, stdin=stdin, capture="both")
        except VirtQgaError as exc:
            if staged is not None:
                self._remove_quietly(staged)
            raise self._failure("cannot start the command", exc) from None
        try:
            result = gexec.wait(agent, pid, timeout=max(0.001, deadline - (time.monotonic() - started)),
                                capture="both", started=started)
        except OperationError as exc:
            if exc.state == State.RUNNING:  # past our deadline, or our wait was interrupted
                killed = self._kill(pid)
                if exc.exit_code == ExitCode.EXEC_TIMEOUT:
                    raise AnsibleError(f"{self._label}: the command did not finish within {deadline:.1f} s "
                                       f"({why}); it was killed in the guest ({killed})") from None
                raise AnsibleError(f"{self._label}: interrupted; the command was killed in the guest "
                                   f"({killed})") from None
            raise self._failure(f"lost track of the command (pid {pid})", exc) from None
        except VirtQgaError as exc:
            raise self._failure(f"lost track of the command (pid {pid})", exc) from None
        except BaseException:
            # Ansible's own task timeout (an alarm) or an interrupt: do not leave it running.
            self._kill(pid)
            raise
        for stream, truncated, data in (("stdout", result.out_truncated, result.stdout),
                                        ("stderr", result.err_truncated, result.stderr)):
            if truncated:
                cap_mib = gexec.AGENT_OUTPUT_CAP // (1024 * 1024)
                raise AnsibleError(f"{self._label}: the command's {stream} was truncated by the guest agent "
                                   f"({len(data)} bytes kept, qemu-ga keeps at most {cap_mib} MiB per "
                                   "stream): the output is incomplete, so the task cannot use it. Redirect "
                                   "large output to a file in the guest and fetch it.")
        display.vvv(f"QGA exec: rc={result.status}, {len(result.stdout)} bytes stdout, "
                    f"{len(result.stderr)} bytes stderr, {result.duration:.3f} s", host=self._label)
        return result.status, result.stdout, result.stderr

    def _command_deadline(self) -> tuple[float, str]:
        """Seconds the command may run: command_timeout, or less when the task's own
        ``timeout`` (an alarm set by ansible-core around the whole task) ends earlier."""
        limit = _positive(_option(self, "command_timeout"), "command_timeout")
        why = "command_timeout"
        left = signal.getitimer(signal.ITIMER_REAL)[0]
        if left > 0:
            task = max(0.5, left - KILL_MARGIN) if left > 2 * KILL_MARGIN else max(0.1, left / 2)
            if task < limit:
                limit, why = task, "the task's timeout"
        return limit, why

    def _stage_stdin(self, data: bytes) -> str:
        """Write ``data`` to a new private guest file; return its path."""
        agent = self._agent
        res = gexec.run(agent, ["/bin/sh", "-c", MKTEMP], timeout=agent.timeout)
        path = res.stdout.decode("utf-8", "replace").strip()
        if res.status != 0 or not path.startswith("/") or "\n" in path:
            raise OperationError(f"cannot create a temporary file in the guest (mktemp status {res.status})",
                                 state=State.UNCHANGED)
        try:
            chunk = gfiles.write_chunk_size(agent.transport.kind, agent.transport.max_request_bytes)
            with gfiles.guest_file(agent, path, "w") as handle:
                for offset in range(0, len(data), chunk):
                    piece = data[offset:offset + chunk]
                    reply = agent.file_write(handle, base64.b64encode(piece).decode("ascii"))
                    if int(reply.get("count", -1)) != len(piece):
                        raise OperationError(f"short write to {path}: {reply.get('count')} of "
                                             f"{len(piece)} bytes", state=State.FAILED)
        except BaseException:
            self._remove_quietly(path)
            raise
        return path

    def _remove_quietly(self, path: str) -> None:
        try:
            gexec.run(self._agent, ["rm", "-f", "--", path], timeout=self._agent.timeout)
        except VirtQgaError:
            display.warning(f"{self._label}: could not remove the temporary file {path} in the guest")

    def _kill(self, pid: int) -> str:
        """Kill the command's process tree; a one-line account of what happened."""
        try:
            killed = gexec.kill_tree(self._agent, pid, timeout=min(30.0, self._agent.timeout))
        except VirtQgaError as exc:
            return f"killing pid {pid} failed: {exc}"
        try:  # collect the status, so the agent forgets the process
            gexec.wait(self._agent, pid, timeout=2.0)
        except VirtQgaError:
            pass
        return f"pids {' '.join(map(str, killed))}" if killed else f"pid {pid} was already gone"

    # ------------------------------------------------------------------ files

    def put_file(self, in_path: str, out_path: str) -> None:
        self._ensure_connected()
        display.vvv(f"PUT {in_path} TO {out_path}", host=self._label)
        if not os.path.isfile(in_path):
            raise AnsibleFileNotFound(f"file or module does not exist: {in_path}")
        try:
            res = gfiles.push(self._agent, in_path, out_path, force=True)
        except VirtQgaError as exc:
            raise self._failure(f"cannot copy {in_path} to {out_path}", exc) from None
        display.vvv(f"QGA put: {res.bytes} bytes in {res.chunks} chunks, {res.duration:.3f} s, "
                    f"sha256 verified by {res.verify_method}", host=self._label)

    def fetch_file(self, in_path: str, out_path: str) -> None:
        self._ensure_connected()
        display.vvv(f"FETCH {in_path} TO {out_path}", host=self._label)
        try:
            res = gfiles.pull(self._agent, in_path, out_path, force=True)
        except VirtQgaError as exc:
            raise self._failure(f"cannot fetch {in_path}", exc) from None
        display.vvv(f"QGA fetch: {res.bytes} bytes in {res.chunks} chunks, {res.duration:.3f} s, "
                    f"sha256 verified by {res.verify_method}", host=self._label)

    # ------------------------------------------------------------------ errors

    def _failure(self, what: str, exc: VirtQgaError) -> AnsibleError:
        """Unreachable when the agent is not there (any more); a task error otherwise."""
        text = f"{self._label}: {what}: {exc}"
        if agent_gone(exc):
            return AnsibleConnectionFailure(text)
        return AnsibleError(text)


def agent_gone(exc: BaseException) -> bool:
    """Did ``exc`` (or the error it wraps) mean the guest agent is not there?

    Not there: no channel, not connected or silent, the domain gone or stopped, or an agent
    that no longer knows a process it started a moment ago (it restarted: a reboot). A
    command the agent refuses (disabled, unknown) is not in that list.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (AgentNotConfiguredError, AgentNotConnectedError, AgentTimeoutError, DomainError)):
            return True
        if isinstance(cur, GuestError) and cur.command == "guest-exec-status" and "pid" in str(cur).lower():
            return True
        cur = cur.__cause__
    return False


def _option(plugin: t.Any, name: str) -> t.Any:
    """``plugin.get_option(name)``: ansible-core leaves it unannotated (the option's type
    comes from DOCUMENTATION at run time)."""
    return plugin.get_option(name)


def _positive(value: t.Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnsibleError(f"virt_qga.guest_agent.qga: {name} must be a number, got {value!r}") from None
    if number <= 0:
        raise AnsibleError(f"virt_qga.guest_agent.qga: {name} must be positive, got {value!r}")
    return number
