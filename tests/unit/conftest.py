"""Make the repository's module_utils and library importable the way Ansible does.

Modules import `ansible.module_utils.oomguard_*`; we extend that package's path with
our module_utils/ so the tests exercise the very same import lines.
"""

import os
import sys

import ansible.module_utils

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

for extra in ("module_utils",):
    path = os.path.join(REPO, extra)
    if path not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(path)

for extra in ("library", "filter_plugins"):
    path = os.path.join(REPO, extra)
    if path not in sys.path:
        sys.path.insert(0, path)
