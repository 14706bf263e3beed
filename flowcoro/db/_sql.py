"""Placeholder translation: FlowCoro's one parameter style to each driver's.

FlowCoro writes parameters as ``$1, $2, ...`` (PostgreSQL's own style) on
every backend; ``params`` is a sequence and ``$n`` is ``params[n - 1]``.
A parameter may appear several times or out of order.

* PostgreSQL: sent as is (the server binds ``$n`` itself).
* SQLite: ``$n`` becomes ``?n`` (SQLite's numbered parameter), bound by the
  sqlite3 module, so nothing is interpolated into the text.
* MySQL/MariaDB: ``$n`` is replaced by the driver's escaped literal of
  ``params[n - 1]`` (asyncmy, like PyMySQL, binds client-side anyway).

Invariant: only ``$n`` tokens *outside* string literals, quoted identifiers
and comments are parameters.  The scanner below skips, per dialect:
``'...'`` strings (``''`` inside; MySQL also ``\\'``), ``"..."`` (identifier
or MySQL string), backquoted identifiers, SQLite's ``[...]`` identifiers,
``-- ...`` and ``/* ... */`` comments and MySQL's ``# ...`` comments.  A
``$`` glued to an identifier character (``col$1``) is part of a name.
"""
from __future__ import annotations

import re

__all__ = ["Template", "split"]

# One alternation per dialect: the skipped tokens come first, so a ``$n``
# inside one of them is consumed as part of the literal and never matched.
_PARAM = r"(?<![\w$])\$([0-9]+)"
_DIALECTS = {
    "mysql": re.compile(
        r"'(?:[^'\\]|\\.|'')*'"
        r'|"(?:[^"\\]|\\.|"")*"'
        r"|`(?:[^`]|``)*`"
        r"|--[^\n]*|\#[^\n]*|/\*.*?\*/|" + _PARAM, re.S),
    "sqlite": re.compile(
        r"'(?:[^']|'')*'"
        r'|"(?:[^"]|"")*"'
        r"|`(?:[^`]|``)*`"
        r"|\[[^\]]*\]"
        r"|--[^\n]*|/\*.*?\*/|" + _PARAM, re.S),
}


class Template:
    """A statement split at its parameters.

    Attributes:
        parts: the text between parameters (``len(parts) == len(indexes) + 1``).
        indexes: for each parameter occurrence, its 0-based index in params.
        nparams: the highest ``$n`` used (params must have at least that many).
    """

    __slots__ = ("parts", "indexes", "nparams")

    def __init__(self, parts: list[str], indexes: list[int]):
        self.parts = parts
        self.indexes = indexes
        self.nparams = max(indexes) + 1 if indexes else 0

    def sqlite(self) -> str:
        """The statement with ``?n`` placeholders."""
        out = [self.parts[0]]
        for i, part in zip(self.indexes, self.parts[1:]):
            out.append(f"?{i + 1}")
            out.append(part)
        return "".join(out)

    def render(self, literals: list[str]) -> str:
        """The statement with each parameter replaced by ``literals[index]``."""
        if not self.indexes:
            return self.parts[0]
        parts = self.parts
        out = [parts[0]]
        for k, i in enumerate(self.indexes):
            out.append(literals[i])
            out.append(parts[k + 1])
        return "".join(out)


#: Parsed statements per dialect, keyed by the SQL text (hot paths read
#: these dicts directly before calling :func:`split`).
CACHES: dict[str, dict[str, Template]] = {"mysql": {}, "sqlite": {}}
_CACHE_MAX = 1024   # distinct statements kept parsed per dialect; an app has far fewer


def split(sql: str, dialect: str) -> Template:
    """Parse ``sql`` for ``dialect`` ('mysql' or 'sqlite'); cached per text."""
    cache = CACHES[dialect]
    t = cache.get(sql)
    if t is not None:
        return t
    parts: list[str] = []
    indexes: list[int] = []
    pos = 0
    for m in _DIALECTS[dialect].finditer(sql):
        num = m.group(1)
        if num is None:
            continue
        n = int(num)
        if n < 1:
            from flowcoro.errors import InterfaceError
            raise InterfaceError(f"parameter ${num} in {sql!r}: parameters start at $1")
        parts.append(sql[pos:m.start()])
        indexes.append(n - 1)
        pos = m.end()
    parts.append(sql[pos:])
    t = Template(parts, indexes)
    if len(cache) >= _CACHE_MAX:
        cache.clear()           # simple and bounded; re-parsing is cheap
    cache[sql] = t
    return t
