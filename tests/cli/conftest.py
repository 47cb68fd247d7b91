import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from cli_helpers import sysfs  # noqa: E402,F401  (fixture)
