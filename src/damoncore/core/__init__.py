"""The monitoring core: regions, contexts and the sampling/aggregation loop."""

from .adaptation import Adaptation, FixedRegions, KernelAdaptation
from .edge_split import EdgeSplit
from .attrs import Attrs, IntervalsGoal
from .context import Context, Kdamond
from .regions import Regions
from .reports import SampleFilter
from .snapshot import Snapshot
from .target import Target

__all__ = ["Adaptation", "EdgeSplit", "FixedRegions", "KernelAdaptation", "Attrs", "IntervalsGoal", "Context", "Kdamond", "Regions", "SampleFilter",
           "Snapshot", "Target"]
