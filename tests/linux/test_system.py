"""The platform facts damoncore reads from the running system instead of assuming x86-64:
syscall numbers, the page size, the top of user space, and the kernel's text formats."""

import errno
import mmap
import os

import pytest

from damoncore.errors import FeatureMissing, InvalidConfig
from damoncore.linux import _syscalls
from damoncore.linux.formats import parse_cpulist, parse_meminfo
from damoncore.linux.system import PAGE_SIZE, syscall_number, user_space_end


def test_page_size_is_the_systems():
    assert PAGE_SIZE == mmap.PAGESIZE == os.sysconf("SC_PAGE_SIZE")


def test_syscall_numbers_come_from_the_platform_headers():
    for name in _syscalls.SYSCALLS:
        assert syscall_number(name) > 0, name
    with pytest.raises(FeatureMissing, match="no_such_call"):
        syscall_number("no_such_call")


def test_user_space_end_is_where_pagemap_stops():
    end = user_space_end()
    assert end % PAGE_SIZE == 0 and end > (1 << 32)
    # the highest mapping of this process (the stack) lies below it; [vsyscall] above it
    tops = []
    with open("/proc/self/maps") as f:
        for line in f:
            if not line.rstrip().endswith("[vsyscall]"):
                tops.append(int(line.split("-")[1].split()[0], 16))
    assert max(tops) <= end
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(end // PAGE_SIZE * 8 - 8)
        assert len(f.read(8)) == 8           # the last page below it has an entry
        assert f.read(8) == b""              # none from it on


def test_raw_calls_return_minus_errno():
    fd = _syscalls.pidfd_open(os.getpid())
    assert fd >= 0
    os.close(fd)
    assert _syscalls.pidfd_open(2**22 + 12345) == -errno.ESRCH     # above pid_max: none


def test_cpulists():
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("\n") == [] and parse_cpulist(" 5 , 2-3") == [2, 3, 5]
    for bad in ("1-", "3-1", "a", "1,,2"):
        with pytest.raises(InvalidConfig, match="online"):
            parse_cpulist(bad, "online")


def test_meminfo_with_and_without_node_prefix():
    assert parse_meminfo("MemTotal:  100 kB\nHugePages_Total:   3\n") == \
        {"MemTotal": 102400, "HugePages_Total": 3}
    assert parse_meminfo("Node 1 MemFree:   2 kB\nNode 1 Active(anon):  1 kB\n") == \
        {"MemFree": 2048, "Active(anon)": 1024}
