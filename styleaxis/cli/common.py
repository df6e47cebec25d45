"""What the command modules share: the click group that maps errors to one line, and small option helpers."""
from __future__ import annotations

from typing import Any

import click

__all__ = ["CliGroup", "set_threads", "split_names"]


class CliGroup(click.Group):
    """A click group that turns the library's documented exceptions into one-line errors (exit 1).

    FileNotFoundError, ValueError and KeyError/LookupError are what styleaxis raises for bad input;
    anything else is a bug and keeps its traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (FileNotFoundError, ValueError, KeyError, LookupError) as exc:
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
