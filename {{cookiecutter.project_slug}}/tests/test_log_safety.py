"""Logs that no request can forge, and that never hold a URL's credentials or signature."""

import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.control.log_safety import (
    escape_for_log,
    redact_url_secrets,
    summarize,
)
from {{ cookiecutter.package_name }}.control.logs import make_formatter, one_record
from {{ cookiecutter.package_name }}.http_client import redact_url

from .conftest import make_app, read_log, wait_ready

# A line as the atom writes it: date, time, level, pid, [request id], logger: message.
LINE_START_RE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ \d+ \[")
FORGED = "2026-01-01 00:00:00.000 INFO 1 [forged] atom.api.base: admin logged in"
# Credentials and signature parameters of URLs that callers put in their bodies.
SECRETS = ("usecret1", "psecret2", "asecret3", "ssecret4", "gsecret5", "ksecret6", "tsecret7")
SIGNED_URL = (
    "https://usecret1:psecret2@images.example/a.jpg?X-Amz-Signature=asecret3"
    "&sig=ssecret4&X-Goog-Signature=gsecret5&key=ksecret6&access_token=tsecret7&w=640"
)


@pytest.fixture
def atom(settings: Settings) -> Iterator[TestClient]:
    """The atom with fake models, ready."""
    with TestClient(make_app(settings)) as client:
        wait_ready(client, settings.atom_api_prefix)
        yield client


def lines_of(settings: Settings) -> list[str]:
    """Every line of the log file."""
    return read_log(settings).splitlines()


def test_a_newline_in_the_path_forges_no_line(
    atom: TestClient, settings: Settings, prefix: str
) -> None:
    """A %0a in the path does not start a new log line: the raw path is logged."""
    forged_path = f"{prefix}/detect%0a{FORGED.replace(' ', '%20')}"
    reply = atom.post(forged_path, json={"data": [], "src_type": "base64"})
    assert reply.status_code == 404
    lines = lines_of(settings)
    assert not any(line.startswith(FORGED) for line in lines)
    assert all(LINE_START_RE.match(line) or line.startswith(" ") for line in lines if line)
    assert any(f"{prefix}/detect%0a2026-01-01" in line for line in lines)


def test_a_trailing_newline_does_not_reach_the_route(atom: TestClient, prefix: str) -> None:
    """/detect%0a is not /detect (a regex's "$" matches before a final newline)."""
    body = {"data": [], "src_type": "base64"}
    assert atom.post(f"{prefix}/detect", json=body).status_code == 200
    for suffix in ("%0a", "%0d", "%00", "%0d%0a"):
        reply = atom.post(f"{prefix}/detect{suffix}", json=body)
        assert reply.status_code == 404, suffix
        assert reply.json()["code"] == 404


def test_escape_sequences_do_not_reach_the_log(atom: TestClient, settings: Settings) -> None:
    """A terminal escape sequence in a logged header value is escaped."""
    atom.post(
        f"{settings.atom_api_prefix}/detect",
        content=b"xx",
        headers={"content-type": "text/plain\x1b[2J\x1b]0;owned\x07", "X-Request-ID": "esc"},
    )
    text = read_log(settings)
    assert "\x1b" not in text and "\x07" not in text
    assert "text/plain\\x1b[2J\\x1b]0;owned\\x07" in text


@pytest.mark.parametrize("padding", [0, 400], ids=["short body", "long body"])
def test_url_secrets_never_reach_the_log(
    atom: TestClient, settings: Settings, prefix: str, padding: int
) -> None:
    """Credentials and signature parameters of a URL in a body or query are not logged."""
    body = {"data": [SIGNED_URL], "src_type": "stream", "threshold": 0.5}
    if padding:
        body["data"].append("p" * padding)
    query = "?sig=ssecret4&key=ksecret6&page=2"
    reply = atom.post(f"{prefix}/detect{query}", json=body, headers={"X-Request-ID": "url"})
    assert reply.status_code == 200
    text = read_log(settings)
    for secret in SECRETS:
        assert secret not in text, secret
    line = next(line for line in text.splitlines() if "[url]" in line)
    assert '"https://images.example/...(' in line  # a URL in a body: its host only
    assert "a.jpg" not in line
    assert '"page":"2"' in line


def test_credential_query_names_never_reach_the_log(
    atom: TestClient, settings: Settings, prefix: str
) -> None:
    """jwt, code and pass in the query, values holding quotes and brackets, are hidden."""
    query = "?jwt=jsecret1&code=csecret2&pass=p%22secret3%27%3C&page=2"
    body = {"data": ["https://h/cb#access_token=fsecret4"], "src_type": "stream"}
    reply = atom.post(f"{prefix}/detect{query}", json=body, headers={"X-Request-ID": "creds"})
    assert reply.status_code == 200
    text = read_log(settings)
    for secret in ("jsecret1", "csecret2", "secret3", "fsecret4"):
        assert secret not in text, secret
    line = next(line for line in text.splitlines() if "[creds]" in line)
    assert '"page":"2"' in line


def test_formatter_keeps_every_record_on_lines_of_its_own() -> None:
    """Control characters are escaped and continuation lines indented, tracebacks included."""
    formatter = make_formatter()
    try:
        raise ValueError(f"bad input\n{FORGED}\r\x1b[2J")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "got %s", ("a\nb",), None)
        record.exc_info = __import__("sys").exc_info()
    record.request_id, record.trace_id = "-", "-"
    lines = formatter.format(record).split("\n")
    assert lines[0].endswith("got a")
    assert lines[1] == "  b"
    assert all(line.startswith("  ") for line in lines[1:])
    assert any(line.strip() == FORGED + "\\r\\x1b[2J" for line in lines[1:])


