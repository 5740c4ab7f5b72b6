"""Email backends: the interface (base), the registry of providers by name (registry),
and the providers (sendgrid, outbox).

Only the modules in this package know a provider's vocabulary; see base.py.  A new
provider is a module here and one line in registry.BACKENDS.
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
    Capabilities,
    DeliveryUnknown,
    IssueContent,
    Outcome,
    Recipient,
    Scheduling,
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
    "Capabilities",
    "DeliveryUnknown",
    "IssueContent",
    "Outcome",
    "Recipient",
    "Scheduling",
]
