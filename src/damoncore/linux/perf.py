"""Page-fault sampling with perf_event_open(2): one ring per CPU, drained in bulk.

Default event: the software event PERF_COUNT_SW_PAGE_FAULTS, every ``DEFAULT_SAMPLE_PERIOD``-th
fault, sampling TID|TIME|ADDR (the CPU is the ring's).  The kernel-side cost of a sample is paid
by the faulting thread: at period 1 a thread that does nothing but fault slows by ~25-30% however
little is sampled (the record alone costs more than 15% of a 1.6 µs fault), see
``benchmarks/bench_perf.py``.  ``PageFaultSampler.tracepoint()`` uses the
``exceptions:page_fault_user`` tracepoint instead, whose raw ``error_code`` tells writes (bit 1)
from reads and raw ``address`` is the faulting address; any other sampling event with a data address (e.g. a hardware memory-sampling event)
works through ``type``/``config``/``precise_ip``.

Scopes: a process (one event per (thread, CPU), followers redirected with SET_OUTPUT into one
ring per CPU, ``inherit`` for threads created later), a cgroup (``cgroup=path``, per-CPU events),
or the whole system (neither).  The kernel wakes pollers only when a ring holds
``wakeup_bytes`` (watermark mode), never per sample.  Timestamps are CLOCK_MONOTONIC (ns).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import time

import numpy as np

from damoncore.errors import FeatureMissing
from damoncore.linux import _syscalls
from damoncore.linux import perf_ring as pr
from damoncore.linux.errors import raise_for_errno
from damoncore.linux.formats import parse_cpulist
from damoncore.linux.system import PAGE_SIZE

PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_COUNT_SW_DUMMY = 9  # no samples; carries side-band records (here: mmaps)
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_FLAG_PID_CGROUP = 1 << 2
# ioctl numbers as this architecture encodes them (uapi linux/perf_event.h)
PERF_EVENT_IOC_ENABLE = _syscalls.PERF_EVENT_IOC_ENABLE
PERF_EVENT_IOC_DISABLE = _syscalls.PERF_EVENT_IOC_DISABLE
PERF_EVENT_IOC_SET_OUTPUT = _syscalls.PERF_EVENT_IOC_SET_OUTPUT
PERF_FORMAT_LOST = 1 << 4  # read() also returns the event's lost-sample count (Linux >= 6.0)
CLOCK_MONOTONIC = 1
ATTR_SIZE = 128  # PERF_ATTR_SIZE_VER7
# Every sample costs the faulting thread kernel time (bench_perf.py, 1.6 µs faults): the event
# alone ~50 ns per fault, a record ~215 ns, TID +115, TIME +70, IP and CPU +40 together.  The
# CPU is known from the per-CPU ring a record is in, so only TID, TIME and ADDR are sampled.
DEFAULT_SAMPLE_TYPE = pr.SAMPLE_TID | pr.SAMPLE_TIME | pr.SAMPLE_ADDR
# Every 3rd fault: the lowest period at which a thread faulting at full speed slows by <= 15%
# with no lost records (12.7%; period 2: 17%, period 1: 28%, and 16% even sampling ADDR only).
DEFAULT_SAMPLE_PERIOD = 3
# attr flag bits (the bitfield after read_format)
_DISABLED, _INHERIT, _EXCLUDE_KERNEL, _EXCLUDE_HV, _WATERMARK = 0, 1, 5, 6, 14
_PRECISE_SHIFT, _MMAP_DATA, _SAMPLE_ID_ALL, _USE_CLOCKID = 15, 17, 18, 25


def pack_attr(type_, config, sample_type, sample_period=1, inherit=False, wakeup_bytes=0,
              precise_ip=0, read_format=PERF_FORMAT_LOST, exclude_kernel=False,
              clockid=CLOCK_MONOTONIC, mmap_data=False) -> bytes:  # fmt: skip
    """``struct perf_event_attr`` (VER7, 128 bytes), created disabled, watermark wakeups.

    ``clockid`` None: the kernel's default perf clock (local_clock) for SAMPLE_TIME.
    ``mmap_data``: also record PERF_RECORD_MMAP for every new non-executable mapping
    (anonymous ones and brk growth included), with ``sample_id_all`` so each carries the
    sampled TID/TIME.
    """
    flags = 1 << _DISABLED | 1 << _EXCLUDE_HV
    flags |= (precise_ip & 3) << _PRECISE_SHIFT
    if clockid is not None:
        flags |= 1 << _USE_CLOCKID
    if inherit:
        flags |= 1 << _INHERIT
    if exclude_kernel:
        flags |= 1 << _EXCLUDE_KERNEL
    if wakeup_bytes:
        flags |= 1 << _WATERMARK
    if mmap_data:
        flags |= 1 << _MMAP_DATA | 1 << _SAMPLE_ID_ALL
    return struct.pack(
        "<IIQQQQQIIQQQQIiQIHHIIQ",
        type_, ATTR_SIZE, config, sample_period, sample_type, read_format, flags,
        wakeup_bytes, 0, 0, 0, 0, 0, 0, clockid or 0, 0, 0, 0, 0, 0, 0, 0,
    )  # fmt: skip


def perf_event_open(attr: bytes, pid: int, cpu: int, group_fd: int = -1, flags: int = 0) -> int:
    """Open one perf event; returns its fd.  errno becomes TargetGone/SyscallError."""
    fd = _syscalls.perf_event_open(bytes(attr), pid, cpu, group_fd, flags | PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = -fd
        is_pid = pid >= 0 and not flags & PERF_FLAG_PID_CGROUP
        raise_for_errno(err, "perf_event_open", pid if is_pid else None, f"cpu {cpu}")
    return int(fd)


def tracepoint_format(event: str, tracefs_root: str = "/sys/kernel/tracing"):
    """``(id, {field: (offset, size)})`` of tracepoint ``event`` ("system/name") from tracefs."""
    edir = os.path.join(tracefs_root, "events", event)
    try:
        with open(os.path.join(edir, "id")) as f:
            tp_id = int(f.read())
        with open(os.path.join(edir, "format")) as f:
            text = f.read()
    except FileNotFoundError as err:
        raise FeatureMissing(f"tracepoint {event}", f"{edir} (is tracefs mounted?)") from err
    fields = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("field:"):
            continue
        parts = dict(p.strip().split(":", 1) for p in line.split(";") if ":" in p)
        name = parts["field"].split()[-1].split("[")[0]
        fields[name] = (int(parts["offset"]), int(parts["size"]))
    return tp_id, fields


class PageFaultSampler:
    """Sample page faults of a process, a cgroup or the whole system; a context manager.

    Args:
        pid: process to follow (all its threads, and threads it creates later).
        cgroup: path of a cgroup v2 directory to follow instead of ``pid``.
        cpus: CPUs to open events on (default: all online CPUs).
        type, config: the perf event (default: software page faults).
        sample_period: events per sample (1 = every fault; the default keeps a thread that
            faults at full speed within 15% of its unmonitored speed).
        ring_pages: data pages per CPU ring (power of two); the ring is ``1 + ring_pages`` pages.
        wakeup_bytes: watermark in bytes at which poll() wakes us (default: a quarter ring).
        precise_ip: 0-3, for hardware memory-sampling events.
        raw_write_field: ``(offset, size)`` inside the raw payload whose bit 1 means "write".
        raw_addr_field: ``(offset, size)`` inside the raw payload of the faulting address, for
            events whose SAMPLE_ADDR is 0 (tracepoints).
        track_mmaps: also record every new data mapping (PERF_RECORD_MMAP, needs SAMPLE_TIME);
            :meth:`take_mmaps` hands them out, :func:`remapped_after` tells which samples'
            addresses were mapped anew after the fault (see there).  A mapping is recorded
            in the ring of the CPU that made it: to see every mapping of a scope, cover all
            CPUs (``config=PERF_COUNT_SW_DUMMY`` gives a sampler of mmaps only).
    Attributes:
        lost: samples the kernel dropped because a ring was full, cumulative.  PERF_RECORD_LOST
            records arrive only once the ring has room again, so this also reads each event's
            own counter (PERF_FORMAT_LOST) and reports the larger of the two.
        throttled: PERF_RECORD_THROTTLE records seen, cumulative.
        write_known: whether ``is_write`` carries information (False for the software event).
    """

    def __init__(self, pid=None, cgroup=None, cpus=None, type=PERF_TYPE_SOFTWARE,
                 config=PERF_COUNT_SW_PAGE_FAULTS, sample_period=DEFAULT_SAMPLE_PERIOD,
                 ring_pages=256, wakeup_bytes=None, precise_ip=0,
                 sample_type=DEFAULT_SAMPLE_TYPE, raw_write_field=None, procfs_root="/proc",
                 sysfs_root="/sys", raw_addr_field=None, track_mmaps=False):  # fmt: skip
        if pid is not None and cgroup is not None:
            raise ValueError("give pid or cgroup, not both")
        if track_mmaps and not sample_type & pr.SAMPLE_TIME:
            raise ValueError("track_mmaps needs SAMPLE_TIME in sample_type (the order of "
                             "faults and mappings)")
        self.pid, self.cgroup = pid, cgroup
        self.cpus = list(cpus) if cpus is not None else online_cpus(sysfs_root)
        self.procfs_root = procfs_root
        self.sample_type = sample_type
        self.ring_pages = ring_pages
        wake = wakeup_bytes if wakeup_bytes is not None else ring_pages * PAGE_SIZE // 4
        self._attr = pack_attr(
            type, config, sample_type, sample_period,
            inherit=pid is not None, wakeup_bytes=wake, precise_ip=precise_ip,
            mmap_data=track_mmaps,
        )  # fmt: skip
        self.track_mmaps = track_mmaps
        self._mmaps = []
        self._mmap_time_at = pr.sample_id_time_from_end(sample_type)
        self._raw_write_field = raw_write_field
        self._raw_addr_field = raw_addr_field
        self.write_known = raw_write_field is not None
        self._lost_records = 0
        self.throttled = 0
        self._fds, self._rings, self._ring_cpus, self._poll = [], [], [], None
        self._dtypes = {}

    @classmethod
    def tracepoint(cls, pid=None, event="exceptions/page_fault_user",
                   tracefs_root="/sys/kernel/tracing", **kwargs):  # fmt: skip
        """A sampler on a page-fault tracepoint; ``is_write`` comes from its ``error_code``."""
        tp_id, fields = tracepoint_format(event, tracefs_root)
        if "error_code" not in fields:
            raise FeatureMissing(f"tracepoint {event}", "no error_code field")
        # A tracepoint sample's SAMPLE_ADDR is 0: the address is the payload's ``address``.
        st = kwargs.pop("sample_type", DEFAULT_SAMPLE_TYPE) & ~pr.SAMPLE_ADDR | pr.SAMPLE_RAW
        return cls(pid=pid, type=PERF_TYPE_TRACEPOINT, config=tp_id, sample_type=st,
                   raw_write_field=fields["error_code"], raw_addr_field=fields.get("address"),
                   **kwargs)  # fmt: skip

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> "PageFaultSampler":
        """Open, map and enable the events."""
        try:
            self._open_events()
            for fd in self._fds:
                fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
        except BaseException:
            self.close()
            raise
        return self

    def _open_events(self):
        self._poll = select.poll()
        cg_fd = None
        if self.cgroup is not None:
            cg_fd = os.open(self.cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            tids = self._threads() if self.pid is not None else [None]
            for cpu in self.cpus:
                leader = None
                for tid in tids:
                    if cg_fd is not None:
                        fd = perf_event_open(self._attr, cg_fd, cpu, -1, PERF_FLAG_PID_CGROUP)
                    else:
                        fd = perf_event_open(self._attr, -1 if tid is None else tid, cpu)
                    self._fds.append(fd)
                    if leader is None:
                        leader = fd
                        self._rings.append(pr.RingBuffer(fd, self.ring_pages))
                        self._ring_cpus.append(cpu)
                        self._poll.register(fd, select.POLLIN)
                    else:
                        fcntl.ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, leader)
        finally:
            if cg_fd is not None:
                os.close(cg_fd)

    def _threads(self) -> list[int]:
        tdir = os.path.join(self.procfs_root, str(self.pid), "task")
        try:
            return sorted(int(t) for t in os.listdir(tdir))
        except FileNotFoundError:
            raise_for_errno(errno.ESRCH, "perf_event_open", self.pid)  # -> TargetGone

    def close(self):
        """Disable and release everything; safe to call twice."""
        for ring in self._rings:
            ring.close()
        for fd in self._fds:
            os.close(fd)
        self._fds, self._rings, self._ring_cpus, self._poll = [], [], [], None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def wait(self, timeout_s: float) -> bool:
        """Block until some ring reaches its watermark or ``timeout_s`` seconds pass."""
        return bool(self._poll.poll(int(timeout_s * 1000)))

    def read(self, timeout_s: float = 0.0) -> dict[str, np.ndarray]:
        """Drain every ring (after waiting up to ``timeout_s`` seconds for a watermark wakeup).

        Returns arrays of equal length: ``addr`` (uint64, faulting virtual address in bytes),
        ``cpu`` (int32; the ring's CPU unless SAMPLE_CPU is sampled), ``tid`` (int32), ``pid``
        (int32), ``ip`` (uint64; 0 unless SAMPLE_IP), ``time_ns`` (uint64, CLOCK_MONOTONIC; the
        time of this read, an upper bound, unless SAMPLE_TIME), ``is_write`` (bool; all False
        unless ``write_known``).
        """
        if timeout_s > 0:
            self.wait(timeout_s)
        chunks, cpus = [], []
        now_ns = time.monotonic_ns()
        for ring, cpu in zip(self._rings, self._ring_cpus):
            data = ring.drain()
            if not data:
                continue
            parts, counts = pr.parse_records(
                data, self._dtype_for, self._mmaps if self.track_mmaps else None,
                self._mmap_time_at)
            self._lost_records += counts["lost"]
            self.throttled += counts["throttle"]
            chunks.extend(parts)
            cpus.extend([cpu] * len(parts))
        return self._columns(chunks, cpus, now_ns)

    def take_mmaps(self) -> dict[str, np.ndarray]:
        """The mappings recorded by the reads so far (and forget them): ``pid`` (int32),
        ``start``, ``end`` (uint64 bytes), ``time_ns`` (uint64, CLOCK_MONOTONIC)."""
        m, self._mmaps = self._mmaps, []
        a = np.array(m, dtype=np.uint64).reshape(-1, 4)
        return {"pid": a[:, 0].astype(np.int32), "start": a[:, 1], "end": a[:, 2],
                "time_ns": a[:, 3]}

    @property
    def lost(self) -> int:
        """Samples dropped so far (see the class docstring)."""
        counted = 0
        for fd in self._fds:
            data = os.read(fd, 16)  # {u64 value; u64 lost} with read_format = PERF_FORMAT_LOST
            if len(data) == 16:
                counted += struct.unpack("<QQ", data)[1]
        return max(counted, self._lost_records)

    def _dtype_for(self, size: int) -> np.dtype:
        dt = self._dtypes.get(size)
        if dt is None:
            raw = []
            for name, field in (("write_field", self._raw_write_field),
                                ("raw_addr", self._raw_addr_field)):
                if field is not None:
                    raw.append((name, f"<u{field[1]}", field[0]))
            dt = pr.sample_dtype(self.sample_type, raw, size)
            self._dtypes[size] = dt
        return dt

    def _columns(self, chunks, cpus=(), now_ns=0) -> dict[str, np.ndarray]:
        n = sum(len(c) for c in chunks)
        sampled = chunks[0].dtype.names if chunks else ()

        def col(name, dtype, default=0):
            if name not in sampled:
                return np.full(n, default, dtype=dtype)
            return np.concatenate([c[name] for c in chunks]).astype(dtype, copy=False)

        out = {
            "addr": col("raw_addr" if self._raw_addr_field else "addr", np.uint64),
            "cpu": col("cpu", np.int32) if "cpu" in sampled or not chunks else
            np.repeat(np.array(cpus, np.int32), [len(c) for c in chunks]),
            "tid": col("tid", np.int32),
            "pid": col("pid", np.int32),
            "ip": col("ip", np.uint64),
            "time_ns": col("time", np.uint64, now_ns),
        }
        if self._raw_write_field is not None and chunks:
            out["is_write"] = (col("write_field", np.uint64) & np.uint64(2)) != 0
        else:
            out["is_write"] = np.zeros(out["addr"].shape[0], dtype=bool)
        return out


def remapped_after(got: dict, mmaps: dict, chunk: int = 256) -> np.ndarray:
    """Which samples of ``got`` (:meth:`PageFaultSampler.read` columns) lie in a mapping of
    their own process made after them (``mmaps`` from :meth:`PageFaultSampler.take_mmaps`).

    A fault's address is translated to a frame only when the ring is drained; if the
    process unmapped that address and mapped it again in between (freed memory reused for
    a new allocation, possibly touched from another CPU and placed on another node), the
    translation names a frame the fault never touched.  A new mapping makes a PERF_RECORD_MMAP,
    so such samples can be told and dropped.  Not caught: reuse without a new mapping
    (MADV_DONTNEED then a new first touch), and a mapping whose record was still unread when
    the rings were drained.  A record of a mapping that kept its pages (any VMA change the
    kernel reports as a mapping) drops good samples: samples lost, never a wrong frame.
    Vectorized over samples, ``chunk`` mappings at a time.
    """
    n = len(got["addr"])
    stale = np.zeros(n, bool)
    if n == 0 or len(mmaps["pid"]) == 0:
        return stale
    # only mappings after some sample, of a process with samples
    keep = (mmaps["time_ns"] > got["time_ns"].min()) & np.isin(mmaps["pid"], got["pid"])
    mp, ms, me, mt = (mmaps[k][keep] for k in ("pid", "start", "end", "time_ns"))
    addr, pid, t = got["addr"], got["pid"], got["time_ns"]
    for i in range(0, len(mp), chunk):
        sl = slice(i, i + chunk)
        hit = ((pid[:, None] == mp[None, sl]) & (addr[:, None] >= ms[None, sl])
               & (addr[:, None] < me[None, sl]) & (t[:, None] < mt[None, sl]))
        stale |= hit.any(axis=1)
    return stale


def online_cpus(sysfs_root: str = "/sys") -> list[int]:
    path = os.path.join(sysfs_root, "devices/system/cpu/online")
    with open(path) as f:
        return parse_cpulist(f.read(), path)
