# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alert sinks shared by oomguard's agents: journal, email (local MTA), HTTP webhook.

Standard library only. An event is a dict:

  {source, severity: info|warning|critical|recovery, kind, message, host, time, details}

`load_sinks(path)` reads /etc/oomguard/sinks.json (written by the swap_alert role):

  {"journal": {"enabled": true},
   "email":   {"enabled": false, "to": ["ops@example.com"], "from": "oomguard@host",
               "sendmail": "/usr/sbin/sendmail", "min_severity": "warning", "timeout": 30},
   "webhook": {"enabled": false, "url": "https://hooks.example.com/oom", "timeout": 5,
               "retries": 3, "backoff": 1.0, "backoff_max": 30,
               "secret_file": "/etc/oomguard/webhook.secret", "secret_mode": "bearer",
               "min_severity": "warning"}}

A missing file means journal only. `notify(event, sinks)` never raises: it returns one
result per sink ({"sink", "ok", "error", "attempts"}) and logs failures to the journal.
Recovery events go wherever the matching alert went (they pass any min_severity).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket
import stat
import sys
import time

SINKS_PATH = "/etc/oomguard/sinks.json"
SEVERITIES = ("info", "warning", "critical", "recovery")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2, "recovery": 2}
# syslog priorities (journal PRIORITY=)
SEVERITY_PRIORITY = {"info": 6, "warning": 4, "critical": 2, "recovery": 5}
SECRET_MODES = ("bearer", "hmac")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
_ADDRESS_RE = re.compile(r"\A[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")  # whole: no final newline
_URL_RE = re.compile(r"\Ahttps?://[!-~]+\Z")  # printable ASCII only: no CR/LF, no spaces

DEFAULT_SINKS = {"journal": {"enabled": True}}
EMAIL_DEFAULTS = {"enabled": False, "to": [], "from": None, "sendmail": "/usr/sbin/sendmail",
                  "min_severity": "warning", "timeout": 30}
WEBHOOK_DEFAULTS = {"enabled": False, "url": None, "timeout": 5.0, "retries": 3, "backoff": 1.0,
                    "backoff_max": 30.0, "secret_file": None, "secret_mode": "bearer",
                    "min_severity": "warning"}


class SinkConfigError(ValueError):
    pass


class SinkError(Exception):
    """One delivery attempt failed; retryable tells the webhook loop whether to try again."""

    def __init__(self, message, retryable=True):
        Exception.__init__(self, message)
        self.retryable = retryable


# --- configuration ------------------------------------------------------------------

def validate_sinks(config):
    """Merge defaults into a sinks.json object and check it; raises SinkConfigError."""
    if not isinstance(config, dict):
        raise SinkConfigError("sinks: must be a JSON object with journal/email/webhook keys")
    config = dict((k, v) for k, v in config.items() if not k.startswith("_"))  # "_comment": ansible_managed
    unknown = sorted(set(config) - set(("journal", "email", "webhook")))
    if unknown:
        raise SinkConfigError("sinks: unknown sink(s) %s; allowed: journal, email, webhook" % ", ".join(unknown))
    for name in ("journal", "email", "webhook"):
        if config.get(name) is not None and not isinstance(config[name], dict):
            raise SinkConfigError("sinks.%s: %r must be an object (e.g. {\"enabled\": true, ...})" % (name, config[name]))
    result = {"journal": dict(DEFAULT_SINKS["journal"], **(config.get("journal") or {}))}
    email = dict(EMAIL_DEFAULTS, **(config.get("email") or {}))
    webhook = dict(WEBHOOK_DEFAULTS, **(config.get("webhook") or {}))
    for name, sink in (("journal", result["journal"]), ("email", email), ("webhook", webhook)):
        if not isinstance(sink.get("enabled"), bool):
            raise SinkConfigError("sinks.%s.enabled: %r must be true or false" % (name, sink.get("enabled")))
    for name, sink in (("email", email), ("webhook", webhook)):
        if sink["min_severity"] not in SEVERITIES:
            raise SinkConfigError("sinks.%s.min_severity: %r; allowed: %s" % (name, sink["min_severity"], ", ".join(SEVERITIES)))
    if email["enabled"]:
        if not email["to"] or not isinstance(email["to"], list):
            raise SinkConfigError("sinks.email.to: a non-empty list of addresses is required")
        for address in email["to"] + ([email["from"]] if email["from"] else []):
            if not isinstance(address, str) or not _ADDRESS_RE.match(address) or address.startswith("-"):
                raise SinkConfigError("sinks.email: %r is not a plain address (user@domain, no spaces, no leading '-')" % (address,))
        if not isinstance(email["sendmail"], str) or not os.path.isabs(email["sendmail"]):
            raise SinkConfigError("sinks.email.sendmail: %r must be an absolute path" % (email["sendmail"],))
    if webhook["enabled"]:
        url = webhook["url"] or ""
        if not isinstance(url, str) or not _URL_RE.match(url):
            raise SinkConfigError("sinks.webhook.url: %r must start with http:// or https:// and hold no spaces "
                                  "or control characters (CR, LF)" % (url,))
        if webhook["secret_mode"] not in SECRET_MODES:
            raise SinkConfigError("sinks.webhook.secret_mode: %r; allowed: %s" % (webhook["secret_mode"], ", ".join(SECRET_MODES)))
        for key in ("timeout", "backoff", "backoff_max"):
            if isinstance(webhook[key], bool) or not isinstance(webhook[key], (int, float)) \
                    or not 0 <= webhook[key] <= 3600:
                raise SinkConfigError("sinks.webhook.%s: %r must be a number of seconds 0..3600" % (key, webhook[key]))
        if isinstance(webhook["retries"], bool) or not isinstance(webhook["retries"], int) \
                or not 0 <= webhook["retries"] <= 100:
            raise SinkConfigError("sinks.webhook.retries: %r must be an integer >= 0 (at most 100)"
                                  % (webhook["retries"],))
        if webhook["secret_file"] is not None and (not isinstance(webhook["secret_file"], str)
                                                   or not os.path.isabs(webhook["secret_file"])):
            raise SinkConfigError("sinks.webhook.secret_file: %r must be an absolute path or null"
                                  % (webhook["secret_file"],))
    result["email"] = email
    result["webhook"] = webhook
    return result


