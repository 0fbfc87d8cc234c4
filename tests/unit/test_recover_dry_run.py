# Copyright (c) virt-qga developers
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""recover's dry run (Ansible's check mode) against a scripted agent socket: a dead
run's journal and a guest left frozen. The dry run reports what it would do and sends no
thaw; the real run thaws and removes the journal; a third run has nothing to do. (The lab
tests cover a frozen guest without a journal through the Ansible module.)"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tests.unit.scripted_peer import Answers, ScriptedPeer
from virt_qga.workflows.journal import Journal
from virt_qga.workflows.recover import recover
from virt_qga.workflows.target import Target


class FrozenGuest:
    """guest-fsfreeze-status says frozen until guest-fsfreeze-thaw."""

    def __init__(self) -> None:
        self.frozen = True

    def status(self, _: dict[str, Any]) -> str:
        return "frozen" if self.frozen else "thawed"

    def thaw(self, _: dict[str, Any]) -> int:
        was, self.frozen = self.frozen, False
        return 2 if was else 0

    def agent(self) -> Answers:
        return Answers({"guest-fsfreeze-status": self.status, "guest-fsfreeze-thaw": self.thaw})


def dead_journal(sock: str, base: Path) -> Journal:
    """A snapshot run's journal, died while freezing, whose owner is gone."""
    uri, name, uuid = Target.resolve(f"unix:{sock}", socket=sock).journal_identity(None)
    journal = Journal.for_domain(uri, name, uuid, base=base)
    journal.begin(domain=name, uri=uri, uuid=uuid, operation="snapshot",
                  data={"mode": "command", "command": None, "freeze": True})
    journal.advance("freezing")
    assert journal.state is not None
    journal.state.pid, journal.state.pid_start = 2**22 + 12345, 1  # no such process
    journal.update()
    return journal


def test_dry_run_reports_and_touches_nothing_then_real_run_cleans(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="qga-", dir="/tmp") as sock_dir:
        run_the_three(os.path.join(sock_dir, "qga.sock"), tmp_path)


def run_the_three(sock: str, tmp_path: Path) -> None:
    with ScriptedPeer(sock, default=[FrozenGuest().agent()]) as peer:
        journal = dead_journal(sock, tmp_path)

        dry = recover(f"unix:{sock}", socket=sock, state_dir_=tmp_path, wait_lock=1, dry_run=True)
        assert dry.changed and dry.frozen_before is True and dry.thawed is None
        assert "would thaw the guest" in dry.actions
        assert any(a.startswith("would remove the journal of the dead run") for a in dry.actions)
        assert journal.path.exists() and "guest-fsfreeze-thaw" not in peer.commands()

        real = recover(f"unix:{sock}", socket=sock, state_dir_=tmp_path, wait_lock=1)
        assert real.changed and real.thawed == 2 and real.exit_code == 0
        assert not journal.path.exists() and "guest-fsfreeze-thaw" in peer.commands()

        again = recover(f"unix:{sock}", socket=sock, state_dir_=tmp_path, wait_lock=1, dry_run=True)
        assert not again.changed and again.frozen_before is False
        assert peer.errors == []
