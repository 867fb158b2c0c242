"""Secrets out of URLs and messages: the one redaction of the project (standard library only).

Two functions, used by every module that shows a URL or a driver's / server's error text:

:func:`redact_url`
    A URL safe to show. The password of the user info becomes ``***`` (also when it holds an
    unencoded ``@``: the host starts after the *last* ``@`` of the authority, as browsers and
    :func:`urllib.parse.urlsplit` read it), and so does the value of every secret query or
    fragment parameter (``password``, ``sslpassword``, ``token``, ``access_token``, ``key``,
    ``secret``, ``api_key``, ``signature``, … see :func:`is_secret_param`). With
    ``keep_path=False`` only ``scheme://host:port/…`` is kept: for URLs whose path is itself the
    secret (webhooks: ``/services/T…/B…/token``).
:func:`scrub`
    Text safe to show: the given secrets (raw and URL-encoded) become ``***``, every URL in the
    text is passed through :func:`redact_url`, and libpq-style ``password=…`` pairs are hidden.

:func:`quote_userinfo` percent-encodes an unencoded ``@`` in a URL's password, so that parsers
which split the authority at the *first* ``@`` (SQLAlchemy's ``make_url``) read the host right.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Iterable

MASK = "***"

#: query / fragment parameter names whose value is a secret (compared lower-case, without ``-``/``_``)
SECRET_PARAMS = frozenset({
    "password", "passwd", "pwd", "pass", "sslpassword", "secret", "clientsecret", "token", "accesstoken",
    "refreshtoken", "idtoken", "authtoken", "sessiontoken", "key", "apikey", "accesskey", "privatekey",
    "secretkey", "sig", "signature", "xamzsignature", "xamzcredential", "xamzsecuritytoken", "auth",
    "authorization", "credential", "credentials", "code",
})
_SECRET_WORDS = ("password", "passwd", "secret", "token", "apikey", "credential")

_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<rest>.*)$", re.DOTALL)
#: a URL inside free text: scheme://, user info up to its last '@' (a password may hold quotes),
#: then anything up to white space or a quote/bracket
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(?:[^\s/]*@)?[^\s'\"<>`]*")
#: libpq keyword/value connection strings and similar: ``password=…`` outside a URL
_KEYWORD_SECRET = re.compile(
    r"(?i)(?<![\w?&;])(?P<key>(?:ssl)?password|passwd|pwd|secret|token|access_token|api_key)"
    r"(?P<eq>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&]+)")


def is_secret_param(name: str) -> bool:
    """Whether a query/fragment parameter of this name holds a secret (``access_token``, ``sslpassword``…)."""
    norm = urllib.parse.unquote_plus(name).lower().replace("-", "").replace("_", "").replace(".", "")
    return norm in SECRET_PARAMS or any(word in norm for word in _SECRET_WORDS) or norm.endswith("key")


def _split_authority(rest: str) -> tuple[str, str]:
    """``(authority, tail)`` of what follows ``scheme://``: the authority ends at the first ``/``
    after its last ``@`` (user info may hold unencoded ``@ ? # :``), else at the first ``/ ? #``."""
    slash = rest.find("/")
    head = rest if slash < 0 else rest[:slash]
    at = head.rfind("@")
    query = min((i for i in (head.find("?"), head.find("#")) if 0 <= i < at), default=-1)
    if query >= 0 and ":" not in head[:query]:
        at = -1  # no password before the '?': the '@' is in the query ("http://h?next=u@x")
    start = at + 1 if at >= 0 else 0
    ends = [i for i in (rest.find(c, start) for c in "/?#") if i >= 0]
    end = min(ends) if ends else len(rest)
    return rest[:end], rest[end:]


def _redact_params(text: str) -> str:
    """``a=1&password=x;token=y`` with the secret values masked; other bytes unchanged."""
    def one(part: str) -> str:
        key, eq, value = part.partition("=")
        return f"{key}={MASK}" if eq and value and is_secret_param(key) else part
    return "".join(one(p) if p not in ("&", ";") else p for p in re.split(r"([&;])", text))


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """``url`` safe to show: user info password and secret parameters as ``***``.

    ``keep_path=False`` gives ``scheme://host:port/…`` (the default port of http/https filled
    in) for URLs whose path is the secret. Never raises; text that is not ``scheme://…`` is
    returned scrubbed of ``password=…`` pairs.
    """
    url = str(url)
    match = _SCHEME.match(url.strip())
    if match is None:
        return _KEYWORD_SECRET.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", url)
    scheme, rest = match["scheme"], match["rest"]
    authority, tail = _split_authority(rest)
    userinfo, at, hostport = authority.rpartition("@")
    if not keep_path:
        try:
            parts = urllib.parse.urlsplit(f"{scheme}://{hostport}")
            host = parts.hostname or "?"
            port = parts.port or {"https": 443, "http": 80}.get(scheme.lower(), "")
        except ValueError:
            return "<invalid url>"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme.lower()}://{host}:{port}/…"
    if at:
        user, colon, password = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if colon and password else userinfo
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hashmark, fragment = query.partition("#")
    else:
        path, hashmark, fragment = path.partition("#")
    out = f"{scheme}://{userinfo}{at}{hostport}{path}"
    if qmark:
        out += "?" + _redact_params(query)
    if hashmark:
        out += "#" + (_redact_params(fragment) if "=" in fragment else fragment)
    return out


def quote_userinfo(url: str) -> str:
    """``url`` with an unencoded ``@`` of its user info percent-encoded (``u:p@ss@h`` -> ``u:p%40ss@h``)."""
    match = _SCHEME.match(url)
    if match is None:
        return url
    authority, tail = _split_authority(match["rest"])
    userinfo, at, hostport = authority.rpartition("@")
    if not at or "@" not in userinfo:
        return url
    return f"{match['scheme']}://{userinfo.replace('@', '%40')}@{hostport}{tail}"


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` safe to show: ``secrets`` (raw, URL-quoted forms) and every URL's secrets as ``***``."""
    text = str(text)
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return _KEYWORD_SECRET.sub(lambda m: f"{m['key']}{m['eq']}{MASK}", text)
