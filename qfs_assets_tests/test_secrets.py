"""Finding 5 of issue 19: a secret in the system-of-record URL appears nowhere.

The fault-injection pass found a password given as ``?password=`` leaking into the evidence
JSON (``inputs.database``), the ``.sql`` header, stderr, the alert outbox and webhook body and
Dagster's run storage, and an unencoded ``@`` in a password leaking its tail. This test runs the
dual-write activities through the CLI against the real PostgreSQL (trust authentication, so any
password connects) with secrets in every form of URL, makes them pass, fail, find bad input and
find the database unreachable, then hunts the secret strings in stdout and stderr, every webhook
body, and every file under the test's folder: evidence JSON and Parquet, the reconciliation
``.sql``, the diff ledger, the alert outbox and ledger, and the Dagster instance (its SQLite run
and event storage included).
"""

from __future__ import annotations

import json
import urllib.parse

import pytest

from qfs_assets import cli
from qfs_assets_tests.test_dual_write import SOR_DDL, export, o, pg_server  # noqa: F401 - the fixture
from qfs_assets_tests.test_scenarios import Hook

PW_AT = "Se@cret-At@Pw-41"  # an unencoded '@' inside a password
PW_QUERY = "QueryPw-Secret-7"
PW_SSL = "SslPw-Secret-9"
TOKEN = "tok-Secret-5c1e"
DAY = "2026-03-31"
SECRETS = [PW_AT, "cret-At", "At@Pw-41", "Pw-41", PW_QUERY, PW_SSL, TOKEN]


def forms(secret: str) -> set[str]:
    return {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}


def hunt(text: str | bytes, where: str) -> None:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    for secret in SECRETS:
        for form in forms(secret):
            assert form.encode() not in data, f"secret {form!r} found in {where}"


@pytest.fixture
def sor_schema(pg_server):  # noqa: F811
    schema = pg_server.new_schema()
    with pg_server.engine.begin() as c:
        c.exec_driver_sql(SOR_DDL.format(table=f"{schema}.qfs_objects", collate="", ts_type="timestamptz"))
        c.exec_driver_sql(f"INSERT INTO {schema}.qfs_objects VALUES "
                          "('a', 1, 'cccc', 100, 2, 3, '2026-03-30T12:00:00Z', false), "
                          "('only-in-sor', 1, 'cccc', 100, 2, 3, '2026-03-30T12:00:00Z', false)")
    yield schema
    pg_server.drop(schema)


def test_no_secret_of_any_url_form_reaches_any_output(sor_schema, tmp_path, monkeypatch, capfd):
    reader = export(tmp_path, [o("a"), o("only-in-manifest")])  # writes tmp_path/export
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ev = tmp_path / "ev"
    path = f"options=-csearch_path%3D{sor_schema}"
    urls = {
        "at_in_password": f"postgresql://postgres:{PW_AT}@127.0.0.1:5432/test?{path}&sslpassword={PW_SSL}",
        "query_password": f"postgresql://postgres@127.0.0.1:5432/test?password={PW_QUERY}&{path}&application_name=qfs",
        "token": f"postgres://postgres:{PW_AT}@127.0.0.1:5432/test?{path}&access_token={TOKEN}",
    }
    hook = Hook()
    codes = {}
    try:
        monkeypatch.setenv("QFS_ALERT_WEBHOOK_URLS", hook.url)
        base = ["--export-root", str(reader.root), "--evidence-root", str(ev)]
        # judged: a month with inconsistencies (criteria fail, .sql written); libpq refuses access_token (bad input)
        for name, url in urls.items():
            codes[f"month_{name}"] = cli.main(["run", "dual_write_verification", "--partition", "2026-03-01",
                                               "--sor-url", url, *base])
            codes[f"day_{name}"] = cli.main(["run", "dual_write_diff", "--partition", DAY, "--sor-url", url, *base])
        # unreachable (nothing listens on port 1) and bad input (no such table), with the secrets in the URL
        codes["unreachable"] = cli.main(["run", "dual_write_diff", "--partition", DAY, "--sor-url",
                                         urls["at_in_password"].replace(":5432/", ":1/"), *base])
        codes["bad_input"] = cli.main(["run", "dual_write_diff", "--partition", DAY, "--sor-url",
                                       urls["query_password"].replace(sor_schema, "no_such_schema"), *base])
        # a URL that does not even parse
        codes["unparsable"] = cli.main(["run", "dual_write_diff", "--partition", DAY, "--sor-url",
                                        f"postgresql://postgres:{PW_AT}@127.0.0.1:notaport/test?password={PW_QUERY}",
                                        *base])
    finally:
        hook.close()
    out, err = capfd.readouterr()
    assert codes == {"month_at_in_password": 1, "day_at_in_password": 0, "month_query_password": 1,
                     "day_query_password": 0, "month_token": 2, "day_token": 2, "unreachable": 4, "bad_input": 2,
                     "unparsable": 2}, (codes, err[-2000:])

    # what the operator sees
    hunt(out, "stdout")
    hunt(err, "stderr")
    assert "***" in err  # the errors do show the URLs, masked

    # what was sent
    kinds = sorted(alert["kind"] for _, alert in hook.posts)
    assert {"criteria_failed", "source_unreachable", "bad_input"} <= set(kinds), kinds
    for path_, alert in hook.posts:
        hunt(json.dumps(alert), f"webhook body {alert['kind']}")

    # what was stored: the evidence (JSON, Parquet, .sql), the ledgers, the alert state, the Dagster instance
    doc = json.loads((ev / "dual_write_verification" / "dual_write_verification_20260301.json").read_text())
    # the last judged month is the one with the password in the query
    assert doc["inputs"]["system_of_record"]["database"].startswith("postgresql+psycopg2://postgres@127.0.0.1:5432/")
    assert "password=***" in doc["inputs"]["system_of_record"]["database"]
    sql = (ev / "dual_write_verification" / "dual_write_verification_20260301.reconciliation.sql").read_text()
    assert "-- database postgresql+psycopg2://postgres@127.0.0.1:5432/test?" in sql and "password=***" in sql
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in home.rglob("*")), "the Dagster instance's SQLite storage"
    assert any("_alerts" in p.parts for p in files) and any("dual_write_diff_ledger" in p.parts for p in files)
    for p in files:
        hunt(p.read_bytes(), str(p.relative_to(tmp_path)))
