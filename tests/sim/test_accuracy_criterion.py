"""Issue criterion: a 4 GiB target whose 256 MiB hot range moves once, max 1000 regions:
hot-reported regions (nr_accesses >= half the max) cover >= 90% of the hot range and <= 5%
of the cold space at every aggregation from the 5th after each phase start.

With min_nr_regions=50 it holds for all 20 seeds.  With the kernel's default of 10 the
largest region is 410 MiB, and 7 of 20 seeds still have an edge region straddling the hot
range at the 5th-7th aggregation (tests/sim/test_ops.py measures that case).
"""

import numpy as np

import test_ops
from damoncore import Attrs


def test_moving_hot_range_found_within_5_aggregations_all_seeds(monkeypatch):
    monkeypatch.setattr(test_ops, "ATTRS", Attrs(sample_us=5000, aggr_us=100_000,
                                                 min_nr_regions=50, max_nr_regions=1000))
    for seed in range(1, 21):
        r = test_ops._accuracy_rows(seed)
        checked = r[r[:, 0] >= 5]
        assert len(checked) >= 180
        assert checked[:, 1].min() >= 0.90, (seed, checked[:, 1].min())
        assert checked[:, 2].max() <= 0.05, (seed, checked[:, 2].max())
