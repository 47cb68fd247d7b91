"""Monitoring attributes (intervals and region-count bounds), validated as the kernel does."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import InvalidConfig
from ..units import BP


@dataclass(frozen=True)
class IntervalsGoal:
    """Monitoring intervals auto-tuning goal (kernel 6.15+ ``damon_intervals_goal``).

    ``access_bp``: wanted ratio of observed access events to the maximum possible, in basis
    points (400 = 4%).  ``aggrs``: tune every this many aggregations; 0 disables tuning.
    ``min_sample_us``/``max_sample_us``: bounds for the tuned sampling interval.
    """

    access_bp: int = 0
    aggrs: int = 0
    min_sample_us: int = 0
    max_sample_us: int = 0

    @property
    def enabled(self) -> bool:
        return self.aggrs > 0


@dataclass(frozen=True)
class Attrs:
    """``damon_attrs``: intervals in microseconds, region-count bounds.

    Defaults are the kernel's (``damon_new_ctx``): 5 ms sampling, 100 ms aggregation,
    60 s ops update, 10..1000 regions.
    """

    sample_us: int = 5_000
    aggr_us: int = 100_000
    ops_update_us: int = 60_000_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1000
    intervals_goal: IntervalsGoal = field(default_factory=IntervalsGoal)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """damon_set_attrs() checks, plus the ones that would divide by zero here."""
        for name in ("sample_us", "aggr_us", "ops_update_us"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise InvalidConfig(f"{name} must be a positive integer of microseconds, got {v!r}")
        if self.min_nr_regions < 3:
            raise InvalidConfig(f"min_nr_regions must be >= 3, got {self.min_nr_regions}")
        if self.min_nr_regions > self.max_nr_regions:
            raise InvalidConfig(f"min_nr_regions {self.min_nr_regions} > max_nr_regions "
                                f"{self.max_nr_regions}")
        if self.sample_us > self.aggr_us:
            raise InvalidConfig(f"sample_us {self.sample_us} > aggr_us {self.aggr_us}")
        g = self.intervals_goal
        if g.aggrs < 0 or g.access_bp < 0:
            raise InvalidConfig(f"intervals goal values must be >= 0: {g}")
        if g.enabled:
            if g.access_bp == 0 or g.access_bp > BP:
                raise InvalidConfig(f"intervals goal access_bp must be 1..{BP}, got {g.access_bp}")
            if not (0 < g.min_sample_us <= g.max_sample_us):
                raise InvalidConfig(f"intervals goal needs 0 < min_sample_us <= max_sample_us, "
                                    f"got {g.min_sample_us}..{g.max_sample_us}")
            if not (g.min_sample_us <= self.sample_us <= g.max_sample_us):
                raise InvalidConfig(f"sample_us {self.sample_us} outside the intervals goal's "
                                    f"{g.min_sample_us}..{g.max_sample_us}")

    @property
    def aggr_samples(self) -> int:
        """Samples per aggregation interval: the max value nr_accesses can reach."""
        return max(1, self.aggr_us // self.sample_us)

    def with_sample_us(self, sample_us: int) -> "Attrs":
        """Same ratio of aggregation to sampling interval, new sampling interval."""
        return replace(self, sample_us=sample_us, aggr_us=sample_us * self.aggr_samples)
