"""The terminal, as the command line meets it: width, colour, encoding.

* width: ``COLUMNS`` when set, else the terminal's, else None (not a terminal: reports are then
  one item per line, never wrapped);
* colour: only on a terminal, never with ``NO_COLOR`` set or ``TERM=dumb``;
* encoding: a locale that cannot encode a character (ISO-8859-1, ASCII) gets an ASCII stand-in
  (``✔`` → ``+``, ``—`` → ``-``) instead of a crash.

Rich tables are rendered to text here and written by the caller, so that a reader that goes
away (``bwdoctor kb | head -1``) is one ``BrokenPipeError`` the entry point handles quietly.
"""

from __future__ import annotations

import codecs
import io
import os
import shutil
import sys
from typing import Any

ERROR_HANDLER = "bwdoctor-ascii"
# ASCII under a name of its own: click treats a stream whose encoding is "ascii" as misconfigured
# and writes UTF-8 to it instead, bytes an ASCII terminal or file cannot show
ASCII_CODEC = "bwdoctor_ascii"
_ASCII = {
    "✔": "+", "✖": "x", "▲": "!", "○": "o", "‼": "!!", "—": "-", "–": "-", "…": "...", "→": "->", "←": "<-",
    "≥": ">=", "≤": "<=", "×": "x", "·": "-", "•": "*", "‘": "'", "’": "'", "“": '"', "”": '"', "³": "^3",
    "µ": "u", "±": "+/-", "≈": "~", "━": "-", "─": "-", "│": "|", "┃": "|",
}


def _ascii_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    bad = exc.object[exc.start:exc.end]
    return "".join(_ASCII.get(ch, "?") for ch in bad), exc.end


def _find_codec(name: str) -> codecs.CodecInfo | None:
    if name != ASCII_CODEC:
        return None
    ascii_codec = codecs.lookup("ascii")
    return codecs.CodecInfo(ascii_codec.encode, ascii_codec.decode, name=ASCII_CODEC,
                            incrementalencoder=ascii_codec.incrementalencoder,
                            incrementaldecoder=ascii_codec.incrementaldecoder,
                            streamwriter=ascii_codec.streamwriter, streamreader=ascii_codec.streamreader)


def _is_ascii(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name == "ascii"
    except LookupError:
        return False


def install_stdio_fallback() -> None:
    """Make standard output and error write an ASCII stand-in for what their encoding lacks.

    A stream whose encoding is ASCII is switched to the same encoding under another name, so
    that click writes to it as it is instead of replacing it with a UTF-8 one."""
    try:
        codecs.lookup_error(ERROR_HANDLER)
    except LookupError:
        codecs.register_error(ERROR_HANDLER, _ascii_fallback)
        codecs.register(_find_codec)
    for stream in (sys.stdout, sys.stderr):
        raw = getattr(stream, "encoding", None) or ""
        enc = raw.lower().replace("-", "").replace("_", "")
        if enc in ("utf8", "utf8sig"):
            continue
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                if _is_ascii(raw):
                    stream.flush()
                    reconfigure(encoding=ASCII_CODEC, errors=ERROR_HANDLER)
                else:
                    reconfigure(errors=ERROR_HANDLER)
            except (ValueError, OSError, io.UnsupportedOperation):
                continue


def is_terminal(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def unicode_ok(stream: Any = None) -> bool:
    enc = (getattr(stream or sys.stdout, "encoding", None) or "").lower().replace("-", "")
    return enc.startswith("utf")


def color_ok(stream: Any = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (any value) or TERM=dumb."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    return is_terminal(stream)


def width(stream: Any = None) -> int | None:
    """``COLUMNS`` when set to a number, else the terminal's width, else None (not a terminal)."""
    raw = os.environ.get("COLUMNS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if is_terminal(stream):
        return shutil.get_terminal_size((100, 24)).columns
    return None


def render(*renderables: Any, wide: int = 200) -> str:
    """Rich renderables (tables) as text for standard output: at the terminal's or ``COLUMNS``'
    width (``wide`` when neither), coloured only where :func:`color_ok` allows, ASCII boxes for a
    locale without Unicode."""
    from rich import box
    from rich.console import Console

    buf = io.StringIO()
    color = color_ok()
    con = Console(file=buf, width=width() or wide, force_terminal=color, no_color=not color,
                  color_system="standard" if color else None, highlight=False, emoji=False,
                  legacy_windows=False, safe_box=True)
    plain = not unicode_ok()
    for r in renderables:
        if plain and hasattr(r, "box"):
            r.box = box.ASCII
        con.print(r)
    return buf.getvalue()
