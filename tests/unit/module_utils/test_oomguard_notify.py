"""Alert sinks (oomguard_notify): webhook against a real HTTP server on 127.0.0.1, email
through a fake MTA script, journal through a datagram socket."""

import io
import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ansible.module_utils.oomguard_notify import (
    SinkConfigError, SinkError, backoff_delays, load_sinks, log_journal, notify, read_secret, validate_sinks)

EVENT = {"source": "oomguard-alertd", "severity": "critical", "kind": "memory_available",
         "message": "CRITICAL memory_available: memory available is 3.2%", "host": "web1",
         "time": 1700000000.0, "details": {"value": 3.2}}


class Recorder(BaseHTTPRequestHandler):
    """Fails the first `fail_first` requests with `fail_status`, then answers 200."""

    def do_POST(self):  # noqa: N802 (http.server API)
        server = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.requests.append({"body": body, "headers": dict(self.headers)})
        status = server.fail_status if len(server.requests) <= server.fail_first else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    servers = []

    def start(fail_first=0, fail_status=503):
        server = HTTPServer(("127.0.0.1", 0), Recorder)
        server.requests = []
        server.fail_first = fail_first
        server.fail_status = fail_status
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append(server)
        return server, "http://127.0.0.1:%d/hook" % server.server_address[1]
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "webhook.secret"
    path.write_text("s3cret-token\n")
    os.chmod(str(path), 0o600)
    return str(path)


def webhook_sinks(url, **extra):
    config = {"webhook": dict({"enabled": True, "url": url, "retries": 3, "backoff": 0.5, "backoff_max": 30,
                               "timeout": 2}, **extra)}
    return validate_sinks(config)


def deliver(event, sinks, **kwargs):
    stream = io.StringIO()
    return notify(event, sinks, journal_socket="", stream=stream, **kwargs), stream.getvalue()


@pytest.mark.parametrize("fail_first,retries,ok,attempts,sleeps", [
    (0, 3, True, 1, []),
    (2, 3, True, 3, [0.5, 1.0]),
    (3, 3, True, 4, [0.5, 1.0, 2.0]),
    (4, 3, False, 4, [0.5, 1.0, 2.0]),
    (5, 0, False, 1, []),
])
def test_webhook_retries_with_exponential_backoff(http_server, secret_file, fail_first, retries, ok, attempts, sleeps):
    server, url = http_server(fail_first=fail_first)
    slept = []
    results, log = deliver(EVENT, webhook_sinks(url, retries=retries, secret_file=secret_file), sleep=slept.append)
    hook = [r for r in results if r["sink"] == "webhook"][0]
    assert hook["ok"] is ok and hook["attempts"] == attempts
    assert slept == sleeps
    assert len(server.requests) == attempts
    last = server.requests[-1]
    assert json.loads(last["body"].decode()) == EVENT
    assert last["headers"]["Content-Type"] == "application/json"
    assert last["headers"]["Authorization"] == "Bearer s3cret-token"
    if not ok:
        assert "webhook sink failed" in log and "HTTP 503" in log


def test_webhook_client_error_is_not_retried(http_server):
    server, url = http_server(fail_first=10, fail_status=400)
    slept = []
    results, _log = deliver(EVENT, webhook_sinks(url), sleep=slept.append)
    assert results[-1]["ok"] is False and "HTTP 400" in results[-1]["error"]
    assert len(server.requests) == 1 and slept == []


def test_webhook_unreachable_is_retried(http_server):
    server, url = http_server()
    server.shutdown()
    server.server_close()
    slept = []
    results, _log = deliver(EVENT, webhook_sinks(url, retries=2, timeout=0.5), sleep=slept.append)
    assert results[-1]["ok"] is False and results[-1]["attempts"] == 3 and slept == [0.5, 1.0]


