"""The one exception tree of `newsletter`.

Every error a user can cause is a :class:`NewsletterError`; the CLI prints its
``message`` (one paragraph, naming the file, line and field where there is one)
and exits non-zero without a traceback unless ``--debug`` is given.  Anything
else that escapes is a bug and is shown with its traceback.

::

    NewsletterError                  user-facing; .message, .hint, .exit_code
    ├── ConfigError                  newsletter.toml or an environment variable (.key)
    ├── InputError                   a file the user wrote: .path, .line, .column, .field
    │   ├── IssueError               issues/*.yaml (.problems: every problem found, not just the first)
    │   ├── SubscriberListError      subscribers/*.csv
    │   └── TemplateError            templates/<theme>/* (missing file, syntax error)
    ├── CheckFailed                  `check` found errors; the build refuses to write
    ├── LedgerError                  the send state refuses a transition (already sent, unknown outcome)
    ├── StateDatabaseError           .newsletter/state.db is busy, full, damaged or unwritable (exit 2)
    │   └── EventStoreError          (events.py) the events tables in it cannot be opened or written
    ├── TokenError                   a forged, truncated or altered unsubscribe token
    ├── Conflict                     (studio.py) the issue file changed on disk since the studio
    │                                loaded it: Save refuses to overwrite (409, reload or keep both)
    └── ProviderError                the email provider answered with an error: .status, .body
        ├── ProviderRejected         400/401/403/413: stop, the request will not succeed if repeated
        └── ProviderUnavailable      429/5xx/connection refused before the request left: retry later
            └── DeliveryUnknown      (esp/base.py) the request left, no answer: never retried by itself

Errors that never reach the user as such: each is caught close to where it is
raised and turned into an answer or a message.

::

    Exception
    ├── WebhookRefused               (esp/webhooks.py) a webhook post failed its signature: 403
    ├── ValueError
    │   └── BatchError               (esp/webhooks.py) a webhook body that is not a batch of events: 400
    ├── BodyTooLarge, BodyTimeout,   (server/bodies.py) a request body over the cap (413), too slow
    │   ClientGone                   (408), or abandoned by its client (one log line)
    ├── TooManyNodes                 (issue_yaml.py) an alias bomb in a YAML file: an IssueError
    ├── _Unsure                      (issue_yaml_fast.py) libyaml may read a file otherwise than
    │                                ruamel.yaml: ruamel.yaml reads it instead
    ├── NotAForm                     (studio_yaml.py) a YAML file the studio's form cannot show: text editor
    ├── _TooLarge                    (studio_app.py) a studio request body over its cap: 413
    ├── TooLong                      (rows.py) a subscriber's values over the provider's limit
    └── _Stop                        (engine.py) a send must stop: becomes the report's state and reason

``tests/test_architecture.py`` fails when a module defines an exception that is not
named here.

Errors carry data, not formatting, so that ``--format json`` and the web pages
can present them in their own way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class NewsletterError(Exception):
    """Base of every error a user can cause and fix."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(NewsletterError):
    """A setting is missing or wrong; ``key`` names the setting or environment variable."""

    exit_code = 2

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key


def format_path(loc: tuple[int | str, ...]) -> str:
    """A location as people count: ("articles", 2, "image") -> articles[3].image, the third.

    Positions in a list count from 1 in every message (articles[1] is the first article,
    social[2] the second `[[social]]` table), as staff number them; code counts from 0.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part + 1}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass(frozen=True)
class Problem:
    """One thing wrong in an input file, located as precisely as we can."""

    message: str
    path: Path | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    field: str | None = None  # e.g. "articles[3].image.alt"
    hint: str | None = None
    severity: str = "error"  # "error" or "warning"
    code: str = "invalid"

    def location(self) -> str:
        parts = [str(self.path) if self.path else "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        where = self.location()
        field = f" {self.field}:" if self.field else ""
        text = f"{where}:{field} {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "code": self.code,
            "file": str(self.path) if self.path else None,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


class HasProblems:
    """Mixin for results that carry check problems (a build, a preview snapshot)."""

    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


class InputError(NewsletterError):
    """A file the user wrote is wrong; carries one or more located problems."""

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems = problems if isinstance(problems, list) else [problems]
        first = self.problems[0]
        super().__init__("\n".join(p.render() for p in self.problems))
        self.path = first.path
        self.line = first.line
        self.column = first.column
        self.field = first.field


class IssueError(InputError):
    """An issue YAML file cannot be read or does not validate."""


class SubscriberListError(InputError):
    """A subscriber CSV file cannot be read."""


class TemplateError(InputError):
    """A theme template is missing or has a syntax error."""


class CheckFailed(NewsletterError):
    """`check` found errors; commands that write output refuse to continue."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        lines = [p.render() for p in errors] or [p.render() for p in problems]
        super().__init__(
            "check found problems; nothing was written:\n" + "\n".join(lines),
            hint="fix them and run `newsletter check` again",
        )


class LedgerError(NewsletterError):
    """The send ledger refuses an action that could send twice or lose a record."""


class StateDatabaseError(NewsletterError):
    """The state database (``.newsletter/state.db``) cannot be used: busy too long, disk
    full, damaged or not writable.  Like a configuration problem, the user fixes the
    machine, not the input, so it exits 2; ``path`` names the file."""

    exit_code = 2

    def __init__(self, message: str, *, path: Path | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path


class TokenError(NewsletterError):
    """An unsubscribe token that we did not issue (forged, truncated or altered)."""


class ProviderError(NewsletterError):
    """The email provider answered with an error; its status and body are kept verbatim."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.body = body
        self.field = field


class ProviderRejected(ProviderError):
    """A request the provider will never accept as it is (400, 401, 403, 413)."""


class ProviderUnavailable(ProviderError):
    """A passing failure (429, 5xx, timeout, connection error); ``retry_after`` in seconds."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.retry_after = retry_after
