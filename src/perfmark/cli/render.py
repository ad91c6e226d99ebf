"""Rendering for the CLI: Rich tables for people, JSON for scripts, one way to report errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from perfmark.errors import PerfmarkError

__all__ = [
    "EXIT_INVALID",
    "console",
    "error_console",
    "guarded",
    "print_json",
    "print_table",
    "reporting_errors",
]

EXIT_INVALID = 2
console = Console()
error_console = Console(stderr=True)


def print_json(value: Any) -> None:
    """Machine-readable output on stdout."""
    typer.echo(json.dumps(value, indent=2, default=str))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A Rich table on stdout."""
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn a perfmark error into one line on stderr and exit status 2, never a traceback."""
    try:
        yield
    except PerfmarkError as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        # One line whatever the terminal width, and the message is never read as markup.
        line = Text.assemble(("error:", "bold red"), " ", " ".join(exc.message.split()), where)
        error_console.print(line, soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_INVALID) from None


def guarded(function: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command so its errors are reported by `reporting_errors`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with reporting_errors():
            return function(*args, **kwargs)

    return wrapper
