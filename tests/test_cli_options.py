"""The command line's options: grouped by purpose in --help, and defaults taken from the config dataclasses."""
from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner

from styleaxis.cli import main
from styleaxis.cli.common import OPTION_GROUPS, GroupedCommand, GroupedOption, field_default

#: command -> the config dataclasses its options fill
CONFIGS = {
    "stylize": ("styleaxis.stylize.config.StylizeConfig", "styleaxis.stylize.config.GatysConfig"),
    "train adain": ("styleaxis.stylize.adain.AdaINTrainConfig",),
    "train cin": ("styleaxis.stylize.cin.CINTrainConfig",),
    "train johnson": ("styleaxis.stylize.johnson.JohnsonTrainConfig",),
    "train stylebank": ("styleaxis.stylize.stylebank.StyleBankTrainConfig",),
    "train swap-inverse": ("styleaxis.stylize.style_swap.InverseTrainConfig",),
    "train content-head": ("styleaxis.embed.content_head.ContentHeadTrainConfig",),
}
#: click's "no default given"
_UNSET = click.Option(["--x"]).default
#: (command, option) whose default departs from the same-named field on purpose, and why
DEPARTS = {
    ("train johnson", "batch_size"): "the command has always used 8; the config keeps Johnson et al.'s 4",
    ("train stylebank", "batch_size"): "the command has always used 8; the config keeps 4",
    ("train swap-inverse", "batch_size"): "the command has always used 8; the config keeps 4",
    ("stylize", "tv_weight"): "None: each method's own default (gatys 0, mrf 0, swap 10)",
    ("stylize", "style_weight"): "None: gatys's style_weight (10) or mrf's mrf_weight (1)",
}


def _commands(command: click.Command = main, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    found = {" ".join(path): command} if path else {}
    for name, sub in getattr(command, "commands", {}).items():
        found |= _commands(sub, (*path, name))
    return found


COMMANDS = _commands()


def _class(config: str) -> type:
    module, _, name = config.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _default(config: str, name: str) -> Any:
    field = {f.name: f for f in dataclasses.fields(_class(config))}[name]
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


@pytest.mark.parametrize("argv", [["stylize"], ["train", "stylebank"]])
def test_help_lists_every_option_under_one_group_heading(argv: list[str]) -> None:
    text = CliRunner().invoke(main, [*argv, "--help"], terminal_width=200).output
    for heading in ("Input options:", "Model options:", "Output options:", "Performance options:"):
        assert heading in text, text
    assert "\nOptions:" not in text
    sections = text.split("options:\n")[1:]
    for param in _options(COMMANDS[" ".join(argv)]):
        flag = max(param.opts, key=len)
        holding = [s for s in sections if re.search(rf"^ +(-\w, )?{re.escape(flag)}(?![\w-])", s, re.M)]
        assert len(holding) == 1, (flag, len(holding))


def test_every_command_with_many_options_groups_them() -> None:
    for name in ("stylize", *(c for c in COMMANDS if c.startswith("train "))):
        command = COMMANDS[name]
        assert isinstance(command, GroupedCommand), name
        for param in _options(command):
            if param.name != "help":
                assert isinstance(param, GroupedOption) and param.group in OPTION_GROUPS, (name, param.name)


def test_option_defaults_are_the_config_dataclasses() -> None:
    """Every option that mirrors a config field, or is named like one, has that field's default."""
    checked = 0
    for name, command in COMMANDS.items():
        fields = {f.name: config for config in reversed(CONFIGS.get(name, ())) for f in dataclasses.fields(_class(config))
                  if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        for param in _options(command):
            mirrors = getattr(param, "mirrors", None)
            if mirrors is None and param.name in fields and not param.required and (name, param.name) not in DEPARTS:
                mirrors = (fields[param.name], param.name)
            if mirrors is None:
                continue
            got = None if param.default is _UNSET else param.default
            got = () if param.multiple and got is None else got
            assert got == _default(*mirrors), (name, param.name, got, _default(*mirrors))
            checked += 1
    assert checked >= 60, checked


def test_field_defaults_are_read_without_importing_the_module() -> None:
    code = ("import sys; from click.testing import CliRunner; from styleaxis.cli import main; "
            "[CliRunner().invoke(main, [*a, '--help']) for a in (['stylize'], ['train', 'stylebank'])]; "
            "print(sorted(m for m in ('torch', 'styleaxis.stylize.config', 'styleaxis.stylize.stylebank') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_field_default_follows_bases_constants_and_factories() -> None:
    assert field_default("styleaxis.stylize.stylebank.StyleBankTrainConfig", "resize") == 512  # TrainRunConfig's
    assert field_default("styleaxis.stylize.style_swap.StyleSwapConfig", "tap") == "relu3_1"  # a constant
    assert field_default("styleaxis.stylize.config.GatysConfig", "style_weights") == _default(
        "styleaxis.stylize.config.GatysConfig", "style_weights")  # default_factory: from the imported class
