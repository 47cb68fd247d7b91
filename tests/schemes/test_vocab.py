"""The kernel's vocabulary: string enums that are damo's spellings and still take them."""

import json

import pytest

from damoncore import Filter, InvalidConfig, Quota, QuotaGoal, Scheme, Watermarks
from damoncore.vocab import (Action, FilterType, GoalMetric, GoalTuner, SampleFilterType,
                             WatermarkMetric)


@pytest.mark.parametrize("enum", [Action, FilterType, GoalMetric, GoalTuner, WatermarkMetric,
                                  SampleFilterType])
def test_members_are_their_damo_spelling(enum):
    for m in enum:
        assert m == m.value and str(m) == m.value and f"{m}" == m.value and repr(m) == repr(m.value)
        assert hash(m) == hash(m.value) and m.value in {m} and m in {m.value}
        assert enum(m.value) is m and enum(m.value.upper().replace("_", "-")) is m
        assert json.loads(json.dumps({"k": m})) == {"k": m.value}


def test_the_kernels_c_names_are_understood():
    assert Action("DAMOS_MIGRATE_HOT") is Action.MIGRATE_HOT
    assert FilterType("DAMOS_FILTER_TYPE_HUGEPAGE_SIZE") is FilterType.HUGEPAGE_SIZE
    assert GoalMetric("DAMOS_QUOTA_NODE_MEM_USED_BP") is GoalMetric.NODE_MEM_USED_BP
    assert GoalTuner("DAMOS_QUOTA_GOAL_TUNER_TEMPORAL") is GoalTuner.TEMPORAL
    assert WatermarkMetric("DAMOS_WMARK_FREE_MEM_RATE") is WatermarkMetric.FREE_MEM_RATE


def test_the_model_stores_members_and_names_unknown_words():
    s = Scheme(action="migrate_cold", target_nid=1,
               quota=Quota(goals=[QuotaGoal("node_mem_free_bp", 50, nid=0)],
                           goal_tuner="temporal"),
               watermarks=Watermarks("free_mem_rate", 100, 800, 500, 200),
               filters=[Filter("young")])
    assert s.action is Action.MIGRATE_COLD and s.quota.goal_tuner is GoalTuner.TEMPORAL
    assert s.quota.goals[0].metric is GoalMetric.NODE_MEM_FREE_BP
    assert s.filters[0].filter_type is FilterType.YOUNG and not s.filters[0].handled_by_core
    with pytest.raises(InvalidConfig, match=r"unknown action 'fly' \(known: willneed"):
        Scheme(action="fly")
    with pytest.raises(InvalidConfig, match="unknown goal tuner 'fast'"):
        Quota(goal_tuner="fast")
