"""The adaptations selectable by name (API, CLI ``--adaptation``, kdamonds JSON) and those
whose results the core trusts.  A module of its own: it imports every built-in adaptation,
and edge-split subclasses the kernel's, so the registry cannot live with the base classes
without an import cycle."""

from .adaptation import FixedRegions, KernelAdaptation
from .edge_split import EdgeSplit

#: the adaptations selectable by name
ADAPTATIONS = {"kernel": KernelAdaptation, "fixed": FixedRegions, "edge-split": EdgeSplit}

#: the adaptations whose results the core trusts (exactly these classes, not subclasses);
#: edge-split is tested never to break the invariants (tests/core/test_edge_split.py)
TRUSTED = (KernelAdaptation, FixedRegions, EdgeSplit)
