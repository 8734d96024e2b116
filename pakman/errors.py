"""One exception class per failure kind, each with its process exit code.

The CLI catches :class:`PakmanError`, prints its message (one line per problem)
and exits with :attr:`PakmanError.exit_code`; no traceback reaches the user.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# userinfo (user:password@) and query strings (presigned signatures) of any URL in a text.
_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@\"']*@", re.IGNORECASE)
_QUERY = re.compile(r"(?P<url>[a-z][a-z0-9+.-]*://[^\s?#\"']*)\?[^\s#\"']*", re.IGNORECASE)


def _forms(secret: str) -> set[str]:
    """A secret as messages may show it: plain, stripped, escaped as by repr() and
    bytes' repr, percent-encoded, and each line of it."""
    from urllib.parse import quote, quote_plus

    forms = {secret, secret.strip(), repr(secret)[1:-1], repr(secret.encode())[2:-1]}
    forms |= {quote(secret, safe=""), quote_plus(secret), quote(secret)}
    forms |= {line for line in secret.splitlines() if len(line) >= 8}
    return {form for form in forms if len(form) >= 4}


def redact(text: str, secrets: Iterable[str | None] = (), limit: int | None = None) -> str:
    """Hide secrets (in every form a message may show them), URL credentials and query
    strings, then cut to ``limit`` characters.

    Redaction comes first: a secret straddling the cut would otherwise leak its head.
    """
    forms = {form for secret in secrets if secret for form in _forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUERY.sub(r"\g<url>?***", text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class PakmanError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = problems or ("unknown error",)
        super().__init__("\n".join(self.problems))


class ConfigError(PakmanError):
    """instellar.yml, a command-line option or an environment variable is wrong."""

    exit_code = 2


class KeyMaterialError(ConfigError):
    """A signing key is unreadable or the pair does not match. Never echoes key bytes."""


class PackageFormatError(ConfigError):
    """A file is not a readable v2 apk package or index."""


class VerificationError(PakmanError):
    """Packages or indexes failed signature or integrity checks."""

    exit_code = 1


class PublishError(PakmanError):
    """Storage or the deployment API refused or could not be reached."""

    exit_code = 3


def check_credential(
    name: str, value: str | None, error: type[PakmanError] = ConfigError
) -> str | None:
    """A key or token as given, refused when it holds a space, control character or
    non-ASCII (a stray newline from a file or a secret store): HTTP headers could not
    carry it, and libraries would echo it. The message names ``name``, never the value."""
    if value is not None and not (value.isascii() and value.isprintable() and " " not in value):
        raise error(
            f"{name}: must be printable ASCII without spaces or line breaks"
            " (a trailing newline?); the value is not shown"
        )
    return value
