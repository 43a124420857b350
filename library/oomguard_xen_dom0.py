#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oomguard contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: oomguard_xen_dom0
short_description: Pin a Xen dom0's memory at boot, turn ballooning off, optionally resize dom0 live
description:
  - Detects a Xen control domain (dom0), from C(/proc/xen/capabilities) containing C(control_d) or, when
    that file is absent, from C(xl info) answering. On any other host (bare metal, KVM, a Xen domU,
    a container) it returns C(changed=false) and RV(xen=false) and touches nothing.
  - Pins dom0's memory for the next boot with C(dom0_mem=<N>M,max:<N>M) in C(GRUB_CMDLINE_XEN_DEFAULT) of
    the grub default file (C(/etc/default/grub) on Debian, Ubuntu and the EL family). Only the
    C(dom0_mem) option of that variable is edited; every other option, the quoting style, comments and
    other variables are kept. Regenerating C(grub.cfg) is left to the caller, which gets the command in
    RV(grub_update_command) and whether it must run in RV(grub_update_required).
  - Turns dom0 ballooning off with C(autoballoon="off") in C(/etc/xen/xl.conf), and on legacy xend hosts
    (when C(/etc/xen/xend-config.sxp) exists) with C((enable-dom0-ballooning no)) and
    C((dom0-min-mem <N>)).
  - With O(live=true), runs C(xl mem-set 0 <N>m) when dom0's current memory (C(xl list 0)) differs from
    the target. Growing is allowed up to the host's memory and the running hypervisor's C(max:).
    Shrinking is done only when the target is at least what dom0 uses (C(MemTotal - MemAvailable) of
    dom0's own C(/proc/meminfo), so reclaimable cache does not count) plus O(margin); otherwise the module
    fails with the numbers and changes nothing.
  - Without O(dom0_mem) the module only reports detection, host and dom0 memory; the role uses this to
    size dom0 from the host's memory with the C(oomguard_dom0_mem) filter.
  - Every value is validated, and every decision made, before anything is written.
version_added: "0.1.0"
author: oomguard contributors
options:
  dom0_mem:
    description:
      - dom0's memory, pinned as C(dom0_mem=<N>M,max:<N>M).
      - A size with K/M/G/T suffix (binary), bytes, or C(N%) of the host's memory (Xen's
        C(total_memory), rounded down to MiB). Must be a whole number of MiB, at least 512M and not above
        the host's memory.
      - Omit it to only read the facts (RV(xen), RV(host_total_bytes), RV(dom0_current_bytes), ...).
    type: str
  live:
    description:
      - Also resize the running dom0 with C(xl mem-set 0), within the limits described above.
      - Without it the pin takes effect at the next boot.
    type: bool
    default: false
  margin:
    description:
      - Safety margin for a live shrink, a size >= 0 (for example C(256M), C(1G)).
      - A live shrink needs O(dom0_mem) >= dom0's use + margin.
    type: str
    default: 256M
  disable_ballooning:
    description:
      - Set C(autoballoon="off") in O(xl_conf_file) (and the xend equivalents when O(xend_config_file)
        exists). With a pinned dom0 Xen's own documentation asks for ballooning to be off.
    type: bool
    default: true
  grub_default_file:
    description:
      - The grub default file that holds C(GRUB_CMDLINE_XEN_DEFAULT); created when absent (only under the
        name C(grub)).
      - Refused, with nothing written, unless it is a regular file (not a link) of shell-variable
        assignments with at least one C(GRUB_) key; an absolute, normalised path.
    type: path
    default: /etc/default/grub
  xl_conf_file:
    description:
      - The xl toolstack configuration; created when absent and its directory exists (only under the name
        C(xl.conf)).
      - Refused, with nothing written, unless it is a regular file (not a link) that parses as xl config
        (C(key = value) settings, comments); an absolute, normalised path.
    type: path
    default: /etc/xen/xl.conf
  xend_config_file:
    description:
      - The legacy xend configuration; edited only when it exists, and only when it reads as s-expressions.
    type: path
    default: /etc/xen/xend-config.sxp
