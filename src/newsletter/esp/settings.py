"""The base of a provider's own table in newsletter.toml (``[sendgrid]``).

Here rather than in config.py so that the registry (which config.py asks which
tables exist) needs nothing from config.py: config → registry, never back.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ProviderSettings(BaseModel):
    """A provider's own table in newsletter.toml (``[sendgrid]``), declared in ``esp/``.

    ``table`` names it; ``moved_from_send`` lists its keys that older versions read from
    ``[send]`` (still read there, with a warning); ``sandbox_key`` names the key that asks
    the provider to deliver nothing, so that no other backend ignores it unnoticed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: ClassVar[str] = ""
    moved_from_send: ClassVar[tuple[str, ...]] = ()
    sandbox_key: ClassVar[str | None] = None

    @property
    def sandbox_requested(self) -> bool:
        return bool(self.sandbox_key and getattr(self, self.sandbox_key))
