"""Header fields for the HTTP client: a case-insensitive multi-dict.

Rules:

* Order and repetition are kept: ``items()`` gives the fields as they were
  added (or received), one pair per field line; ``Set-Cookie`` and other
  fields that cannot be combined stay separate.
* Lookup ignores case.  ``headers[name]`` is the first value (as most
  callers want for single-valued fields such as Content-Type); ``get_all``
  gives every value; ``get_list`` splits comma-separated list values.
* Names and values are ``str`` (latin-1 decoded from the wire, as RFC 9110
  5.5 treats field bytes as opaque octets); ``raw`` gives the bytes.

Invariant: ``_items`` holds ``(name, value)`` as given; ``_lower`` holds the
lowercased names at the same indexes.
"""
from collections.abc import Mapping

__all__ = ["Headers"]


class Headers:
    """Case-insensitive, order-keeping multi-dict of HTTP header fields.

    Built from a mapping, a list of ``(name, value)`` pairs (``str`` or
    ``bytes``) or another :class:`Headers`::

        h = Headers({"Accept": "text/html"})
        h.add("Set-Cookie", "a=1"); h.add("set-cookie", "b=2")
        h["accept"]              # 'text/html'
        h.get_all("SET-COOKIE")  # ['a=1', 'b=2']
        "Accept" in h            # True
    """

    __slots__ = ("_items", "_lower")

    def __init__(self, fields=None):
        self._items = []
        self._lower = []
        if fields is None:
            return
        if isinstance(fields, Headers):
            self._items = list(fields._items)
            self._lower = list(fields._lower)
            return
        pairs = fields.items() if isinstance(fields, Mapping) else fields
        for name, value in pairs:
            self.add(name, value)

    @classmethod
    def _from_raw(cls, raw):
        """Headers from the parser's ``[(lowercased bytes, bytes), ...]``.

        The parser lowercases names, so the two lists share their strings.
        """
        h = cls.__new__(cls)
        items = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
        h._items = items
        h._lower = [n for n, _ in items]
        return h

    def add(self, name, value):
        """Append a field (keeps any fields of the same name)."""
        name = _text(name)
        self._items.append((name, _text(value)))
        self._lower.append(name.lower())

    def __getitem__(self, name):
        """The first value of ``name`` (any case); KeyError when absent."""
        key = name.lower()
        lower = self._lower
        for i in range(len(lower)):
            if lower[i] == key:
                return self._items[i][1]
        raise KeyError(name)

    def get(self, name, default=None):
        """The first value of ``name``, or ``default``."""
        try:
            return self[name]
        except KeyError:
            return default

    def get_all(self, name):
        """Every value of ``name`` in order (``[]`` when absent)."""
        key = name.lower()
        return [item[1] for item, low in zip(self._items, self._lower) if low == key]

    def get_list(self, name):
        """The comma-separated list elements of every ``name`` field, stripped.

        For list-valued fields (Connection, Vary, Cache-Control); not for
        Set-Cookie or dates, whose values contain commas.
        """
        out = []
        for value in self.get_all(name):
            out.extend(p.strip() for p in value.split(",") if p.strip())
        return out

    def __setitem__(self, name, value):
        """Replace every ``name`` field with one field (at the first one's place)."""
        name = _text(name)
        key = name.lower()
        value = _text(value)
        try:
            i = self._lower.index(key)
        except ValueError:
            self._items.append((name, value))
            self._lower.append(key)
            return
        self._items[i] = (name, value)
        self._remove(key, start=i + 1)

    def __delitem__(self, name):
        """Remove every ``name`` field; KeyError when there is none."""
        key = name.lower()
        if key not in self._lower:
            raise KeyError(name)
        self._remove(key)

    def pop(self, name, default=None):
        """Remove every ``name`` field and return the first value (or ``default``)."""
        value = self.get(name, default)
        if name.lower() in self._lower:
            self._remove(name.lower())
        return value

    def setdefault(self, name, value):
        """Add ``name: value`` unless a ``name`` field exists; return the first value."""
        try:
            return self[name]
        except KeyError:
            self.add(name, value)
            return _text(value)

    def _remove(self, key, start=0):
        keep_items = self._items[:start]
        keep_lower = self._lower[:start]
        for item, low in zip(self._items[start:], self._lower[start:]):
            if low != key:
                keep_items.append(item)
                keep_lower.append(low)
        self._items = keep_items
        self._lower = keep_lower

    def __contains__(self, name):
        """True when a field named ``name`` (any case) is present."""
        return isinstance(name, str) and name.lower() in self._lower

    def __iter__(self):
        """The distinct lowercased names, in order of first appearance."""
        return iter(dict.fromkeys(self._lower))

    def keys(self):
        """The distinct lowercased names, in order of first appearance."""
        return list(dict.fromkeys(self._lower))

    def values(self):
        """Every value, one per field line."""
        return [v for _, v in self._items]

    def items(self):
        """Every ``(name, value)`` pair, one per field line, in order."""
        return list(self._items)

    @property
    def raw(self):
        """Every field as ``(name, value)`` bytes (latin-1), in order."""
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self._items]

    def copy(self):
        """An independent copy."""
        return Headers(self)

    def __len__(self):
        """The number of field lines."""
        return len(self._items)

    def __eq__(self, other):
        """Equal to another Headers, mapping or pair list with the same fields
        (names compared without case, order of fields kept)."""
        if not isinstance(other, Headers):
            try:
                other = Headers(other)
            except (TypeError, ValueError):
                return NotImplemented
        return (self._lower == other._lower
                and [v for _, v in self._items] == [v for _, v in other._items])

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable

    def __repr__(self):
        """``Headers([('name', 'value'), ...])``."""
        return f"Headers({self._items!r})"


def _text(s):
    """A field name or value as str; bytes are decoded as latin-1 (opaque octets)."""
    if isinstance(s, str):
        return s
    if isinstance(s, (bytes, bytearray)):
        return bytes(s).decode("latin-1")
    if isinstance(s, (int, float)) and not isinstance(s, bool):
        return str(s)
    raise TypeError(f"header names and values are str or bytes, not {type(s).__name__}")
