"""CLI subcommands that live beside the code they run.

Every module in this package is imported by :func:`load_all`; each registers
its subcommands with :func:`sre_agent.cli.command`.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["load_all"]


def load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
