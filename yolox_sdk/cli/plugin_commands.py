"""``yolox-sdk plugins``: what is installed, by kind, with the distribution that provides it."""

from __future__ import annotations

import click

from yolox_sdk.cli.common import handle_errors


@click.command()
@handle_errors
def plugins() -> None:
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
    for (kind, name), claimants in registry.conflicts().items():
        who = ", ".join(str(entry.origin) for entry in claimants)
        click.secho(f"conflict: {kind} '{name}' is registered by {who}", fg="yellow")
    for broken in registry.broken:
        click.secho(f"broken: {broken.origin}: {broken.error}", fg="red")
