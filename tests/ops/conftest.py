import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from ops_helpers import BufferChild  # noqa: E402


@pytest.fixture
def make_child():
    children = []

    def make(npages, path=None):
        c = BufferChild(npages, path)
        children.append(c)
        return c

    yield make
    for c in children:
        c.close()
