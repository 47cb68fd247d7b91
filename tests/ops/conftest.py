import pytest

from ops_helpers import BufferChild


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
