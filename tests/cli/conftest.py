from cli_helpers import sysfs  # noqa: F401  (fixture)
