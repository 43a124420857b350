# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters for playbooks/audit.yml: shape oomguard_check results into the fleet report.

Loaded only by playbooks in this directory (Ansible reads a playbook's adjacent
filter_plugins/). Pure functions, unit-tested in tests/unit/library/test_oomguard_check.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import io

RANK = {"ok": 0, "info": 1, "warn": 2, "fail": 3, "error": 4, "unreachable": 4}


def _result_of(hostvars, host, var):
    try:
        value = hostvars[host][var]
    except (KeyError, TypeError):
        return None
    # HostVars values may be lazy wrappers; copy into plain dicts.
    return dict(value) if value is not None else None


def host_row(host, result):
    """One host of the report from its registered oomguard_check result (None: unreachable)."""
    if not result:
        return {"host": host, "status": "unreachable", "worst": "unreachable", "score": None, "counts": {},
                "findings": {}, "report": [], "error": "no result (host unreachable or skipped)", "info": {}}
    if result.get("unreachable"):
        return {"host": host, "status": "unreachable", "worst": "unreachable", "score": None, "counts": {},
                "findings": {}, "report": [], "error": result.get("msg", "unreachable"), "info": {}}
    summary = result.get("summary")
    if not summary:
        return {"host": host, "status": "error", "worst": "error", "score": None, "counts": {}, "findings": {},
                "report": [], "error": result.get("msg", "oomguard_check returned no summary"), "info": {}}
    findings = dict((f["id"], f) for f in result.get("findings", []))
    return {"host": host, "status": "ok", "worst": summary.get("worst", "ok"), "score": summary.get("score"),
            "counts": summary.get("counts", {}), "findings": findings, "report": result.get("report", []),
            "error": None, "info": result.get("host", {})}


def audit_table(hostvars, hosts, var="__oomguard_audit", generated=None):
    """The report model: hosts worst first, the union of check ids worst first, fleet totals."""
    rows = [host_row(host, _result_of(hostvars, host, var)) for host in hosts]
    rows.sort(key=lambda r: (-RANK.get(r["worst"], 0), r["score"] if r["score"] is not None else -1, r["host"]))
    worst_of_check = {}
    for row in rows:
        for fid, item in row["findings"].items():
            rank = RANK.get(item["severity"], 0)
            worst_of_check[fid] = max(worst_of_check.get(fid, 0), rank)
    checks = sorted(worst_of_check, key=lambda fid: (-worst_of_check[fid], fid))
    totals = dict((s, 0) for s in ("ok", "info", "warn", "fail", "error", "unreachable"))
    for row in rows:
        totals[row["worst"]] = totals.get(row["worst"], 0) + 1
    scores = [r["score"] for r in rows if r["score"] is not None]
    return {
        "generated": generated,
        "hosts": rows,
        "checks": checks,
        "totals": totals,
        "host_count": len(rows),
        "mean_score": round(sum(scores) / float(len(scores)), 1) if scores else None,
    }


def audit_csv(table):
    """One CSV line per host and finding: host, id, severity, message (and unreachable hosts)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["host", "score", "host_worst", "id", "severity", "message"])
    for row in table["hosts"]:
        if not row["findings"]:
            writer.writerow([row["host"], "", row["worst"], "", row["status"], row["error"] or ""])
            continue
        for fid in table["checks"]:
            item = row["findings"].get(fid)
            if item:
                writer.writerow([row["host"], row["score"], row["worst"], fid, item["severity"], item["message"]])
    return out.getvalue()


def audit_summary_lines(table, limit=10):
    """Short lines for the terminal: fleet totals, then the worst hosts."""
    totals = table["totals"]
    lines = ["%d host(s), mean score %s; worst per host: %s" % (
        table["host_count"], table["mean_score"],
        ", ".join("%s %d" % (k, v) for k, v in totals.items() if v))]
    for row in table["hosts"][:limit]:
        if row["status"] != "ok":
            lines.append("%s: %s (%s)" % (row["host"], row["status"].upper(), row["error"]))
            continue
        bad = [line for line in row["report"] if line.startswith(("FAIL", "WARN"))]
        lines.append("%s: score %s, worst %s%s" % (row["host"], row["score"], row["worst"].upper(),
                                                   ("; " + " | ".join(bad[:3])) if bad else ""))
    if len(table["hosts"]) > limit:
        lines.append("... %d more host(s) in the report" % (len(table["hosts"]) - limit))
    return lines


class FilterModule(object):
    def filters(self):
        return {
            "oomguard_audit_table": audit_table,
            "oomguard_audit_csv": audit_csv,
            "oomguard_audit_summary_lines": audit_summary_lines,
        }
