"""Built-in components mark themselves with a class decorator, one line in their own file;
a registry imports every module of its package and collects what was marked."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Builtins(Generic[T]):
    """The classes of one kind (``"estimator"``, ``"problem"``) marked as built in, by id."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._classes: dict[str, T] = {}

    def mark(self, cls: T) -> T:
        """Class decorator: register ``cls`` under its ``id`` (declared once)."""
        if not getattr(cls, "id", ""):
            raise ValueError(f"{cls.__name__} has no id")
        known = self._classes.get(cls.id)
        if known is not None and known is not cls:
            raise ValueError(f"{self.kind} id {cls.id!r} is declared twice ({known.__name__}, {cls.__name__})")
        self._classes[cls.id] = cls
        return cls

    def classes(self) -> dict[str, T]:
        """The marked classes so far, by id, in the order they were marked."""
        return dict(self._classes)
