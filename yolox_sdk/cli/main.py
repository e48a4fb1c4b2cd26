"""The ``yolox-sdk`` command line.

Exit codes: 0 success, 2 usage or config error, 1 runtime failure. Errors the user can fix are printed
as one paragraph without a traceback; ``--verbose`` shows the traceback and debug logs.
Sub-commands import their heavy dependencies lazily so ``yolox-sdk --help`` stays fast and works even
when a plugin is broken.
"""

from __future__ import annotations

import logging

import click

from yolox_sdk import __version__
from yolox_sdk.cli.common import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Show debug logs and full tracebacks.")
@click.version_option(__version__, prog_name="yolox-sdk")
def cli(verbose: bool) -> None:
    """Finetune YOLOX detectors on your own data, evaluate and export them.

    Start with `yolox-sdk config init config.yaml`, edit it, then `yolox-sdk run config.yaml`.
    """
    configure_logging(verbose)


def _register_commands() -> None:
    from yolox_sdk.cli import (
        benchmark_commands,
        compare_commands,
        config_commands,
        data_commands,
        model_commands,
        plugin_commands,
        prune_commands,
        report_commands,
        runs_commands,
    )

    cli.add_command(config_commands.config)
    cli.add_command(plugin_commands.plugins)
    cli.add_command(data_commands.data)
    cli.add_command(runs_commands.runs)
    cli.add_command(compare_commands.compare)
    cli.add_command(report_commands.report)
    cli.add_command(benchmark_commands.benchmark)
    cli.add_command(prune_commands.prune)
    for command in model_commands.COMMANDS:
        cli.add_command(command)
    _register_plugin_commands()


def _register_plugin_commands() -> None:
    try:
        from yolox_sdk.plugins.manager import get_plugin_manager

        get_plugin_manager().hook.register_commands(cli=cli)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a plugin's command must never break the CLI
        logging.getLogger(__name__).warning("A plugin failed to add commands: %s", error)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="yolox-sdk")


if __name__ == "__main__":
    main()
