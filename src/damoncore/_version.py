"""The package version: pyproject.toml's, as the installed metadata carries it."""

from __future__ import annotations

import functools
import os
import re


@functools.lru_cache(maxsize=None)
def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    here = os.path.dirname(os.path.abspath(__file__))
    pyproject = os.path.join(here, "..", "..", "pyproject.toml")
    if os.path.exists(pyproject):
        # a source tree (PYTHONPATH=src): its own pyproject, not another checkout's metadata
        with open(pyproject) as f:
            text = f.read()
        m = re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', text,
                      re.MULTILINE | re.DOTALL)
        if m and re.search(r'^name\s*=\s*"damoncore"', text, re.MULTILINE):
            return m.group(1)
    try:
        return dist_version("damoncore")
    except PackageNotFoundError:
        return "unknown"
