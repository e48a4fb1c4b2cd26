"""``yolox-sdk config``: write a commented default config, show a resolved one."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from yolox_sdk.cli.common import handle_errors


def default_config_text() -> str:
    """The commented default config shipped with the package."""
    return resources.files("yolox_sdk.config").joinpath("default.yaml").read_text(encoding="utf-8")


@click.group()
def config() -> None:
    """Create and inspect config files."""


@config.command("init")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="config.yaml")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@handle_errors
def init(path: Path, force: bool) -> None:
    """Write a commented default config to PATH (default: config.yaml)."""
    if path.exists() and not force:
        raise click.UsageError(f"{path} already exists; pass --force to overwrite it.")
    path.write_text(default_config_text(), encoding="utf-8")
    click.echo(f"Wrote {path}. Set data.train_path and data.val_path, then: yolox-sdk run {path}")


@config.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("overrides", nargs=-1)
@handle_errors
def show(path: Path, overrides: tuple[str, ...]) -> None:
    """Print the config in PATH with OVERRIDES (section.key=value) applied and every default filled in."""
    from yolox_sdk.config.loader import dump_config, load_config

    click.echo(dump_config(load_config(path, overrides)), nl=False)


from yolox_sdk.cli.wizard_commands import wizard_command  # noqa: E402 - the group exists first

config.add_command(wizard_command)
