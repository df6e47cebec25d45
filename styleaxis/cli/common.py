"""What the command modules share: the click group that maps errors to one line, options grouped by
purpose in ``--help``, option defaults read from the config dataclasses, and small option helpers."""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import click

from styleaxis.media.disk import DiskFullError

__all__ = ["OPTION_GROUPS", "CliGroup", "GroupedCommand", "GroupedOption", "field_default", "module_constant",
           "option", "set_threads", "split_names"]

#: the sections of a command's ``--help``, in this order; each option belongs to one
OPTION_GROUPS = ("input", "model", "output", "performance", "other")


def field_default(config: str, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config`` (``"package.module.Class"``).

    Where the default is a literal (or a module-level constant holding one) it is read from the module's
    source with :mod:`ast`, so that ``--help`` does not import the module (torch, FAISS, Beam). Anything else
    (a ``default_factory``, an expression) comes from the imported class. tests/test_cli_options.py checks
    every such default against the imported dataclass.
    """
    module, _, cls = config.rpartition(".")
    if module not in sys.modules:
        try:
            found = _class_default(module, cls, name)
            if found is not _ABSENT:
                return found
        except _NotLiteral:
            pass
    return _imported_default(module, cls, name)


def module_constant(module: str, name: str) -> Any:
    """A module-level constant of ``module`` (e.g. the list of stylisation methods), read from the source like
    :func:`field_default` when it is a literal, else from the imported module."""
    if module not in sys.modules:
        try:
            where, node = _definition(module, name)
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                return _literal(where, node.value)
        except _NotLiteral:
            pass
    return getattr(importlib.import_module(module), name)


def _imported_default(module: str, cls: str, name: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(module), cls))}
    if name not in fields:
        raise LookupError(f"{module}.{cls} has no field {name!r}")
    field = fields[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise LookupError(f"{module}.{cls}.{name} has no default")


class _NotLiteral(Exception):
    """The source does not give the default as a literal; the imported class must be asked."""


_ABSENT = object()


@lru_cache(maxsize=None)
def _source(module: str) -> ast.Module:
    """The parsed source of ``module``, found without executing it (only its parent packages' ``__init__``)."""
    package, _, leaf = module.rpartition(".")
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / f"{leaf}.py"
        if path.is_file():
            return ast.parse(path.read_text(), str(path))
    raise _NotLiteral(module)


def _definition(module: str, name: str) -> tuple[str, ast.stmt]:
    """The module-level statement that defines ``name`` in ``module``, following ``from x import name``."""
    for node in _source(module).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return module, node
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return module, node
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    base = module.rsplit(".", node.level)[0] if node.level else ""
                    source = ".".join(part for part in (base, node.module) if part)
                    return _definition(source, alias.name)
    raise _NotLiteral(f"{module}.{name}")


def _class_default(module: str, cls: str, name: str) -> Any:
    """The literal default of ``name`` in class ``cls`` or its bases, or ``_ABSENT`` when none defines it."""
    where, node = _definition(module, cls)
    if not isinstance(node, ast.ClassDef):
        raise _NotLiteral(f"{module}.{cls}")
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
            if stmt.value is None:
                raise _NotLiteral(f"{module}.{cls}.{name}")
            return _literal(where, stmt.value)
    for base in node.bases:  # dataclass fields of a subclass override its bases', left to right
        if not isinstance(base, ast.Name):
            raise _NotLiteral(f"{module}.{cls}")
        found = _class_default(where, base.id, name)
        if found is not _ABSENT:
            return found
    return _ABSENT


def _literal(module: str, value: ast.expr) -> Any:
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "field":
        given = {kw.arg: kw.value for kw in value.keywords}
        if "default" not in given:
            raise _NotLiteral(module)  # default_factory: the imported class makes it
        return _literal(module, given["default"])
    if isinstance(value, ast.Name):
        where, node = _definition(module, value.id)
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            raise _NotLiteral(f"{module}.{value.id}")
        return _literal(where, node.value)
    if isinstance(value, ast.BinOp) and type(value.op) in _ARITHMETIC:  # e.g. 32 * 2**20
        left, right = _literal(module, value.left), _literal(module, value.right)
        if not all(type(v) in (int, float) for v in (left, right)) or (isinstance(value.op, ast.Pow) and right > 64):
            raise _NotLiteral(module)
        return _ARITHMETIC[type(value.op)](left, right)
    try:
        return ast.literal_eval(value)
    except ValueError:
        raise _NotLiteral(module) from None


_ARITHMETIC: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b, ast.Pow: lambda a, b: a ** b,
}


class GroupedOption(click.Option):
    """A click option listed under ``group`` (one of :data:`OPTION_GROUPS`) in ``--help``.

    ``mirrors=("package.module.Config", "field")`` says which config field the option sets; its default is
    then that field's default (:func:`field_default`) unless ``default`` is given (a different spelling of
    the same value, e.g. a tuple joined with commas).
    """

    def __init__(self, *args: Any, group: str = "other", mirrors: tuple[str, str] | None = None,
                 **kwargs: Any) -> None:
        if group not in OPTION_GROUPS:
            raise ValueError(f"option group must be one of {', '.join(OPTION_GROUPS)}, got {group!r}")
        if mirrors is not None and "default" not in kwargs:
            kwargs["default"] = field_default(*mirrors)
        super().__init__(*args, **kwargs)
        self.group = group
        self.mirrors = mirrors


def option(group: str, *decls: str, mirrors: tuple[str, str] | None = None,
           **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``click.option`` for a :class:`GroupedOption` in ``group`` (input, model, output, performance, other)."""
    return click.option(*decls, cls=GroupedOption, group=group, mirrors=mirrors, **kwargs)


class GroupedCommand(click.Command):
    """A click command whose ``--help`` lists its options in one section per group ("Input options:",
    "Model options:", ...; untagged ones such as ``--help`` under "Other options:"). A command with no
    grouped option keeps click's single "Options:" section."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        params = [p for p in self.get_params(ctx) if not isinstance(p, click.Argument)]
        if not any(isinstance(p, GroupedOption) for p in params):
            super().format_options(ctx, formatter)
            return
        sections: dict[str, list[tuple[str, str]]] = {group: [] for group in OPTION_GROUPS}
        for param in params:
            record = param.get_help_record(ctx)
            if record is not None:
                sections[getattr(param, "group", "other")].append(record)
        for group, records in sections.items():
            if records:
                with formatter.section(f"{group.capitalize()} options"):
                    formatter.write_dl(records)


class CliGroup(click.Group):
    """A click group that turns the library's documented exceptions into one-line errors (exit 1).

    FileNotFoundError, ValueError and KeyError/LookupError are what styleaxis raises for bad input, and
    DiskFullError (styleaxis.media.disk) for a full disk, naming the file; anything else is a bug and keeps
    its traceback. Its commands are :class:`GroupedCommand` and its
    sub-groups ``CliGroup``.
    """

    command_class = GroupedCommand
    group_class = type

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (FileNotFoundError, DiskFullError, ValueError, KeyError, LookupError) as exc:
            # a plain KeyError's str() is the repr of its key; subclasses with their own __str__ keep theirs
            plain_key_error = isinstance(exc, KeyError) and type(exc).__str__ is KeyError.__str__ and exc.args
            message = exc.args[0] if plain_key_error else str(exc)
            raise click.ClickException(str(message)) from exc


def split_names(text: str | None) -> tuple[str, ...]:
    """The comma-separated names of an option (``"a, b,"`` -> ``("a", "b")``); none for ``None`` or ``""``."""
    return tuple(part.strip() for part in text.split(",") if part.strip()) if text else ()


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU threads (imports torch only when given)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
