"""The kernel's integer units, named once: import these, never restate the literals.

``BP`` (10000) is one whole in basis points: ``nr_accesses_bp`` per access, goal metrics
(``*_bp``), ratios.  ``MAX_SCORE`` (99) is ``DAMOS_MAX_SCORE``.  Both are defined once in
``_regions.pxd`` (a cdef enum the C loops use; other Cython modules cimport it);
``U64_MAX`` is the kernel's ULONG_MAX on 64-bit, damo's ``max``.
"""

from ._regions import BP, MAX_SCORE

U64_MAX = (1 << 64) - 1

__all__ = ["BP", "MAX_SCORE", "U64_MAX"]
