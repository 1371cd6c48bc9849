"""Named registries of what plugins provide, each remembering which plugin registered what."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from btk.errors import BtkError, DuplicateNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Things of one kind (readers, degraders, models, reporters) by name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def add(self, item: T, plugin: str) -> None:
        """Register ``item`` (which has a ``name``) on behalf of ``plugin``.

        Raises:
            DuplicateNameError: the name is taken; the message names both plugins.
            TypeError: ``item`` has no usable ``name``.
        """
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"plugin '{plugin}' registered a {self.kind} without a name: {item!r}")
        if name in self._items:
            raise DuplicateNameError(
                f"plugin '{plugin}' registers {self.kind} '{name}', "
                f"already registered by plugin '{self._owners[name]}'; the second one is ignored"
            )
        self._items[name] = item
        self._owners[name] = plugin

    def get(self, name: str) -> T:
        """The item called ``name``.

        Raises:
            BtkError: no such name; the message lists the known ones.
        """
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise BtkError(f"unknown {self.kind} '{name}' (known: {known})") from None

    def owner(self, name: str) -> str:
        """The plugin that registered ``name``."""
        return self._owners[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def by_plugin(self, plugin: str) -> list[str]:
        """Names registered by ``plugin``, sorted."""
        return sorted(n for n, p in self._owners.items() if p == plugin)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)
