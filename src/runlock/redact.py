"""Keep secrets out of everything runlock writes, logs or pushes."""

from __future__ import annotations

import re
from collections.abc import Mapping

REDACTED = "***"

# Names that look like credentials. Matched case-insensitively against the whole variable name.
_SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH|COOKIE|"
    r"SESSION|_KEY$|^KEY$|_KEY_|SIGNATURE|DSN|WEBHOOK|(?:^|_)PASS(?:$|_))",
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


# rclone connection-string parameters (``:sftp,host=h,pass=xyz:path``, ``remote,pass=xyz:path``):
# a value is quoted ('' or "" doubling the quote) when it holds a comma or a colon.
_REMOTE_PARAM = re.compile(r",(?P<k>[A-Za-z][\w-]*)=(?P<v>\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'|[^,:\s]*)")
# rclone parameter names that hold credentials (pass, key, key_pem, secret_access_key, token,
# client_secret, sas_url, bearer_token, service_account_credentials, session_token, ...)
_REMOTE_SECRET_KEY = re.compile(r"pass|secret|token|key|auth|credential|sas_url|cookie|private",
                                re.IGNORECASE)
# A config field whose name looks like it holds a secret (warned about when written in clear).
_SECRET_FIELD = re.compile(r"key|token|passw(?:or)?d|secret|credential", re.IGNORECASE)


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
        out[k] = REDACTED if is_secret_name(k) else redact_remote(v)
    return out


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """Scrub URL credentials and any literal secret values out of free text (logs, messages)."""
    text = redact_url(text)
    for s in secrets or []:
        if s and len(s) >= 4:
            text = text.replace(s, REDACTED)
    return text


def redact_remote(remote: str) -> str:
    """Hide the credentials of an rclone remote string: connection-string parameters
    (``:sftp,host=h,user=u,pass=xyz:dir`` -> ``...,pass=***:dir``, also ``name,pass=xyz:dir``)
    and URL credentials. The one rule for every place a remote is recorded or shown."""
    if "," in remote:
        remote = _REMOTE_PARAM.sub(
            lambda m: f",{m.group('k')}={REDACTED}" if _REMOTE_SECRET_KEY.search(m.group("k"))
            else m.group(0),
            remote,
        )
    return redact_url(remote) if "@" in remote else remote


def _secret_arg_name(name: str) -> bool:
    leaf = name.lstrip("-+~").rsplit(".", 1)[-1].replace("-", "_")
    return bool(leaf) and (is_secret_name(leaf) or bool(_SECRET_FIELD.search(leaf)))


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with its secrets hidden: values of secret-looking options
    (``api_key=sk-..``, ``--password=..``, ``--token VALUE``), URL credentials and rclone
    connection-string secrets."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next and not arg.startswith("-"):
            out.append(REDACTED)
            hide_next = False
            continue
        hide_next = False
        name, eq, _ = arg.partition("=")
        if eq and name and " " not in name and _secret_arg_name(name):
            out.append(f"{name}={REDACTED}")
            continue
        if not eq and arg.startswith("--") and _secret_arg_name(arg):
            hide_next = True
        out.append(redact_remote(arg))
    return out


def looks_secret_field(name: str) -> bool:
    """True when a config field's name looks like it holds a secret (``api_key``, ``hf_token``,
    ``db_password``, ``client_secret``)."""
    return bool(_SECRET_FIELD.search(name))