def load_sinks(path=SINKS_PATH):
    """The validated sinks; journal only when path does not exist. Raises SinkConfigError on bad JSON."""
    try:
        with open(path, "r") as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            return validate_sinks({})
        raise SinkConfigError("sinks: cannot read %s: %s" % (path, exc))
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise SinkConfigError("sinks: %s is not valid JSON: %s" % (path, exc))
    return validate_sinks(config)


def read_secret(path):
    """The secret in path (stripped), refusing a file others can read or one not owned by us or root."""
    info = os.stat(path)
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SinkError("secret file %s has mode %o: it must be 0600 (no group/other access)"
                        % (path, stat.S_IMODE(info.st_mode)), retryable=False)
    if info.st_uid not in (0, os.geteuid()):
        raise SinkError("secret file %s is owned by uid %d, not root" % (path, info.st_uid), retryable=False)
    with open(path, "r") as handle:
        secret = handle.read().strip()
    if not secret:
        raise SinkError("secret file %s is empty" % path, retryable=False)
    return secret


# --- journal ------------------------------------------------------------------------

def _journal_field(key, value):
    value = value if isinstance(value, bytes) else str(value).encode("utf-8")
    key = key.encode("ascii")
    if b"\n" in value:
        import struct
        return key + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return key + b"=" + value + b"\n"


