"""``yolox-sdk plugins``: what is installed, by kind, with the distribution that provides it."""

from __future__ import annotations

from typing import Any

import click

from yolox_sdk.cli.common import handle_errors
from yolox_sdk.cli.output import CommandOutput, command_output, output_options, table


@click.command()
@click.option(
    "--verbose",
    "-v",
    "show_options",
    is_flag=True,
    help="Also list each plugin's options: key, type, default and meaning (where its config sets them).",
)
@output_options
@handle_errors
def plugins(show_options: bool, as_json: bool, quiet: bool) -> None:
    """List every plugin by kind and distribution, plus broken or conflicting plugins.

    --quiet prints one 'KIND NAME' line per plugin (and the problems); --json prints every kind's plugins,
    their options, the conflicts and the broken plugins as one document.
    """
    from yolox_sdk.plugins.manager import get_registry

    registry = get_registry()
    with command_output(as_json, quiet) as out:
        for kind in registry.kinds:
            entries = registry.entries(kind.name)
            out.line(click.style(f"{kind.label}s:", bold=True))
            if not entries:
                out.line("  (none)")
            else:
                out.print(_plugin_table(entries))
            for entry in entries if show_options else ():
                _echo_options(out, entry, kind)
            if quiet:
                for entry in entries:
                    out.result(f"{kind.name} {entry.name}")
        problems = [
            f"conflict: {kind} '{name}' is registered by {', '.join(str(entry.origin) for entry in claimants)}"
            for (kind, name), claimants in registry.conflicts().items()
        ]
        for line in problems:
            click.secho(line, fg="yellow", err=as_json)
        for broken in registry.broken:
            click.secho(f"broken: {broken.origin}: {broken.error}", fg="red", err=as_json)
        out.json(_document(registry))


def _plugin_table(entries: list[Any]) -> Any:
    rows = [
        (
            "  " + entry.name,
            f"{entry.origin.distribution} {entry.origin.version}".strip(),
            entry.description or "",
        )
        for entry in entries
    ]
    return table(("  name", "from", "description"), rows)


def _echo_options(out: CommandOutput, entry: Any, kind: Any) -> None:
    """The options of ``entry`` under its kind's table, with the config key that sets them."""
    from yolox_sdk.plugins.option_docs import option_docs

    docs = option_docs(entry.options)
    if not docs:
        out.line(f"  {entry.name}: no options")
        return
    where = f" ({kind.config.options_path(entry.name)}.KEY)" if kind.config is not None else ""
    out.line(f"  {entry.name} options{where}:")
    for doc in docs:
        meaning = f": {doc.meaning}" if doc.meaning else ""
        out.line(f"      {doc.name} ({doc.type}, default {doc.default}){meaning}")


def _document(registry: Any) -> dict[str, Any]:
    """``--json``: each kind's plugins (always with their options: -v only changes the text), the conflicts
    and the broken plugins."""
    from yolox_sdk.plugins.option_docs import option_docs

    kinds = {}
    for kind in registry.kinds:
        kinds[kind.name] = [
            {
                "name": entry.name,
                "distribution": entry.origin.distribution,
                "version": entry.origin.version,
                "description": entry.description,
                "options_key": kind.config.options_path(entry.name) if kind.config is not None else None,
                "options": [
                    {"name": doc.name, "type": doc.type, "default": doc.default, "meaning": doc.meaning}
                    for doc in option_docs(entry.options)
                ],
            }
            for entry in registry.entries(kind.name)
        ]
    return {
        "kinds": kinds,
        "conflicts": [
            {"kind": kind, "name": name, "registered_by": [str(entry.origin) for entry in claimants]}
            for (kind, name), claimants in registry.conflicts().items()
        ],
        "broken": [{"plugin": str(broken.origin), "error": str(broken.error)} for broken in registry.broken],
    }
