"""The ``[signup]`` table of newsletter.toml: which lists readers may join, what they choose,
what they agree to, and the limits that keep the form from being abused.

::

    [signup]
    lists = ["members"]                      # the lists that accept sign-ups
    consent_version = "2026-12"              # change it whenever the consent text changes
    after_confirm_url = "https://www.example.org/welcome"   # optional
    confirmations_per_hour = 1               # emails to one address per hour, at most
    signups_per_minute = 5                   # form posts per client address per minute
    max_form_bytes = 4096                    # a larger form gets 413

    [signup.consent]                         # the text beside the checkbox, per language
    en = "I agree that {org} emails me its newsletter. I can unsubscribe at any time."

    [signup.topics]                          # tag = its name (one for all languages, or per language)
    labour-migration = { en = "Labour migration", es = "Migración laboral" }

The model lives here, not in :mod:`newsletter.config`, which only names it.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

# The "issue" confirmation emails belong to (outbox folder, provider category): not an issue,
# so `report` never picks it as the latest one.
CONFIRMATIONS = "confirmations"

_LIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,39}")
_LANGUAGE = re.compile(r"[a-z]{2,3}")


class Signup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lists: list[str] = Field(min_length=1, description="lists that accept sign-ups")
    consent_version: str = Field(description="names the consent text; change it with the text")
    consent: dict[str, str] = Field(min_length=1, description="language -> consent text")
    topics: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    after_confirm_url: HttpUrl | None = None
    confirmations_per_hour: int = Field(default=1, ge=1, le=100)
    signups_per_minute: int = Field(default=5, ge=1, le=10_000)
    max_form_bytes: int = Field(default=4096, ge=512, le=65_536)

    @field_validator("lists")
    @classmethod
    def _list_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _LIST_NAME.fullmatch(name):
                raise ValueError(
                    f"must name lists as their files are named (subscribers/<name>.csv); "
                    f"{name!r} is not such a name"
                )
        return value

    @field_validator("consent_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.fullmatch(value.strip()):
            raise ValueError('must be a short name such as "2026-12" (letters, digits, - . _ :)')
        return value.strip()

    @field_validator("consent")
    @classmethod
    def _texts(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for lang, text in value.items():
            if not _LANGUAGE.fullmatch(lang.lower()):
                raise ValueError(f"must be keyed by language code (en, es, fr, pt), not {lang!r}")
            if not text.strip():
                raise ValueError(f"the {lang} text is empty")
            out[lang.lower()] = text.strip()
        return out

    @field_validator("topics")
    @classmethod
    def _topics(cls, value: dict[str, str | dict[str, str]]) -> dict[str, str | dict[str, str]]:
        for tag in value:
            if not _TAG.fullmatch(tag):
                raise ValueError(
                    f"{tag!r} cannot be a tag: use letters, digits, spaces, - . _ "
                    "(no commas or semicolons), at most 40 characters"
                )
        return value

    def consent_text(self, language: str) -> str:
        """The consent text in the reader's language, else English, else the first given."""
        return (
            self.consent.get(language)
            or self.consent.get("en")
            or next(iter(self.consent.values()))
        )

    def topic_name(self, tag: str, language: str) -> str:
        names = self.topics.get(tag, tag)
        if isinstance(names, str):
            return names
        return names.get(language) or names.get("en") or next(iter(names.values()), tag)