def test_webhook_hmac_signature(http_server, secret_file):
    import hashlib
    import hmac
    server, url = http_server()
    deliver(EVENT, webhook_sinks(url, secret_file=secret_file, secret_mode="hmac"))
    request = server.requests[0]
    expected = hmac.new(b"s3cret-token", request["body"], hashlib.sha256).hexdigest()
    assert request["headers"]["X-Oomguard-Signature"] == "sha256=" + expected
    assert "Authorization" not in request["headers"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_secret_readable_by_others_is_refused(http_server, tmp_path, mode):
    path = tmp_path / "secret"
    path.write_text("token")
    os.chmod(str(path), mode)
    server, url = http_server()
    results, _log = deliver(EVENT, webhook_sinks(url, secret_file=str(path)))
    assert results[-1]["ok"] is False and "must be 0600" in results[-1]["error"]
    assert server.requests == []
    with pytest.raises(SinkError, match="0600"):
        read_secret(str(path))


def test_min_severity_and_recovery_routing(http_server):
    server, url = http_server()
    sinks = webhook_sinks(url, min_severity="critical")
    deliver(dict(EVENT, severity="warning"), sinks)
    assert server.requests == []
    deliver(dict(EVENT, severity="recovery"), sinks)
    deliver(EVENT, sinks)
    assert [json.loads(r["body"].decode())["severity"] for r in server.requests] == ["recovery", "critical"]


def test_backoff_delays_capped():
    assert backoff_delays(6, 1.0, 10) == [1.0, 2.0, 4.0, 8.0, 10, 10]
    assert backoff_delays(0, 1.0, 10) == []


@pytest.fixture
def fake_mta(tmp_path):
    """A sendmail stand-in that records its argv and the message it was given."""
    out = tmp_path / "mta"
    script = tmp_path / "sendmail"
    script.write_text("#!%s\nimport json, sys\nopen(%r, 'w').write(json.dumps({'argv': sys.argv[1:], "
                      "'stdin': sys.stdin.read()}))\nsys.exit(int(%r))\n" % (sys.executable, str(out), "0"))
    os.chmod(str(script), 0o755)
    return script, out


def test_email_through_local_mta_argv_no_shell(fake_mta):
    script, out = fake_mta
    sinks = validate_sinks({"email": {"enabled": True, "to": ["ops@example.com", "oncall+oom@example.org"],
                                      "from": "oomguard@web1.example.com", "sendmail": str(script)}})
    results, _log = deliver(dict(EVENT, message="it's $(rm -rf /) `bad`; really"), sinks)
    assert results[-1] == {"sink": "email", "ok": True, "error": None, "attempts": 1}
    recorded = json.loads(out.read_text())
    assert recorded["argv"] == ["-oi", "-f", "oomguard@web1.example.com", "--", "ops@example.com", "oncall+oom@example.org"]
    assert "Subject: [oomguard critical] web1: memory_available" in recorded["stdin"]
    assert "To: ops@example.com, oncall+oom@example.org" in recorded["stdin"]
    assert "it's $(rm -rf /) `bad`; really" in recorded["stdin"]


def test_email_mta_failure_reported(fake_mta, tmp_path):
    script, _out = fake_mta
    script.write_text("#!/bin/sh\necho 'no route' >&2\nexit 75\n")
    sinks = validate_sinks({"email": {"enabled": True, "to": ["ops@example.com"], "sendmail": str(script)}})
    results, log = deliver(EVENT, sinks)
    assert results[-1]["ok"] is False and "exited 75: no route" in results[-1]["error"]
    assert "email sink failed" in log


@pytest.mark.parametrize("config,fragment", [
    ({"email": {"enabled": True, "to": []}}, "non-empty list"),
    ({"email": {"enabled": True, "to": ["-oQ/tmp/x@evil"]}}, "plain address"),
    ({"email": {"enabled": True, "to": ["a b@example.com"]}}, "plain address"),
    ({"email": {"enabled": True, "to": ["a@example.com"], "sendmail": "sendmail"}}, "absolute path"),
    ({"webhook": {"enabled": True, "url": "ftp://x"}}, "http:// or https://"),
    ({"webhook": {"enabled": True, "url": "https://x", "retries": -1}}, "retries"),
    ({"webhook": {"enabled": True, "url": "https://x", "secret_mode": "basic"}}, "secret_mode"),
    ({"webhook": {"min_severity": "fatal"}}, "min_severity"),
    ({"pager": {}}, "unknown sink"),
])
def test_validate_sinks_rejects(config, fragment):
    with pytest.raises(SinkConfigError, match=fragment):
        validate_sinks(config)


def test_load_sinks(tmp_path):
    assert load_sinks(str(tmp_path / "missing.json"))["webhook"]["enabled"] is False
    path = tmp_path / "sinks.json"
    path.write_text('{"webhook": {"enabled": true, "url": "https://hooks.example.com/x"}}')
    sinks = load_sinks(str(path))
    assert sinks["webhook"]["retries"] == 3 and sinks["journal"]["enabled"] is True
    path.write_text("{nope")
    with pytest.raises(SinkConfigError, match="not valid JSON"):
        load_sinks(str(path))


def test_journal_native_protocol(tmp_path):
    path = str(tmp_path / "journal.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        results = notify(dict(EVENT, message="line one\nline two"), None, journal_socket=path)
        data = sock.recv(65536)
    finally:
        sock.close()
    assert results == [{"sink": "journal", "ok": True, "error": None, "attempts": 1}]
    assert b"PRIORITY=2\n" in data and b"SYSLOG_IDENTIFIER=oomguard-alertd\n" in data
    assert b"OOMGUARD_KIND=memory_available\n" in data
    # multi-line values use the binary length-prefixed form
    assert b"MESSAGE\n" + (len(b"line one\nline two")).to_bytes(8, "little") + b"line one\nline two\n" in data


def test_journal_falls_back_to_stderr_prefix():
    stream = io.StringIO()
    assert log_journal("hello", 4, socket_path="/nonexistent/socket", stream=stream) == "stderr"
    assert stream.getvalue() == "<4>hello\n"


# --- recipients and URLs are matched whole (issue 15) ----------------------------------

@pytest.mark.parametrize("sinks, fragment", [
    ({"email": {"enabled": True, "to": ["ops@example.com\n"]}}, "not a plain address"),
    ({"email": {"enabled": True, "to": ["ops@example.com\r\nBcc: x@evil.example"]}}, "not a plain address"),
    ({"email": {"enabled": True, "to": ["ops@example.com"], "from": "a@b.example\n"}}, "not a plain address"),
    ({"webhook": {"enabled": True, "url": "https://hooks.example.com/oom\r\nX-Evil: 1"}}, "control characters"),
    ({"webhook": {"enabled": True, "url": "https://hooks.example.com/oom\n"}}, "control characters"),
    ({"webhook": {"enabled": True, "url": "https://hooks.example.com/o om"}}, "no spaces"),
    ({"webhook": {"enabled": True, "url": 5}}, "sinks.webhook.url: 5"),
])
def test_recipients_and_urls_with_cr_lf_are_refused(sinks, fragment):
    with pytest.raises(SinkConfigError, match=fragment):
        validate_sinks(sinks)


@pytest.mark.parametrize("sinks, fragment", [
    ({"email": "ops@example.com"}, "sinks.email: 'ops@example.com' must be an object"),
    ({"journal": 5}, "sinks.journal: 5 must be an object"),
    ({"email": {"enabled": "yes"}}, "sinks.email.enabled: 'yes' must be true or false"),
    ({"email": {"enabled": True, "to": ["a@b.example"], "sendmail": 5}}, "sinks.email.sendmail: 5"),
    ({"webhook": {"enabled": True, "url": "https://a.example/b", "timeout": float("nan")}}, "sinks.webhook.timeout"),
    ({"webhook": {"enabled": True, "url": "https://a.example/b", "backoff_max": float("inf")}}, "backoff_max"),
    ({"webhook": {"enabled": True, "url": "https://a.example/b", "retries": 10 ** 400}}, "sinks.webhook.retries"),
    ({"webhook": {"enabled": True, "url": "https://a.example/b", "secret_file": 5}}, "sinks.webhook.secret_file: 5"),
])
def test_check_sinks_wrong_types_are_config_errors_not_tracebacks(sinks, fragment):
    """Issue 15: --check-sinks exits 2 naming the key, never a TypeError."""
    with pytest.raises(SinkConfigError) as err:
        validate_sinks(sinks)
    assert fragment in str(err.value)
