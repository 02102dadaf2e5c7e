"""The ``amrutam`` admin command: one module per command group.

Commands parse their options, call the core and print; the rules and the SQL live in
the core modules they call.
"""

from __future__ import annotations

import click

from amrutam.cli import accounts, audit, backup, data, dev, tasks


@click.group()
def main() -> None:
    """Amrutam administration."""


for _module in (accounts, data, audit, tasks, backup, dev):
    for _command in _module.COMMANDS:
        main.add_command(_command)
