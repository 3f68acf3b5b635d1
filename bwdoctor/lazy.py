"""Pay at first use, not at import: a command loads only what it runs.

* :func:`lazy_regex` returns a pattern compiled the first time it is used (``search``, ``match``,
  ``finditer``, ...). A module with many patterns costs nothing to import until one is used.
* :func:`lazy_command` declares a ``click`` command by name and one-line help; the module that
  builds the real command is imported only when the command runs or its ``--help`` is asked for,
  so ``bwdoctor --help`` lists a plugin's command without importing its implementation.
* :func:`lazy_module` stands for a module that is imported the first time one of its attributes
  is read: a check module that needs a large helper only for some inputs imports it then.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click


class LazyPattern:
    """A regular expression compiled on first use; otherwise it behaves as ``re.Pattern``."""

    __slots__ = ("_source", "_flags", "_compiled")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self._source = pattern
        self._flags = flags
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            self._compiled = re.compile(self._source, self._flags)
        return self._compiled

    @property
    def pattern(self) -> str:
        return self._source

    @property
    def flags(self) -> int:
        return self.compiled.flags

    def search(self, string: str, *args: int) -> re.Match[str] | None:
        return self.compiled.search(string, *args)

    def match(self, string: str, *args: int) -> re.Match[str] | None:
        return self.compiled.match(string, *args)

    def fullmatch(self, string: str, *args: int) -> re.Match[str] | None:
        return self.compiled.fullmatch(string, *args)

    def finditer(self, string: str, *args: int) -> Iterator[re.Match[str]]:
        return self.compiled.finditer(string, *args)

    def findall(self, string: str, *args: int) -> list[Any]:
        return self.compiled.findall(string, *args)

    def sub(self, repl: str | Callable[[re.Match[str]], str], string: str, count: int = 0) -> str:
        return self.compiled.sub(repl, string, count)

    def subn(self, repl: str | Callable[[re.Match[str]], str], string: str, count: int = 0) -> tuple[str, int]:
        return self.compiled.subn(repl, string, count)

    def split(self, string: str, maxsplit: int = 0) -> list[str | Any]:
        return self.compiled.split(string, maxsplit)

    def __getattr__(self, name: str) -> Any:  # groups, groupindex, scanner ...
        return getattr(self.compiled, name)

    def __repr__(self) -> str:
        return f"lazy_regex({self._source!r})"


def lazy_regex(pattern: str, flags: int = 0) -> LazyPattern:
    """``re.compile(pattern, flags)``, done the first time the pattern is used."""
    return LazyPattern(pattern, flags)


class LazyModule:
    """A module imported on first attribute access (through :func:`importlib.import_module`, so
    under the import lock: two threads that reach it at once get the same module)."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"lazy_module({self._name!r})"


def lazy_module(name: str) -> Any:
    """The module ``name``, imported when first used. For type checkers, import the module itself
    under ``if TYPE_CHECKING:`` and assign this in the ``else`` branch."""
    return LazyModule(name)


def lazy_command(name: str, factory: str, short_help: str) -> click.Command:
    """A command named ``name`` whose implementation, ``factory`` (``"package.module:attribute"``:
    a ``click.Command``, or a function returning one), is imported only when the command runs or
    shows its help; ``short_help`` is what ``bwdoctor --help`` lists."""
    import click

    class LazyCommand(click.Command):
        _real: click.Command | None = None

        def real(self) -> click.Command:
            if self._real is None:
                module, _, attr = factory.partition(":")
                built = getattr(importlib.import_module(module), attr)
                if not isinstance(built, click.Command):
                    built = built()
                if not isinstance(built, click.Command):
                    raise TypeError(f"{factory} returned {type(built).__name__}, expected a click.Command")
                self._real = built
            return self._real

        def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                         **extra: Any) -> click.Context:
            return self.real().make_context(info_name, args, parent=parent, **extra)

        def invoke(self, ctx: click.Context) -> Any:
            return self.real().invoke(ctx)

        def get_help(self, ctx: click.Context) -> str:
            return self.real().get_help(ctx)

    return LazyCommand(name, short_help=short_help, help=short_help)


__all__ = ["LazyModule", "LazyPattern", "lazy_command", "lazy_module", "lazy_regex"]
