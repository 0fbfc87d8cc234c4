"""The ``virt-qga`` console script: start-up settings that must precede every import.

Kept apart from :mod:`virt_qga.cli.main` so that nothing (click, our modules) is
imported before them. Only the installed script runs this; ``python -m
virt_qga.cli.main`` and calls of :func:`~virt_qga.cli.main.main` from Python do not.

The cyclic garbage collector is off while the CLI starts: importing click, libvirt
and our modules allocates enough container objects to trigger ~30 collections that
find almost nothing (they are all still referenced), about 6-9 ms of a ~100 ms
process (docs/benchmarks.md, "Start-up"). Reference counting still frees everything
that is not in a cycle. The root group turns the collector back on for every command
that may run long or move bulk data; the read-only commands (``SILENT_COMMANDS``)
finish, exit with ``os._exit`` and never need it.
"""

from __future__ import annotations

import gc


def run() -> None:
    gc.disable()
    from virt_qga.cli.main import main

    main()
