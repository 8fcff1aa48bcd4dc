"""Every CLI command and subcommand is documented in README.md.

Commands are discovered from ``newsletter.cli.COMMANDS`` at test time (and click groups are
walked for their subcommands), so a command added without its README section fails here.
A top-level command needs its heading ``### `newsletter <command>` ``; a subcommand of a
group needs its usage, ``newsletter <group> <sub>``, somewhere in the README (the group's
section lists each one with an example).
"""

from __future__ import annotations

import click
import pytest

from newsletter.cli import COMMANDS, cli

from .conftest import REPO


def command_paths() -> list[tuple[str, ...]]:
    """("init",), ("lists", "create"), ... for every command the CLI offers."""
    ctx = click.Context(cli, info_name="newsletter")
    found: list[tuple[str, ...]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        found.append(path)
        if isinstance(command, click.Group):
            sub_ctx = click.Context(command, info_name=path[-1], parent=ctx)
            for name in command.list_commands(sub_ctx):
                sub = command.get_command(sub_ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, (*path, name))

    for name in sorted(COMMANDS):
        command = cli.get_command(ctx, name)
        assert command is not None, f"COMMANDS names {name!r} but it cannot be loaded"
        walk(command, (name,))
    return found


def undocumented(readme: str, paths: list[tuple[str, ...]]) -> list[str]:
    missing = []
    for path in paths:
        usage = "newsletter " + " ".join(path)
        if len(path) == 1:
            if f"### `{usage}`" not in readme:
                missing.append(f"heading ### `{usage}`")
        elif usage not in readme:
            missing.append(usage)
    return missing


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    paths = command_paths()
    assert {p[0] for p in paths} == set(COMMANDS)
    assert undocumented(readme, paths) == [], "add these to README.md (before ## Configuration)"


def test_command_sections_come_before_configuration() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    configuration = readme.index("## Configuration")
    for name in COMMANDS:
        assert readme.index(f"### `newsletter {name}`") < configuration, name


def test_the_check_fails_for_an_undocumented_command_or_subcommand() -> None:
    readme = "### `newsletter init`\n\n```sh\nnewsletter lists create NAME\n```\n"
    paths = [("init",), ("new",), ("lists",), ("lists", "create"), ("lists", "delete")]
    assert undocumented(readme, paths) == [
        "heading ### `newsletter new`",
        "heading ### `newsletter lists`",
        "newsletter lists delete",
    ]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name: str) -> None:
    ctx = click.Context(cli, info_name="newsletter")
    command = cli.get_command(ctx, name)
    assert command is not None
    assert COMMANDS[name][1], f"{name} has no one-line help in COMMANDS"
    assert (command.help or "").strip(), f"{name} has no docstring/help"
