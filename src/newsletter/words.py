"""Counting in words: "1 recipient", "2 recipients", "1 batch" — never "1 recipient(s)".

Messages are read by communications staff; a bracketed plural reads like a form.
"""

from __future__ import annotations

PLURALS = {"batch": "batches", "address": "addresses", "is": "are", "was": "were"}


def plural(count: int, word: str) -> str:
    """'1 recipient', '1,000 recipients', '1 batch', '2 batches'."""
    return f"{count:,} {word if count == 1 else PLURALS.get(word, word + 's')}"
