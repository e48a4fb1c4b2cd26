"""``yolox-sdk plugins --verbose``: every option of every plugin, derived from its options class."""

from __future__ import annotations

import attrs
from click.testing import CliRunner

from yolox_sdk.cli.main import cli
from yolox_sdk.plugins.manager import get_registry
from yolox_sdk.plugins.option_docs import option_docs


@attrs.define
class _Documented:
    """Options of a test plugin.

    Attributes:
        image_dir: where the images are,
            relative to the file.
        strict: stop at the first problem.
    """

    image_dir: str | None = None
    strict: bool = False
    sizes: list[int] = attrs.Factory(lambda: [320, 416])


def test_option_docs_reads_fields_and_the_attributes_section() -> None:
    docs = {doc.name: doc for doc in option_docs(_Documented)}

    assert list(docs) == ["image_dir", "strict", "sizes"]
    assert docs["image_dir"].meaning == "where the images are, relative to the file."
    assert docs["image_dir"].default == "None" and docs["image_dir"].type == "str | None"
    assert docs["strict"].meaning == "stop at the first problem." and docs["strict"].default == "False"
    assert docs["sizes"].default == "[320, 416]" and docs["sizes"].meaning == ""
    assert option_docs(None) == []


def test_every_builtin_format_option_is_documented_and_listed() -> None:
    registry = get_registry()
    result = CliRunner().invoke(cli, ["plugins", "--verbose"])
    assert result.exit_code == 0, result.output
    for entry in registry.entries("dataset_format"):
        if entry.origin.distribution != "yolox-sdk":
            continue
        for doc in option_docs(entry.options):
            assert doc.meaning, f"format {entry.name}: option {doc.name} has no meaning in its docstring"
            assert f"      {doc.name} ({doc.type}, default {doc.default}): {doc.meaning}" in result.output
    assert "options (data.format_options.KEY):" in result.output
    assert "options (data.format_options.KEY)" not in CliRunner().invoke(cli, ["plugins"]).output
