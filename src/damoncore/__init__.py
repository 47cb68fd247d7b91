"""damoncore: user-space DAMON/DAMOS for access-aware NUMA page placement.

The public names: a :class:`Context` monitors :class:`Target` address spaces through an
:class:`Operations` backend (simulated memory, paddr, vaddr, perf page-fault reports) and
applies :class:`Scheme` s (access pattern, action, :class:`Quota` with :class:`QuotaGoal` s,
:class:`Watermarks`, :class:`Filter` s) to what it finds.
"""

from .core import (Adaptation, Attrs, Context, EdgeSplit, FixedRegions, IntervalsGoal,
                   Kdamond, KernelAdaptation, Regions, SampleFilter, Snapshot, Target)
from .errors import (ActionNotSupported, AdaptationError, DamonError, FeatureMissing,
                     FilterNotSupported, InvalidConfig, SyscallError, TargetGone)
from .linux.system import PAGE_SIZE
from .ops.base import ApplyResult, Operations
from .schemes.scheme import (AccessPattern, Filter, Quota, QuotaGoal, Scheme, SchemeStats,
                             Watermarks)
from .units import BP, MAX_SCORE
from .vocab import Action, FilterType, GoalMetric, GoalTuner, SampleFilterType, WatermarkMetric



def __getattr__(name):
    # the version has one source, pyproject.toml, read through the installed package's
    # metadata (or, in a source tree that was never installed, pyproject.toml itself)
    if name == "__version__":
        from ._version import version
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AccessPattern", "Action", "ActionNotSupported", "Adaptation", "AdaptationError",
    "ApplyResult", "Attrs", "BP", "Context", "DamonError", "EdgeSplit", "FeatureMissing",
    "Filter", "FilterNotSupported", "FilterType", "FixedRegions", "GoalMetric", "GoalTuner",
    "IntervalsGoal", "InvalidConfig", "Kdamond", "KernelAdaptation", "MAX_SCORE",
    "Operations", "PAGE_SIZE", "Quota", "QuotaGoal", "Regions", "SampleFilter",
    "SampleFilterType", "Scheme", "SchemeStats", "Snapshot", "SyscallError", "Target",
    "TargetGone", "WatermarkMetric", "Watermarks",
]
