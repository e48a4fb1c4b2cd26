"""The documentation site: it builds strictly, and every ``yolox-sdk`` command it shows exists.

The site (``mkdocs.yml``, ``docs/``) is built with ``mkdocs build --strict`` exactly as ``make docs`` does, so
a broken link, a missing page, an unknown anchor or a docstring mkdocstrings cannot render fails CI. The
commands shown in the pages' code (and in README.md, the site's front page on GitHub) are resolved against
the real click tree of ``yolox_sdk.cli.main``: each sub-command path must exist and each ``--option`` must
be one of that command's options (and a value of a choice option one of its choices); nothing is run. The
plugin guide's example package (``docs/examples/yolox-sdk-jsonl``) is installed with pip, listed by
``yolox-sdk plugins`` and put through its own tests, as the guide shows.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
PROG = "yolox-sdk"
# A shell line that starts the CLI: `yolox-sdk ...` (after a prompt and VAR=value settings, if any), or
# `... -m yolox_sdk ...` under torchrun / python.
COMMAND_START = re.compile(r"^(?:\$\s+)?(?:[A-Z_]+=\S*\s+)*(?:yolox-sdk\s|.*?\s-m\s+yolox_sdk\s)")
FENCE = re.compile(r"^(\s*)(```+|~~~+)(.*)$")
INLINE_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _documents() -> list[Path]:
    return [*PAGES, REPO_ROOT / "README.md"]


def _lines_with_fence(text: str) -> list[tuple[int, str, bool]]:
    """(line number, line, inside a fenced code block) of every line that is not a fence itself."""
    marked: list[tuple[int, str, bool]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if match and (fence is None or match.group(2).startswith(fence)):
            fence = None if fence else match.group(2)
            continue
        marked.append((number, line, fence is not None))
    return marked


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line inside a fenced code block, continuations joined."""
    lines: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line, fenced in _lines_with_fence(text):
        if not fenced:
            continue
        start, so_far = pending if pending else (number, "")
        joined = so_far + line.strip()
        if joined.endswith("\\"):
            pending = (start, joined[:-1] + " ")
            continue
        pending = None
        lines.append((start, joined))
    return lines


def _inline_commands(text: str) -> list[tuple[int, str]]:
    """Inline code spans outside fenced blocks that start with ``yolox-sdk``."""
    return [
        (number, span)
        for number, line, fenced in _lines_with_fence(text)
        if not fenced
        for span in INLINE_CODE.findall(line)
        if span.startswith(f"{PROG} ")
    ]


def documented_commands() -> list[tuple[str, int, list[str]]]:
    """Every documented CLI call as (document, line, arguments after the program name)."""
    commands = []
    for document in _documents():
        text = document.read_text(encoding="utf-8")
        for number, line in [*_code_lines(text), *_inline_commands(text)]:
            match = COMMAND_START.match(line)
            if not match:
                continue
            try:
                words = shlex.split(line[match.end() :], comments=True)
            except ValueError as error:
                pytest.fail(f"{document.relative_to(REPO_ROOT)}:{number}: cannot split {line!r}: {error}")
            # `[--split val]` marks optional parts in a synopsis; `|` would pipe the output elsewhere.
            words = [word.strip("[]") for word in words]
            if "|" in words:
                words = words[: words.index("|")]
            commands.append((str(document.relative_to(REPO_ROOT)), number, [w for w in words if w]))
    return commands


def _option_names(command: click.Command) -> dict[str, click.Parameter]:
    names: dict[str, click.Parameter] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                names[name] = param
    names.setdefault("--help", None)  # type: ignore[assignment]
    names.setdefault("-h", None)  # type: ignore[assignment]
    return names


def check_command(root: click.Group, words: list[str]) -> list[str]:
    """What is wrong with one documented call (empty when the click tree accepts its shape)."""
    problems: list[str] = []
    command: click.Command = root
    path = [PROG]
    index = 0
    while index < len(words):
        word = words[index]
        options = _option_names(command)
        if word.startswith("-") and not NUMBER.match(word):
            name, has_value, _ = word.partition("=")
            param = options.get(name, False)
            if param is False:
                problems.append(f"{' '.join(path)} has no option {name}")
                index += 1
                continue
            takes_value = param is not None and not param.is_flag and not param.count
            if takes_value and not has_value and index + 1 < len(words):
                value = words[index + 1]
                if isinstance(param.type, click.Choice) and value not in param.type.choices:
                    problems.append(f"{' '.join(path)} {name}: {value!r} is not one of {param.type.choices}")
                index += 1
            index += 1
            continue
        if isinstance(command, click.Group):
            sub = command.commands.get(word)
            if sub is None:
                problems.append(f"{' '.join(path)} has no command {word!r}")
                return problems
            command = sub
            path.append(word)
        index += 1
    needs_sub_command = isinstance(command, click.Group) and not command.invoke_without_command
    if needs_sub_command and command is not root and not {"--help", "-h"} & set(words):
        problems.append(f"{' '.join(path)} needs a sub-command")
    return problems