def log_journal(message, priority=6, fields=None, socket_path=JOURNAL_SOCKET, stream=None):
    """Send one entry to journald's native socket; stderr with a <N> prefix otherwise.

    fields: extra journal fields (upper-case names). Returns 'journal' or 'stderr'.
    """
    payload = [_journal_field("MESSAGE", message), _journal_field("PRIORITY", priority),
               _journal_field("SYSLOG_IDENTIFIER", (fields or {}).get("SYSLOG_IDENTIFIER", "oomguard"))]
    for key, value in sorted((fields or {}).items()):
        if key != "SYSLOG_IDENTIFIER" and value is not None:
            payload.append(_journal_field(key, value))
    if socket_path and os.path.exists(socket_path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.sendto(b"".join(payload), socket_path)
            return "journal"
        except (IOError, OSError):
            pass
        finally:
            sock.close()
    stream = stream or sys.stderr
    stream.write("<%d>%s\n" % (priority, message))
    stream.flush()
    return "stderr"


def send_journal(event, socket_path=JOURNAL_SOCKET, stream=None):
    details = event.get("details")
    fields = {
        "SYSLOG_IDENTIFIER": event.get("source") or "oomguard",
        "OOMGUARD_SEVERITY": event.get("severity"),
        "OOMGUARD_KIND": event.get("kind"),
        "OOMGUARD_EVENT": json.dumps(event, sort_keys=True, default=str),
    }
    if details:
        fields["OOMGUARD_DETAILS"] = json.dumps(details, sort_keys=True, default=str)
    return log_journal(event.get("message", ""), SEVERITY_PRIORITY.get(event.get("severity"), 6), fields,
                       socket_path=socket_path, stream=stream)


# --- email --------------------------------------------------------------------------

def build_email(event, sender, recipients):
    """The RFC 5322 message (bytes) for an event."""
    from email.message import EmailMessage
    from email.utils import formatdate
    message = EmailMessage()
    subject = "[oomguard %s] %s: %s" % (event.get("severity"), event.get("host"), event.get("kind"))
    message["Subject"] = subject.replace("\n", " ")[:200]
    message["From"] = sender or "oomguard@%s" % (event.get("host") or socket.gethostname())
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(event.get("time") or time.time(), localtime=False)
    body = [event.get("message", ""), "", json.dumps(event, indent=2, sort_keys=True, default=str)]
    message.set_content("\n".join(body))
    return message.as_bytes()


def send_email(event, sink, run=None):
    """Pipe the message to the local MTA: argv, no shell; recipients after '--'."""
    import subprocess  # imported on use, like the other sinks' heavy modules
    run = run or subprocess.run
    recipients = list(sink["to"])
    data = build_email(event, sink.get("from"), recipients)
    argv = [sink["sendmail"], "-oi"]
    if sink.get("from"):
        argv += ["-f", sink["from"]]
    argv += ["--"] + recipients
    try:
        result = run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     timeout=sink.get("timeout", 30), check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SinkError("sendmail %s failed: %s" % (sink["sendmail"], exc), retryable=False)
    if result.returncode != 0:
        raise SinkError("sendmail exited %d: %s" % (result.returncode, (result.stderr or b"").decode("utf-8", "replace").strip()),
                        retryable=False)


# --- webhook ------------------------------------------------------------------------

def webhook_request(event, sink, secret=None):
    """(url, body bytes, headers) for an event."""
    body = json.dumps(event, sort_keys=True, default=str).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": "oomguard-notify/1"}
    if secret:
        if sink.get("secret_mode", "bearer") == "hmac":
            import hashlib  # imported on use: OpenSSL costs the agent ~3 MiB of RSS
            import hmac
            digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
            headers["X-Oomguard-Signature"] = "sha256=" + digest
        else:
            headers["Authorization"] = "Bearer " + secret
    return sink["url"], body, headers


def post_once(url, body, headers, timeout):
    """One POST; raises SinkError (retryable for network errors, 5xx and 429)."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
        try:
            response.read(65536)
        finally:
            response.close()
        return response.status
    except urllib.error.HTTPError as exc:
        retryable = exc.code >= 500 or exc.code in (408, 429)
        raise SinkError("webhook answered HTTP %d" % exc.code, retryable=retryable)
    except (urllib.error.URLError, socket.timeout, OSError) as exc:
        raise SinkError("webhook unreachable: %s" % getattr(exc, "reason", exc), retryable=True)


def backoff_delays(retries, backoff, backoff_max):
    """Sleep before retry n (n = 1..retries): backoff * 2**(n-1), capped at backoff_max."""
    return [min(backoff * (2 ** index), backoff_max) for index in range(retries)]


def send_webhook(event, sink, sleep=time.sleep, post=post_once):
    """POST with retries and exponential backoff; returns the number of attempts."""
    secret = read_secret(sink["secret_file"]) if sink.get("secret_file") else None
    url, body, headers = webhook_request(event, sink, secret)
    delays = backoff_delays(sink["retries"], sink["backoff"], sink["backoff_max"])
    attempt = 0
    while True:
        attempt += 1
        try:
            post(url, body, headers, sink["timeout"])
            return attempt
        except SinkError as exc:
            if not exc.retryable or attempt > len(delays):
                exc.attempts = attempt
                raise
            sleep(delays[attempt - 1])


# --- dispatch -----------------------------------------------------------------------

def wants(sink, event):
    if not sink.get("enabled"):
        return False
    severity = event.get("severity", "info")
    if severity == "recovery":
        return True
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[sink.get("min_severity", "info")]


def notify(event, sinks=None, sleep=time.sleep, run=None, post=None,
           journal_socket=JOURNAL_SOCKET, stream=None):
    """Deliver event to the journal and every configured sink that wants it. Never raises.

    sinks: load_sinks() output (None: journal only). Returns a list of
    {"sink", "ok", "error", "attempts"} in delivery order.
    """
    if sinks is None:
        sinks = validate_sinks({})
    event = dict(event)
    event.setdefault("host", socket.gethostname())
    event.setdefault("time", time.time())
    results = []
    try:
        send_journal(event, socket_path=journal_socket, stream=stream)
        results.append({"sink": "journal", "ok": True, "error": None, "attempts": 1})
    except Exception as exc:  # pylint: disable=broad-except
        results.append({"sink": "journal", "ok": False, "error": str(exc), "attempts": 1})
    for name in ("email", "webhook"):
        sink = sinks.get(name) or {}
        if not wants(sink, event):
            continue
        attempts = 1
        try:
            if name == "email":
                send_email(event, sink, run=run)
            else:
                attempts = send_webhook(event, sink, sleep=sleep, post=post or post_once)
            results.append({"sink": name, "ok": True, "error": None, "attempts": attempts})
        except Exception as exc:  # pylint: disable=broad-except
            error = str(exc)
            results.append({"sink": name, "ok": False, "error": error, "attempts": getattr(exc, "attempts", attempts)})
            try:
                log_journal("oomguard: %s sink failed for %s event %s: %s" % (name, event.get("severity"), event.get("kind"), error),
                            3, {"SYSLOG_IDENTIFIER": event.get("source") or "oomguard"},
                            socket_path=journal_socket, stream=stream)
            except Exception:  # pylint: disable=broad-except
                pass
    return results
