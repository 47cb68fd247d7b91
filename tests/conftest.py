import os
import sys

# Tests import the reference implementation as a plain module.
sys.path.insert(0, os.path.dirname(__file__))

# CI runs the same examples every time (a landing must not depend on which random examples
# hypothesis drew); local runs keep exploring new ones.  `--hypothesis-seed=N` still works.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
