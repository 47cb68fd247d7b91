"""The kernel's DAMON/DAMOS vocabulary as string-valued enums.

Each member's value is the spelling of the kernel's sysfs files and of damo (command line
and kdamonds JSON), so a member *is* that string: ``Action.MIGRATE_HOT == "migrate_hot"``,
it hashes like it, prints and serializes as it.  Parsing (``Action("migrate-hot")``) also
takes the kernel's C names (``DAMOS_MIGRATE_HOT``, ``DAMOS_FILTER_TYPE_ANON``,
``DAMOS_QUOTA_NODE_MEM_USED_BP``), any case and ``-`` for ``_``; :meth:`Vocab.parse` turns
an unknown word into :class:`~damoncore.errors.InvalidConfig` naming it and the known ones.
"""

from __future__ import annotations

from enum import Enum

from .errors import InvalidConfig

#: the prefix of each vocabulary's C names in include/linux/damon.h (lowercased)
_C_PREFIXES = {"Action": "damos_", "FilterType": "damos_filter_type_",
               "GoalMetric": "damos_quota_", "GoalTuner": "damos_quota_goal_tuner_",
               "WatermarkMetric": "damos_wmark_", "SampleFilterType": "damon_filter_type_"}


class Vocab(str, Enum):
    """Base of the vocabulary enums: a str whose value is damo's spelling."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return repr(self.value)

    @classmethod
    def _missing_(cls, value):
        if not isinstance(value, str):
            return None
        word = value.strip().lower().replace("-", "_")
        prefix = _C_PREFIXES.get(cls.__name__, "")
        if prefix and word.startswith(prefix):
            word = word[len(prefix):]
        for m in cls:
            if m.value == word:
                return m
        return None

    @classmethod
    def parse(cls, value, what: str | None = None):
        """The member spelled ``value``; InvalidConfig naming it otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidConfig(f"unknown {what or cls.__name__} {value!r} "
                                f"(known: {', '.join(cls.names())})") from None

    @classmethod
    def names(cls) -> tuple:
        return tuple(m.value for m in cls)


class Action(Vocab):
    """DAMOS action: what a scheme does to the memory it matches (``enum damos_action``)."""

    WILLNEED = "willneed"
    COLD = "cold"
    PAGEOUT = "pageout"
    HUGEPAGE = "hugepage"
    NOHUGEPAGE = "nohugepage"
    LRU_PRIO = "lru_prio"
    LRU_DEPRIO = "lru_deprio"
    MIGRATE_HOT = "migrate_hot"
    MIGRATE_COLD = "migrate_cold"
    STAT = "stat"
    COLLAPSE = "collapse"



class FilterType(Vocab):
    """DAMOS filter type (``enum damos_filter_type``): ops-handled or core-handled."""

    ANON = "anon"
    ACTIVE = "active"
    MEMCG = "memcg"
    YOUNG = "young"
    HUGEPAGE_SIZE = "hugepage_size"
    UNMAPPED = "unmapped"
    ADDR = "addr"
    TARGET = "target"


    @property
    def handled_by_core(self) -> bool:
        """addr and target filters are the core's (regions); the rest the ops' (pages)."""
        return self in (FilterType.ADDR, FilterType.TARGET)


class GoalMetric(Vocab):
    """DAMOS quota goal metric (``enum damos_quota_goal_metric``)."""

    USER_INPUT = "user_input"
    SOME_MEM_PSI_US = "some_mem_psi_us"
    NODE_MEM_USED_BP = "node_mem_used_bp"
    NODE_MEM_FREE_BP = "node_mem_free_bp"
    NODE_MEMCG_USED_BP = "node_memcg_used_bp"
    NODE_MEMCG_FREE_BP = "node_memcg_free_bp"
    ACTIVE_MEM_BP = "active_mem_bp"
    INACTIVE_MEM_BP = "inactive_mem_bp"
    NODE_ELIGIBLE_MEM_BP = "node_eligible_mem_bp"


    @property
    def needs_nid(self) -> bool:
        return self.value.startswith("node_")

    @property
    def needs_memcg(self) -> bool:
        return self.value.startswith("node_memcg")


class GoalTuner(Vocab):
    """Quota goal tuner (``enum damos_quota_goal_tuner``, kernel 7.1; ``distance`` is
    damoncore's, see :class:`~damoncore.schemes.scheme.Quota`)."""

    CONSIST = "consist"
    TEMPORAL = "temporal"
    DISTANCE = "distance"



class WatermarkMetric(Vocab):
    """Watermarks metric (``enum damos_wmark_metric``)."""

    NONE = "none"
    FREE_MEM_RATE = "free_mem_rate"



class SampleFilterType(Vocab):
    """Access report (sample) filter type (``enum damon_sample_filter_type``, RFC)."""

    CPUMASK = "cpumask"
    THREADS = "threads"
    WRITE = "write"



#: actions that move memory between nodes (``target_nid`` / ``dests``)
MIGRATE_ACTIONS = frozenset({Action.MIGRATE_HOT, Action.MIGRATE_COLD})
#: actions prioritizing hot memory (damon_hot_score()) and cold memory (damon_cold_score())
HOT_SCORE_ACTIONS = frozenset({Action.MIGRATE_HOT, Action.LRU_PRIO, Action.WILLNEED,
                               Action.HUGEPAGE})
COLD_SCORE_ACTIONS = frozenset({Action.MIGRATE_COLD, Action.PAGEOUT, Action.COLD,
                                Action.LRU_DEPRIO, Action.NOHUGEPAGE})
#: goal metrics whose values are basis points ("99.7%" = 9970)
BP_METRICS = frozenset(m for m in GoalMetric if m.value.endswith("_bp"))
#: filter types the ops backend evaluates page by page
OPS_FILTER_TYPES = frozenset(t for t in FilterType if not t.handled_by_core)
