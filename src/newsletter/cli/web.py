"""Commands: preview and archive (registered on the shared app when imported)."""

from __future__ import annotations
