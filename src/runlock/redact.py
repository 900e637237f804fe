"""Keep secrets out of everything runlock writes, logs or pushes."""

from __future__ import annotations

import re
from collections.abc import Mapping

REDACTED = "***"

# Names that look like credentials. Matched case-insensitively against the whole variable name.
_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH|COOKIE|"
    r"SESSION|_KEY$|^KEY$|_KEY_|SIGNATURE|DSN|WEBHOOK)",
    re.IGNORECASE,
)
# Names matching the pattern above that are known not to hold secrets.
_SAFE_NAMES = frozenset(
    {
        "KEYTIMEOUT",
        "SSH_AUTH_SOCK",
        "GPG_AGENT_INFO",
        "PYTHONHASHSEED",
        "XAUTHORITY",
        "KEYMAP",
        "MLFLOW_TRACKING_AUTH",
    }
)
# user:password@ (or token@) inside URLs: scheme://user:pass@host -> scheme://user:***@host
_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*)(?::(?P<pw>[^/@\s]*))?@")


def is_secret_name(name: str) -> bool:
    """True when an environment variable name looks like it holds a credential."""
    return name.upper() not in _SAFE_NAMES and bool(_SECRET_NAME.search(name))


def redact_url(url: str) -> str:
    """Hide credentials inside a URL (``https://user:token@host`` -> ``https://user:***@host``).

    A lone user part of an http(s) URL is often a token (``https://ghp_xxx@github.com``), so it
    is hidden too; ``ssh://git@host`` keeps its user name.
    """

    def repl(m: re.Match[str]) -> str:
        scheme, user, pw = m.group("scheme"), m.group("user"), m.group("pw")
        if pw is not None:
            return f"{scheme}{user}:{REDACTED}@"
        if scheme.lower().startswith("http") and user:
            return f"{scheme}{REDACTED}@"
        return m.group(0)

    return _URL_CREDS.sub(repl, url)


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """Copy of ``env`` with credential-like values replaced and URLs scrubbed."""
    out: dict[str, str] = {}
    for k, v in env.items():
        out[k] = REDACTED if is_secret_name(k) else redact_url(v)
    return out


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """Scrub URL credentials and any literal secret values out of free text (logs, messages)."""
    text = redact_url(text)
    for s in secrets or []:
        if s and len(s) >= 4:
            text = text.replace(s, REDACTED)
    return text
