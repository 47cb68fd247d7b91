"""Checks of command-line values and of the files they name, made before anything starts.

Each failure is an :class:`ArgsError` (exit status 2) whose one line names the option and
the bad value; argparse ``type=`` helpers raise argparse's own error, which the parser turns
into the same.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import DamonError
from ..kdamonds import show
from .damo_options import ArgsError, int_arg  # noqa: F401  (int_arg: one home)


class PackageMissing(DamonError):
    """An optional Python package (not a kernel feature) that the request needs."""

    def __init__(self, package: str, needed_for: str, install: str):
        self.package = package
        super().__init__(f"{needed_for} needs the Python package {package}, which is not "
                         f"installed ({install})")


def _stat(path: str, what: str):
    """os.stat of a user-named path; ArgsError on any failure but 'no such file'."""
    if not path:
        raise ArgsError(f"{what}: empty file name")
    if "\0" in path:
        raise ArgsError(f"{what} {show(path)}: a file name cannot contain a NUL byte")
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ArgsError(f"{what} {show(path)}: {e.strerror}") from None


def input_file(path: str, what: str = "--input", hint: str = "") -> str:
    """``path`` if it names a readable regular file, else ArgsError saying why not."""
    st = _stat(path, what)
    if st is None:
        raise ArgsError(f"{what} {show(path)}: no such file{hint}")
    if stat.S_ISDIR(st.st_mode):
        raise ArgsError(f"{what} {show(path)}: is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ArgsError(f"{what} {show(path)}: not a regular file")
    if not os.access(path, os.R_OK):
        raise ArgsError(f"{what} {show(path)}: not readable (permission denied)")
    return path


def _writable_dir(d: str) -> bool:
    """For file systems without O_TMPFILE (/proc, some network ones): create and remove a
    named probe (it leaves no file, only the directory's mtime changes)."""
    probe = os.path.join(d, f".damoncore-probe-{os.getpid()}")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    try:
        os.unlink(probe)
    except OSError:
        pass
    return True


def output_file(path: str, what: str = "--output", exts=None) -> str:
    """``path`` if a file can be created there: records.check_output's rules (directory
    exists and is writable, not a directory or other non-regular file, name short enough
    to keep a ``.old``), then a real try, since permission bits tell root nothing about
    read-only mounts or /proc, and one of ``exts`` if given.  Nothing is created."""
    from ..records import check_output
    if exts is not None:
        ext = os.path.splitext(path)[1].lstrip(".").lower()
        if ext not in exts:
            raise ArgsError(f"{what} {show(path)}: unknown file type {show('.' + ext)} "
                            f"(known: {', '.join(sorted(exts))})")
    check_output(path, (), what)
    d = os.path.dirname(path) or "."
    # an unnamed O_TMPFILE leaves no trace, not even the directory's mtime
    try:
        os.close(os.open(d, os.O_WRONLY | getattr(os, "O_TMPFILE", 0), 0o600))
        ok, why = True, ""
    except IsADirectoryError:           # no O_TMPFILE here
        ok, why = _writable_dir(d), "not writable"
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without O_TMPFILE
            ok, why = _writable_dir(d), "not writable"
        else:
            ok, why = False, e.strerror
    if not ok:
        raise ArgsError(f"{what} {show(path)}: cannot create files in {show(d)} ({why})")
    if os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as e:
            raise ArgsError(f"{what} {show(path)}: not writable ({e.strerror})") from None
    return path