def test_site_builds_strictly(tmp_path: Path) -> None:
    """``mkdocs build --strict``: any warning (broken link or anchor, page left out of the nav, a docstring
    mkdocstrings cannot render) fails the build."""
    environment = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            "mkdocs.yml",
            "--site-dir",
            str(site),
        ],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "WARNING" not in output, output
    for page in (
        "index.html",
        "reference/cli/index.html",
        "reference/api/index.html",
        "reference/hooks/index.html",
    ):
        assert (site / page).is_file(), page
    cli_page = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for heading in ("yolox-sdk-train", "yolox-sdk-data-validate", "yolox-sdk-export"):
        assert f'id="{heading}"' in cli_page, heading
    # mkdocs-click's table style printed click 8.3's unset default as "Sentinel.UNSET"; the plain style is
    # click's own --help text.
    assert "Sentinel" not in cli_page


def test_every_documented_command_exists_in_the_click_tree() -> None:
    from yolox_sdk.cli.main import cli

    commands = documented_commands()
    assert len(commands) > 50, "the command extractor found almost nothing: is the fence parsing broken?"
    problems = [
        f"{document}:{line}: {problem}"
        for document, line, words in commands
        for problem in check_command(cli, words)
    ]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_wrong_commands() -> None:
    from yolox_sdk.cli.main import cli

    assert check_command(cli, ["data", "validate", "bccd", "--json", "r.json"]) == []
    assert check_command(cli, ["train", "c.yaml", "--resume", "runs/a", "training.epochs=5"]) == []
    assert check_command(cli, ["data", "valid", "bccd"]) == ["yolox-sdk data has no command 'valid'"]
    assert check_command(cli, ["eval", "best.pt", "--confidence", "0.3"]) == [
        "yolox-sdk eval has no option --confidence"
    ]
    assert check_command(cli, ["data"]) == ["yolox-sdk data needs a sub-command"]
    assert check_command(cli, ["--verbose", "plugins", "--verbose"]) == []


def test_readme_links_point_at_existing_files() -> None:
    """README.md is the front page on GitHub: its relative links (into docs/) must lead somewhere."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [t.split("#")[0] for t in targets if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]
    assert relative, "README.md links into no docs page"
    missing = [t for t in relative if t and not (REPO_ROOT / t).exists()]
    assert not missing, missing


EXAMPLE_PLUGIN = DOCS / "examples" / "yolox-sdk-jsonl"


@pytest.fixture(scope="module")
def installed_example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin guide's example package, installed with pip into a folder of its own (never the venv)."""
    work = tmp_path_factory.mktemp("example_plugin")
    source = work / "yolox-sdk-jsonl"
    # pip builds in the source tree; a copy keeps build/ and *.egg-info out of docs/.
    shutil.copytree(
        EXAMPLE_PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation"]
        + ["--target", str(site), str(source)],
        check=True,
        timeout=300,
    )
    return site


def _with_plugin(site: Path, *arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # No bytecode: the example's tests run from docs/, which must stay as committed.
    environment = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def test_example_plugin_is_listed_and_its_options_checked(
    installed_example_plugin: Path, tmp_path: Path
) -> None:
    """What the plugin guide shows: `yolox-sdk plugins` lists it with its distribution, `--verbose` its
    options, and a bad option value is a config error naming its YAML path."""
    listed = _with_plugin(installed_example_plugin, "-m", "yolox_sdk", "plugins", "--verbose", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    listing = re.compile(
        r"^\s+jsonl\s.*yolox-sdk-jsonl 0\.1\.0.*metrics\.jsonl in the run directory", re.MULTILINE
    )
    assert listing.search(listed.stdout), listed.stdout
    assert "filename (str, default 'metrics.jsonl'): the file written in the run directory" in listed.stdout
    assert _with_plugin(
        installed_example_plugin, "-m", "yolox_sdk", "config", "init", "config.yaml", cwd=tmp_path
    )
    shown = _with_plugin(
        installed_example_plugin,
        *("-m", "yolox_sdk", "config", "show", "config.yaml", "monitoring.loggers=[jsonl]"),
        "monitoring.logger_options.jsonl.filename=../x.jsonl",
        cwd=tmp_path,
    )
    assert shown.returncode == 2, shown.stdout + shown.stderr
    assert "monitoring.logger_options.jsonl.filename: expected a file name without folders" in shown.stderr


def test_example_plugin_passes_its_own_tests(installed_example_plugin: Path, tmp_path: Path) -> None:
    """The example's tests (shown in the guide) run against the installed copy, with its own pytest config."""
    tests = EXAMPLE_PLUGIN / "tests"
    completed = _with_plugin(
        installed_example_plugin,
        *("-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(EXAMPLE_PLUGIN / "pyproject.toml")),
        *("--rootdir", str(EXAMPLE_PLUGIN), str(tests)),
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "4 passed" in completed.stdout, completed.stdout
