"""Fixtures of the Linux wrapper tests."""

import pytest

from linux_helpers import Child


@pytest.fixture
def make_child():
    children = []

    def make(npages, kind="anon"):
        c = Child(npages, kind)
        children.append(c)
        return c

    yield make
    for c in children:
        c.close()
