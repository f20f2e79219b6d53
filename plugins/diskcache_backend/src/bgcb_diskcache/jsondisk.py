"""The diskcache disk bgcb-diskcache opens its store with: JSON text in, and never a pickle out."""

from __future__ import annotations

from typing import Any

from diskcache import Disk
from diskcache.core import MODE_PICKLE, UNKNOWN


class JsonOnlyDisk(Disk):
    """A diskcache disk that stores only ``str``/``bytes`` and never unpickles.

    diskcache pickles any other value, and unpickles whatever mode a row says;
    a writer with access to the directory could otherwise plant a pickle.
    """

    def put(self, key: Any) -> Any:
        if not isinstance(key, (str, bytes)):
            raise TypeError(f"bgcb-diskcache keys are text, not {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise ValueError("bgcb-diskcache refuses to unpickle a key found in its store")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> Any:
        if not read and not isinstance(value, (str, bytes)):
            raise TypeError(f"bgcb-diskcache stores JSON text only, not {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_PICKLE:
            raise ValueError("bgcb-diskcache refuses to unpickle a value found in its store")
        return super().fetch(mode, filename, value, read)
