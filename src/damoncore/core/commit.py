"""Committing new parameters to a running context (damon_commit_ctx() in mm/damon/core.c).

``check_commit(dst, src)`` refuses what cannot be committed, before anything changes;
``commit_ctx(dst, src)`` then copies ``src``'s parameters into ``dst`` (a running context),
keeping what the kernel keeps:

- schemes, by index (:func:`damoncore.schemes.commit.commit_scheme`): parameters are
  copied, statistics and quota charge state kept; extra schemes are dropped, new ones added
  with fresh state;
- targets, by index (damon_commit_targets()): a source target marked ``obsolete`` removes
  the running target of its index (kernel 6.19), and so does a missing one (the source has
  fewer targets); the others keep their regions and the regions' access history, fitted
  to the new ranges if the source gives ranges (damon_set_regions()); a scheme's resume
  point into a removed target is dropped;
- attributes: changed through :meth:`Context.set_attrs` (nr_accesses and ages rescaled);
- ``pause`` (kernel 7.1), sample filters and the region adaptation are copied.

The ops backend is not committed: the running context keeps its backend (and so its
address space), where the kernel would take the source's ops.  Call it in the monitoring
thread between two samples (:meth:`Kdamond.call`), as the kernel's damon_call() does.
"""

from __future__ import annotations

from ..errors import ActionNotSupported, InvalidConfig
from ..schemes.commit import commit_goals, commit_scheme
from .regions import fit_regions


def check_commit(dst, src, goals_only: bool = False) -> None:
    """Raise :class:`InvalidConfig` (or :class:`ActionNotSupported`) if ``src`` cannot be
    committed to ``dst``; changes nothing."""
    if goals_only:
        if len(src.schemes) != len(dst.schemes):
            raise InvalidConfig(f"quota goals only: {len(src.schemes)} schemes given, the "
                                f"running context has {len(dst.schemes)}")
        return
    for i, s in enumerate(src.schemes):
        try:
            dst.check_scheme(s)
        except ActionNotSupported as e:
            raise type(e)(f"scheme {i}: {e}") from e
    if src.primitives != dst.primitives:
        raise InvalidConfig(f"sample primitives {'+'.join(src.primitives)}: the running "
                            f"context samples with {'+'.join(dst.primitives)}, which a "
                            f"commit cannot change (its backend does the sampling)")
    for i, (d, s) in enumerate(zip(dst.targets, src.targets)):
        if s.obsolete:
            continue
        if s.pid is not None and d.pid is not None and s.pid != d.pid:
            raise InvalidConfig(f"target {i} pid {s.pid}: the running target {i} is pid "
                                f"{d.pid}; a target's process cannot change online (mark it "
                                f"obsolete and start another run)")
    extra = src.targets[len(dst.targets):]
    if any(t.obsolete for t in extra):
        i = len(dst.targets) + next(k for k, t in enumerate(extra) if t.obsolete)
        raise InvalidConfig(f"target {i} is marked obsolete but the running context has "
                            f"only {len(dst.targets)} targets (kernel: -EINVAL)")
    if extra:
        raise InvalidConfig(f"{len(extra)} new target(s): adding targets to a running "
                            f"context is not supported (the backends set targets up at "
                            f"start)")
    live = [d for d, t in zip(dst.targets, src.targets) if not t.obsolete and not d.obsolete]
    if not live:
        raise InvalidConfig("the commit would leave no target to monitor (use stop to end "
                            "the run)")
    src.attrs.validate()


def commit_targets(dst, src) -> None:
    """damon_commit_targets(): obsolete-marked (or missing) targets removed, the others
    fitted."""
    kept = []
    for i, d in enumerate(dst.targets):
        s = src.targets[i] if i < len(src.targets) else None
        if s is None or s.obsolete:
            for sc in dst.schemes:
                st = sc.quota_state
                if st.charge_target_from == i:
                    st.charge_target_from, st.charge_addr_from = None, 0
            continue
        if s.ranges and s.ranges != d.ranges:
            if d.regions.nr:
                d.regions = fit_regions(d.regions, s.ranges, dst.min_region)
            d.ranges = list(s.ranges)
        kept.append(d)
    if len(kept) != len(dst.targets):
        # a resume point names a target by index: renumber the ones after removed targets
        new_index = {id(t): k for k, t in enumerate(kept)}
        old = {i: new_index.get(id(t)) for i, t in enumerate(dst.targets)}
        for sc in dst.schemes:
            st = sc.quota_state
            if st.charge_target_from is not None:
                st.charge_target_from = old.get(st.charge_target_from)
                if st.charge_target_from is None:
                    st.charge_addr_from = 0
        dst.targets = kept


def commit_schemes(dst, src) -> None:
    """damon_commit_schemes(): scheme i takes src's scheme i; extras go, new ones come."""
    kept = dst.schemes[:len(src.schemes)]
    for d, s in zip(kept, src.schemes):
        commit_scheme(d, s)
    for s in src.schemes[len(kept):]:
        if dst.started:
            s.reschedule(dst)
        kept.append(s)
    dst.schemes = kept


def commit_ctx(dst, src, goals_only: bool = False) -> None:
    """damon_commit_ctx(): ``src``'s parameters into the running ``dst`` (see the module
    doc); ``goals_only`` commits the schemes' quota goals alone (the kernel's
    commit_schemes_quota_goals).  :func:`check_commit` must have passed."""
    dst.nr_commits += 1
    dst.last_commit = (dst.clock.now_us(), dst.passed_sample_intervals)
    if goals_only:
        for d, s in zip(dst.schemes, src.schemes):
            commit_goals(d.quota, s.quota)
        return
    commit_schemes(dst, src)
    commit_targets(dst, src)
    if src.attrs != dst.attrs:
        dst.set_attrs(src.attrs)
    dst.set_pause(src.pause)
    dst.sample_filters = list(src.sample_filters)
    if type(src.adaptation) is not type(dst.adaptation):
        dst.set_adaptation(src.adaptation)