notes:
  - C(/etc/default/grub.d/*.cfg) files are read after the grub default file; the module warns when one of
    them sets C(GRUB_CMDLINE_XEN_DEFAULT) (it would override the pin), and when C(GRUB_CMDLINE_XEN) also
    carries a C(dom0_mem).
  - With no C(xl), C(xm) is used (same output and C(mem-set) syntax).
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
seealso:
  - name: Xen Project best practices (dom0 memory)
    description: Why dom0 gets a fixed size and ballooning is turned off.
    link: https://wiki.xenproject.org/wiki/Xen_Project_Best_Practices
"""

EXAMPLES = r"""
- name: Pin dom0 at 4 GiB from the next boot, ballooning off
  oomguard_xen_dom0:
    dom0_mem: 4G
  register: xen

- name: Regenerate grub.cfg when the pin changed
  ansible.builtin.command:
    argv: "{{ xen.grub_update_command }}"
  when: xen.grub_update_required and xen.grub_update_command | length > 0
  changed_when: true

- name: Pin and resize now, never below what dom0 uses plus 512 MiB
  oomguard_xen_dom0:
    dom0_mem: 6144M
    live: true
    margin: 512M

- name: Read host and dom0 memory only
  oomguard_xen_dom0:
  register: xen_facts
"""

RETURN = r"""
xen:
  description: Whether the host is a Xen dom0. When false nothing else was read or changed.
  returned: always
  type: bool
  sample: true
detected_by:
  description: How dom0 was recognised (C(capabilities) or C(xl info)); empty when not Xen.
  returned: always
  type: str
  sample: xl info
host_total_bytes:
  description: The host's memory as Xen reports it (C(xl info) total_memory).
  returned: when xen
  type: int
  sample: 68547608576
host_free_bytes:
  description: Memory Xen has not given to any domain (C(xl info) free_memory).
  returned: when xen
  type: int
  sample: 29843521536
dom0_current_bytes:
  description: dom0's memory before this run (C(xl list 0)).
  returned: when xen
  type: int
  sample: 4294967296
dom0_used_bytes:
  description: What dom0 uses, MemTotal - MemAvailable of its /proc/meminfo.
  returned: when xen
  type: int
  sample: 1149308928
xen_commandline:
  description: The running hypervisor's command line.
  returned: when xen
  type: str
  sample: placeholder dom0_mem=4096M,max:4096M dom0_max_vcpus=4 no-real-mode edd=off
running_dom0_mem:
  description: The dom0_mem the hypervisor was booted with (bytes for initial, min, max; raw tokens), or null.
  returned: when xen
  type: dict
  sample: {"initial": 4294967296, "min": null, "max": 4294967296, "raw": "dom0_mem=4096M,max:4096M"}
dom0_mem:
  description: The pinned value written to the hypervisor command line.
  returned: when xen and dom0_mem was given
  type: str
  sample: 4096M,max:4096M
dom0_mem_bytes:
  description: The pinned size in bytes.
  returned: when xen and dom0_mem was given
  type: int
  sample: 4294967296
pin_active:
  description: Whether the running hypervisor was booted with exactly this pin.
  returned: when xen and dom0_mem was given
  type: bool
  sample: false
files:
  description: For each file considered, its path and whether it changed (or would in check mode).
  returned: when xen and dom0_mem was given
  type: dict
  sample: {"grub_default": {"path": "/etc/default/grub", "changed": true}}
grub_update_required:
  description: The grub default file changed, so grub.cfg must be regenerated.
  returned: always
  type: bool
  sample: true
grub_update_command:
  description: The argv that regenerates grub.cfg on this host (empty when no grub tool is installed).
  returned: when xen and dom0_mem was given
  type: list
  elements: str
  sample: ["/usr/sbin/update-grub"]
live:
  description:
    - The live resize decision. C(action) is C(none) (dom0 already has the target), C(set) (mem-set ran,
      or would in check mode), C(blocked) (a grow above the running max:, possible only after a reboot)
      or C(disabled) (O(live=false)). C(applied) says whether dom0 now has the target.
  returned: when xen and dom0_mem was given
  type: dict
  sample: {"action": "set", "applied": true, "reason": "growing dom0 from 3920M to 6144M", "command": ["/usr/sbin/xl", "mem-set", "0", "6144m"]}
reboot_required:
  description: The running hypervisor does not have the pin and dom0's memory differs from the target.
  returned: always
  type: bool
  sample: false
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.oomguard_files import UnsafePathError, path_error, read_text, write_file_atomic
from ansible.module_utils.oomguard_memstat import read_meminfo
from ansible.module_utils.oomguard_xen import (
    FILE_CHECKS,
    MIB,
    XenError,
    cmdline_dom0_mem,
    config_file_error,
    dom0_entry,
    dom0_mem_option,
    dom0_mem_token,
    dom0_used_bytes,
    grub_dropin_override_warning,
    grub_other_dom0_mem_warnings,
    grub_update_command,
    is_dom0_capabilities,
    mem_set_argv,
    parse_xl_info,
    parse_xl_list,
    plan_live,
    set_grub_xen_dom0_mem,
    set_xend_dom0_memory,
    set_xl_autoballoon_off,
    validate_dom0_mem,
    validate_margin,
    xl_info_memory,
)

LANG_C = {"LANG": "C", "LC_ALL": "C"}
NEW_FILE_MODE = 0o644
XL_CONF_HEADER = "## Global XL config file ##\n\n# Written by oomguard: dom0 has a fixed size (dom0_mem), never balloon it.\n"


def argument_spec():
    return dict(
        dom0_mem=dict(type="str"),
        live=dict(type="bool", default=False),
        margin=dict(type="str", default="256M"),
        disable_ballooning=dict(type="bool", default=True),
        grub_default_file=dict(type="path", default="/etc/default/grub"),
        xl_conf_file=dict(type="path", default="/etc/xen/xl.conf"),
        xend_config_file=dict(type="path", default="/etc/xen/xend-config.sxp"),
    )


def build_module():
    return AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)


def fail(module, msg, **kwargs):
    module.fail_json(msg=msg, changed=False, **kwargs)


def run_tool(module, argv):
    return module.run_command(argv, environ_update=LANG_C)


def detect(module, proc):
    """(tool, info_text, detected_by) for a dom0, or None for any other host."""
    caps = read_text(os.path.join(proc, "xen", "capabilities"))
    if caps is not None and not is_dom0_capabilities(caps):
        return None  # a Xen domU: never run xl there
    tool = module.get_bin_path("xl") or module.get_bin_path("xm")
    if tool is None:
        if caps is not None:
            fail(module, "Xen dom0 detected (%s/xen/capabilities has control_d) but neither xl nor xm "
                         "is installed; install the Xen tools (xen-utils on Debian)" % proc)
        return None
    rc, out, err = run_tool(module, [tool, "info"])
    if rc != 0:
        if caps is not None:
            fail(module, "Xen dom0 detected but `%s info` failed" % tool, rc=rc, stdout=out, stderr=err)
        return None
    return tool, out, ("capabilities" if caps is not None else "xl info")


def read_dom0_current(module, tool):
    rc, out, err = run_tool(module, [tool, "list", "0"])
    if rc != 0:
        fail(module, "`%s list 0` failed" % tool, rc=rc, stdout=out, stderr=err)
    entry = dom0_entry(parse_xl_list(out))
    return entry["mem_bytes"] if entry else None


def check_config_file(module, option, path):
    """Fail unless path is missing (and may be created) or a regular file whose content is
    what option says it is. Links are refused: the write would replace the link."""
    try:
        info = os.lstat(path)
    except OSError:
        info = None
    text = None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a regular file"
            fail(module, "%s: refusing to edit %s: it is %s; allowed: the file itself" % (option, path, kind))
        try:
            text = read_text(path, "")
        except (UnicodeDecodeError, OSError) as exc:
            fail(module, "%s: refusing to edit %s: it cannot be read as text (%s); allowed: %s"
                 % (option, path, exc, FILE_CHECKS[option][1]))
    error = config_file_error(option, path, text)
    if error:
        fail(module, error)


def file_plan(path, new_text_fn, create=True):
    """{'path', 'exists', 'before', 'after', 'changed', 'mode'} for one file."""
    before = read_text(path)
    exists = before is not None
    if not exists and not create:
        return {"path": path, "exists": False, "before": "", "after": "", "changed": False, "mode": None}
    after = new_text_fn(before if exists else None)
    mode = NEW_FILE_MODE
    if exists:
        mode = os.stat(path).st_mode & 0o7777 & ~0o002
    return {"path": path, "exists": exists, "before": before or "", "after": after,
            "changed": (before or "") != after or not exists, "mode": mode}


def grub_update_argv(module, etc="/etc"):
    have = dict((tool, module.get_bin_path(tool)) for tool in ("update-grub", "grub2-mkconfig", "grub-mkconfig"))

    def resolve(path):
        return os.path.realpath(path) if os.path.islink(path) else None

    return grub_update_command(have, etc=etc, resolve=resolve)


def grub_warnings(grub_text, grub_path):
    warnings = grub_other_dom0_mem_warnings(grub_text or "", grub_path)
    dropin_dir = os.path.join(os.path.dirname(grub_path), "grub.d")
    if os.path.isdir(dropin_dir):
        for name in sorted(os.listdir(dropin_dir)):
            if name.endswith(".cfg"):
                path = os.path.join(dropin_dir, name)
                text = read_text(path, "")
                try:
                    warning = grub_dropin_override_warning(text, path)
                except XenError as exc:
                    warning = "%s: %s" % (path, exc)
                if warning:
                    warnings.append(warning)
    return warnings


def write_plan(module, plan):
    try:
        write_file_atomic(plan["path"], plan["after"], mode=plan["mode"])
    except UnsafePathError as exc:
        fail(module, str(exc))
    if read_text(plan["path"]) != plan["after"]:
        fail(module, "%s did not read back as written" % plan["path"])


def run_module(module, proc="/proc", etc="/etc"):
    params = module.params
    result = {"changed": False, "xen": False, "detected_by": "", "grub_update_required": False,
              "reboot_required": False, "diff": []}

    # 1. Input first: bad values fail on every host, before anything is read or touched.
    try:
        margin = validate_margin(params["margin"])
        if params["dom0_mem"] is not None:
            validate_dom0_mem(params["dom0_mem"])
    except XenError as exc:
        fail(module, str(exc))
    for option in FILE_CHECKS:
        error = path_error(option, params[option], system_ok=True)
        if error:
            fail(module, error)

    # 2. Xen dom0 or nothing.
    detected = detect(module, proc)
    if detected is None:
        result["msg"] = "not a Xen dom0: nothing to do"
        module.exit_json(**result)
    tool, info_text, detected_by = detected
    info = xl_info_memory(parse_xl_info(info_text))
    current = read_dom0_current(module, tool)
    used = dom0_used_bytes(read_meminfo(proc))
    running = cmdline_dom0_mem(info["xen_commandline"])
    result.update({
        "xen": True, "detected_by": detected_by, "xen_version": info["xen_version"],
        "host_total_bytes": info["total_bytes"], "host_free_bytes": info["free_bytes"],
        "dom0_current_bytes": current, "dom0_used_bytes": used,
        "xen_commandline": info["xen_commandline"], "running_dom0_mem": running,
    })
    if params["dom0_mem"] is None:
        result["msg"] = "Xen dom0 facts only (no dom0_mem given)"
        module.exit_json(**result)

    try:
        target = validate_dom0_mem(params["dom0_mem"], host_total_bytes=info["total_bytes"])
    except XenError as exc:
        fail(module, str(exc), **{k: result[k] for k in ("host_total_bytes", "dom0_current_bytes")})
    token = dom0_mem_token(target)

    # 3. Plan every file and the live decision; nothing is written yet. Each file must be
    # what its option says it is (issue 15: /etc/shadow got a GRUB_ line).
    for option in ["grub_default_file"] + (["xl_conf_file", "xend_config_file"] if params["disable_ballooning"] else []):
        check_config_file(module, option, params[option])
    try:
        plans = {"grub_default": file_plan(params["grub_default_file"],
                                           lambda text: set_grub_xen_dom0_mem(text, token))}
    except XenError as exc:
        fail(module, "%s: %s" % (params["grub_default_file"], exc))
    if params["disable_ballooning"]:
        xl_conf = params["xl_conf_file"]
        plans["xl_conf"] = file_plan(
            xl_conf, lambda text: set_xl_autoballoon_off(text if text is not None else XL_CONF_HEADER),
            create=os.path.isdir(os.path.dirname(xl_conf)))
        if not plans["xl_conf"]["exists"] and not os.path.isdir(os.path.dirname(xl_conf)):
            module.warn("%s: directory missing, xl ballooning left as it is" % xl_conf)
        plans["xend_config"] = file_plan(params["xend_config_file"],
                                         lambda text: set_xend_dom0_memory(text, target // MIB), create=False)
    for warning in grub_warnings(plans["grub_default"]["after"], params["grub_default_file"]):
        module.warn(warning)

    live = {"action": "disabled", "applied": False, "reason": "live is false", "command": []}
    if params["live"]:
        decision = plan_live(target, current, used, margin, host_total=info["total_bytes"],
                             host_free=info["free_bytes"], running_max=running["max"] if running else None)
        if decision["action"] == "refuse":
            fail(module, decision["reason"], dom0_current_bytes=current, dom0_used_bytes=used,
                 margin_bytes=margin, dom0_mem_bytes=target)
        for warning in decision["warnings"]:
            module.warn(warning)
        live.update(action=decision["action"], reason=decision["reason"])
        if decision["action"] == "set":
            live["command"] = mem_set_argv(tool, target)
        if decision["action"] == "blocked":
            module.warn(decision["reason"])

    # 4. Act (outside check mode only), reading back what was written.
    for name, plan in sorted(plans.items()):
        if plan["changed"]:
            result["diff"].append({"before_header": plan["path"], "after_header": plan["path"],
                                   "before": plan["before"], "after": plan["after"]})
            if not module.check_mode:
                write_plan(module, plan)
    if live["action"] == "set":
        result["diff"].append({"before_header": "dom0 memory (xl list 0)", "after_header": "dom0 memory",
                               "before": "%dM\n" % (current // MIB), "after": "%dM\n" % (target // MIB)})
        if not module.check_mode:
            rc, out, err = run_tool(module, live["command"])
            if rc != 0:
                fail(module, "`%s` failed" % " ".join(live["command"]), rc=rc, stdout=out, stderr=err,
                     files=dict((k, {"path": p["path"], "changed": p["changed"]}) for k, p in plans.items()))
            after = read_dom0_current(module, tool)
            live["dom0_after_bytes"] = after
            if after is not None and after // MIB != target // MIB:
                module.warn("dom0 has %dM after mem-set, target %dM: the balloon driver is still moving"
                            % (after // MIB, target // MIB))
    live["applied"] = live["action"] == "none" or (live["action"] == "set" and not module.check_mode)
    at_target = current is not None and current // MIB == target // MIB

    pin_active = bool(running) and running["raw"] == token
    result.update({
        "changed": any(p["changed"] for p in plans.values()) or live["action"] == "set",
        "dom0_mem": dom0_mem_option(target),
        "dom0_mem_bytes": target,
        "pin_active": pin_active,
        "files": dict((k, {"path": p["path"], "changed": p["changed"], "exists": p["exists"]})
                      for k, p in plans.items()),
        "grub_update_required": plans["grub_default"]["changed"],
        "grub_update_command": grub_update_argv(module, etc),
        "live": live,
        "reboot_required": not pin_active and not (at_target or live["applied"]),
    })
    if result["grub_update_required"] and not result["grub_update_command"]:
        module.warn("no update-grub, grub2-mkconfig or grub-mkconfig found: regenerate grub.cfg by hand")
    result["msg"] = ("dom0 pinned at %s from the next boot" % dom0_mem_option(target)
                     + ("; dom0 resized live" if live["action"] == "set" else ""))
    module.exit_json(**result)


def main():
    run_module(build_module())


if __name__ == "__main__":
    main()