def test_escape_for_log() -> None:
    """C0 and C1 controls, DEL and the Unicode line separators are escaped; the rest is kept."""
    assert escape_for_log("plain /a b?c=d é 中") == "plain /a b?c=d é 中"
    assert escape_for_log("a\nb\rc\td\x00e\x1bf\x7fg\x85h\u2028i") == (
        "a\\nb\\rc\\td\\x00e\\x1bf\\x7fg\\x85h\\u2028i"
    )


def test_unprintable_but_safe_text_is_kept() -> None:
    """Text that is not printable yet holds nothing unsafe (a no-break space, a soft hyphen,
    a zero-width space) comes out of escape_for_log and one_record as it went in."""
    text = "a\u00a0b\u00adc\u200bd \u3000e"
    assert not text.isprintable()
    assert escape_for_log(text) == text
    assert one_record(text) == text
    assert one_record(text + "\nnext") == text + "\n  next"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://u:p@h/x.jpg", "https://***@h/x.jpg"),
        ("http://127.0.0.1:1\\@allowed.test/x", "http://***@allowed.test/x"),
        ("https://h/x?sig=1&w=2", "https://h/x?sig=***&w=2"),
        ("https://h/x?X-Amz-Credential=a%2Fb&X-Amz-Security-Token=t", None),
        ("see https://h/x?key=k1 and https://h/y?api_key=k2", None),
        ("no url here, key=value and a@b.c", "no url here, key=*** and a@b.c"),
        ("/9j/4AAQSkZJRgABAQ==", "/9j/4AAQSkZJRgABAQ=="),
        ("https://h/x?keyframe=3&monkey=4", "https://h/x?keyframe=3&monkey=4"),
        ("https://cb.example/#access_token=k1&token_type=bearer", "https://cb.example/#***"),
        ("/detect?w=1#access_token=k1", "/detect?w=1#access_token=***"),
        ("https://h/page#section-2", "https://h/page#***"),
        ("https://h/a?jwt=k1&code=k2&pass=k1&w=1", "https://h/a?jwt=***&code=***&pass=***&w=1"),
        ("https://h/a?password=k1\"'<k2>&w=1", "https://h/a?password=***&w=1"),
        ("https://u:k1\"'<@k2@host/x?q=1", "https://***@host/x?q=1"),
        ("https://h/?accessKey=k1&authCode=k2&PHPSESSID=k1", None),
        ("failed: 'https://h/x?token=k1' (timeout)", "failed: 'https://h/x?token=*** (timeout)"),
        ("data:image/png;base64,iVBORw0KGgo=", "data:image/png;base64,iVBORw0KGgo="),
    ],
)
def test_redact_url_secrets(text: str, shown: str | None) -> None:
    """Userinfo and secret-looking parameters are hidden wherever they are in a string."""
    redacted = redact_url_secrets(text)
    if shown is not None:
        assert redacted == shown
    for value in ("k1", "k2", "a%2Fb", "=t", "<"):
        if value in text:
            assert value not in redacted


def test_credential_names_hide_any_value() -> None:
    """Every credential-like parameter name hides a value holding any printable character,
    while the envelope's ``code`` key in a body stays visible."""
    names = ("jwt", "code", "pass", "password", "token", "secret", "key", "sig", "auth")
    for name in names:
        for value in ('s"1', "s'2", "s<3>", "s;4", "s(5)", "s%226"):
            text = f"GET /x?w=1&{name}={value}&v=2 and https://h/?{name}={value}"
            assert value not in redact_url_secrets(text), (name, value)
    assert summarize({"code": 200, "jwt": "x"}) == {"code": 200, "jwt": "***"}


def test_summaries_and_client_logs_hide_url_secrets() -> None:
    """Strings in logged bodies and the URLs the HTTP client logs are redacted the same way."""
    shown = str(summarize({"data": [SIGNED_URL] * 3}))
    assert redact_url(SIGNED_URL) == redact_url_secrets(SIGNED_URL)
    for secret in SECRETS:
        assert secret not in shown
        assert secret not in redact_url(SIGNED_URL)
