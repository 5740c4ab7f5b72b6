"""Email backends: the interface (base) and its providers (sendgrid, outbox).

Only the modules in this package know a provider's vocabulary; see base.py.
"""

from .base import (
    CORRELATION_KEYS,
    KEY_BATCH,
    KEY_ISSUE,
    KEY_LIST,
    KEY_SEND,
    MAX_BATCH,
    Backend,
    Batch,
    DeliveryUnknown,
    IssueContent,
    Outcome,
    Recipient,
)

__all__ = [
    "CORRELATION_KEYS",
    "KEY_BATCH",
    "KEY_ISSUE",
    "KEY_LIST",
    "KEY_SEND",
    "MAX_BATCH",
    "Backend",
    "Batch",
    "DeliveryUnknown",
    "IssueContent",
    "Outcome",
    "Recipient",
]
