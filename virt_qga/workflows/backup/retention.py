"""Retention: which backups to keep, chain by chain.

A chain is kept or removed whole: an incremental needs every backup before it in its
chain, so a chain goes only when none of its backups is kept. Removing a chain also
deletes the libvirt checkpoint it holds (the newest chain's, normally kept).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from virt_qga.errors import BadInputError, VirtQgaError, option_ref
from virt_qga.workflows.backup.store import Chain, Store

if TYPE_CHECKING:
    from virt_qga.host import Domain

__all__ = ["keep_last", "prune_domain"]


def keep_last(chains: list[Chain], n: int) -> set[str]:
    """Names of the newest ``n`` backups over all chains."""
    if n < 1:
        raise BadInputError(f"{option_ref('keep')} must be at least 1", field="keep")
    names = sorted((b.name for c in chains for b in c.backups), reverse=True)
    return set(names[:n])


def prune_domain(store: Store, domain: str, *, keep: int, host: Domain | None = None) -> list[str]:
    """Remove the domain's chains that hold none of the newest ``keep`` backups; returns
    the removed chain directories."""
    from virt_qga.host import backup as hb

    chains = store.chains(domain)
    kept = keep_last(chains, keep)
    removed = []
    for chain in chains:
        if any(b.name in kept for b in chain.backups):
            continue
        checkpoints = {b.manifest.checkpoint for b in chain.backups if b.manifest.checkpoint}
        shutil.rmtree(chain.path, ignore_errors=True)
        removed.append(str(chain.path))
        if host is not None:
            for cp in checkpoints:
                try:
                    hb.delete_checkpoint(host, cp)
                except VirtQgaError:
                    pass
    return removed
