"""The one redaction of the project (qfs_assets.redact), and its users: alerting sinks and the SoR reader."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qfs_assets.redact import is_secret_param, quote_userinfo, redact_url, scrub

PG_URL = os.environ.get("QFS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.mark.parametrize("url,expected", [
    ("postgresql://u:s3cret@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("postgresql://u:p@ss@host:5432/db", "postgresql://u:***@host:5432/db"),          # unencoded '@'
    ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u:p?s#t@h/db", "postgresql://u:***@h/db"),                        # '?' and '#' in the password
    ("postgresql://u@h/db?password=zz&application_name=a", "postgresql://u@h/db?password=***&application_name=a"),
    ("postgresql://u@h/db?sslpassword=zz;sslmode=require", "postgresql://u@h/db?sslpassword=***;sslmode=require"),
    ("https://h/x?token=a&access_token=b&key=c&secret=d&api_key=e&X-Amz-Signature=f&page=2",
     "https://h/x?token=***&access_token=***&key=***&secret=***&api_key=***&X-Amz-Signature=***&page=2"),
    ("https://h/cb#access_token=abc&state=1", "https://h/cb#access_token=***&state=1"),
    ("http://h?token=abc@x", "http://h?token=***"),                                   # '@' in the query only
    ("http://u@h/x", "http://u@h/x"),                                                 # a user is not a secret
    ("sqlite:///demo_deployment/sor.sqlite", "sqlite:///demo_deployment/sor.sqlite"),
    ("demo_deployment/sor.sqlite", "demo_deployment/sor.sqlite"),
    ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
])
def test_redact_url_every_form(url, expected):
    assert redact_url(url) == expected


def test_redact_url_without_path_for_webhooks():
    assert redact_url("https://hooks.slack.com/services/T0/B0/tok", keep_path=False) == "https://hooks.slack.com:443/…"
    assert redact_url("http://u:p@ss@127.0.0.1:9/x/tok?k=v", keep_path=False) == "http://127.0.0.1:9/…"
    assert redact_url("http://[::1]:8080/x", keep_path=False) == "http://[::1]:8080/…"
    assert redact_url("http://h:notaport/x", keep_path=False) == "<invalid url>"


def test_secret_parameter_names():
    for name in ("password", "PASSWORD", "sslpassword", "token", "access_token", "key", "secret", "api-key",
                 "client_secret", "X-Amz-Credential", "sig"):
        assert is_secret_param(name), name
    for name in ("sslmode", "application_name", "page", "options", "user", "dbname", "host"):
        assert not is_secret_param(name), name


def test_scrub_text_with_urls_and_known_secrets():
    text = ('could not connect to "postgresql://u:p@ss@h/db?password=x&sslmode=require" '
            '(FATAL: password "p@ss" failed, p%40ss, p%40ss+) see https://h/x?token=T0KEN')
    out = scrub(text, ["p@ss", None, ""])
    for leak in ("p@ss", "p%40ss", "ss@h", "password=x", "T0KEN"):
        assert leak not in out
    assert "postgresql://u:***@h/db?password=***&sslmode=require" in out and "token=***" in out
    assert scrub("no secret here: 42 rows") == "no secret here: 42 rows"


def test_quote_userinfo():
    assert quote_userinfo("postgresql://u:p@ss@h:5/db") == "postgresql://u:p%40ss@h:5/db"
    assert quote_userinfo("postgresql://u:p@h/db") == "postgresql://u:p@h/db"
    assert quote_userinfo("sqlite:///a@b/x.db") == "sqlite:///a@b/x.db"


_PASSWORD = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                                           blacklist_characters="/"), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(password=_PASSWORD, token=st.text(alphabet="abcdefXYZ0123456789-._~", min_size=1, max_size=20),
       param=st.sampled_from(["password", "sslpassword", "token", "access_token", "key", "secret"]))
def test_no_password_or_secret_parameter_survives(password, token, param):
    marked, secret = "Qz" + password + "Qz", "Wv" + token + "Wv"
    for url in (f"postgresql://user:{marked}@db.example.org:5432/atlas?{param}={secret}&sslmode=require",
                f"https://user:{marked}@example.org/path?a=1&{param}={secret}#frag"):
        shown = redact_url(url)
        assert marked not in shown and secret not in shown and "example.org" in shown
        assert marked not in scrub(f"error while reading {url}: failed")


# ---- users of the shared function ----------------------------------------------------------------
def test_sor_reader_uses_the_shared_redaction():
    from qfs_assets.readers.sor import SorError, SystemOfRecord, redact, scrub as sor_scrub

    assert redact("postgresql://u:p@ss@h/db?sslpassword=k3y") == "postgresql+psycopg2://u:***@h/db?sslpassword=***"
    assert SystemOfRecord("postgresql://u:pw@h/db?password=x").redacted == "postgresql+psycopg2://u:***@h/db?password=***"
    assert sor_scrub('FATAL: password "p@ss" failed p%40ss', "p@ss") == 'FATAL: password "***" failed ***'
    with pytest.raises(SorError) as err:
        SystemOfRecord("postgresql://u:s3cr@t@h:notaport/db")
    assert "s3cr" not in str(err.value) and "t@h" not in str(err.value)


def test_unencoded_at_in_a_postgresql_password_reaches_the_right_host():
    """SQLAlchemy alone would read host 'ss9Secret@127.0.0.1' (and show 'ss9Secret' in the error)."""
    from qfs_assets.readers.sor import SorError, SystemOfRecord

    base = PG_URL.replace("postgresql://postgres@", "postgresql://postgres:pw@ss9Secret@")
    sor = SystemOfRecord(base, table="no_such_table_here")  # the test server trusts any password
    assert sor.url.host == "127.0.0.1" and sor.url.password == "pw@ss9Secret"
    with pytest.raises(SorError, match="table does not exist") as err:
        sor.check()
    assert "ss9Secret" not in str(err.value) and "postgres:***@127.0.0.1" in str(err.value)


def test_sinks_use_the_shared_redaction():
    from qfs_assets.alerting.sinks import WebhookSink, redact_url as sink_redact_url

    sink = WebhookSink("https://u:pa55word@hooks.example.org/services/T0/B0/secrettoken123?token=abcd1234")
    assert sink.target == "https://hooks.example.org:443/…" == sink_redact_url(sink.url)
    text = sink.scrub(f"failed: {sink.url} and https://other.example.org/x?access_token=zzzz9999")
    for leak in ("pa55word", "secrettoken123", "abcd1234", "zzzz9999"):
        assert leak not in text
