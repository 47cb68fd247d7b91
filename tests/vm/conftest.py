"""Fixtures for tests that run inside the 4-node qemu guest (see tests/vm/harness.py).

Every test collected under tests/vm gets the `vm` marker, so `-m "not vm"` drops them.
The session fixture `guest` installs qemu / builds the kernel on first use (minutes)
and skips with the reason where that cannot work.  With DAMONCORE_VM_REQUIRED=1
(CI on a machine known to run the guest) an unavailable guest is an error, not a skip.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        try:
            p = Path(str(item.fspath)).resolve()
        except Exception:
            continue
        if _HERE in p.parents:
            item.add_marker(pytest.mark.vm)


@pytest.fixture(scope="session")
def guest() -> harness.Guest:
    try:
        g = harness.ensure_guest()
    except harness.GuestUnavailable as e:
        if os.environ.get("DAMONCORE_VM_REQUIRED") == "1":
            pytest.fail(f"test guest unavailable and DAMONCORE_VM_REQUIRED=1: {e}", pytrace=False)
        pytest.skip(f"test guest unavailable: {e}")
    return g
