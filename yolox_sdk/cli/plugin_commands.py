"""``yolox-sdk plugins``: what is installed, by kind, with the distribution that provides it."""

from __future__ import annotations

from typing import Any

import click

from yolox_sdk.cli.common import handle_errors


@click.command()
@click.option(
    "--verbose",
    "-v",
    "show_options",
    is_flag=True,
    help="Also list each plugin's options: key, type, default and meaning (where its config sets them).",
)
@handle_errors
def plugins(show_options: bool) -> None:
    """List every plugin by kind and distribution, plus broken or conflicting plugins."""
    from yolox_sdk.plugins.manager import get_registry

    registry = get_registry()
    for kind in registry.kinds:
        entries = registry.entries(kind.name)
        click.secho(f"{kind.label}s:", bold=True)
        if not entries:
            click.echo("  (none)")
        for entry in entries:
            origin = f"{entry.origin.distribution} {entry.origin.version}".strip()
            description = f" - {entry.description}" if entry.description else ""
            click.echo(f"  {entry.name:<16} [{origin}]{description}")
            if show_options:
                _echo_options(entry, kind)
    for (kind, name), claimants in registry.conflicts().items():
        who = ", ".join(str(entry.origin) for entry in claimants)
        click.secho(f"conflict: {kind} '{name}' is registered by {who}", fg="yellow")
    for broken in registry.broken:
        click.secho(f"broken: {broken.origin}: {broken.error}", fg="red")


def _echo_options(entry: Any, kind: Any) -> None:
    """The options of ``entry`` under its listing line, with the config key that sets them."""
    from yolox_sdk.plugins.option_docs import option_docs

    docs = option_docs(entry.options)
    if not docs:
        click.echo("      (no options)")
        return
    if kind.config is not None:
        click.echo(f"      options ({kind.config.options_path(entry.name)}.KEY):")
    for doc in docs:
        meaning = f": {doc.meaning}" if doc.meaning else ""
        click.echo(f"      {doc.name} ({doc.type}, default {doc.default}){meaning}")
