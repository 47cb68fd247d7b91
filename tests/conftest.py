import os

# Helper modules (reference.py, fakes.py, ...) are on the path through pyproject's
# [tool.pytest.ini_options] pythonpath.
# CI runs the same examples every time (a landing must not depend on which random examples
# hypothesis drew); local runs keep exploring new ones.  `--hypothesis-seed=N` still works.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# No test may change the host's kernel settings (tests that must write system state run in
# the 4-node guest): the settings read when the session starts must read the same at its end.
import pytest  # noqa: E402

import host_settings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def host_settings_unchanged():
    before = host_settings.snapshot()
    yield
    changed = host_settings.differences(before, host_settings.snapshot())
    assert not changed, "the test session changed host settings: " + "; ".join(changed)
