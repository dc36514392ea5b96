"""How the process's C allocator treats the memory that torch frees."""

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold=32 * 2**20, trim_threshold=2**31 - 1):
    """Ask glibc's ``malloc`` to keep memory that is freed, for the next allocation.

    By default glibc serves large allocations with fresh pages from the operating system
    (``mmap``) and hands the top of its heap back (``trim``) as soon as a few hundred
    kilobytes are free there. A training step of a convolutional network allocates and
    frees the same activation tensors of several megabytes every step, so every step
    faults their pages in again; on virtual machines, where page faults are expensive,
    that costs 10 to 30 % of a step of :class:`~skseg.segnet.SegNetLite` on 2 CPU
    cores. This serves allocations of up to ``mmap_threshold`` bytes from the heap and
    keeps up to ``trim_threshold`` free bytes on it: the process then holds on to its
    peak memory. It acts on the whole process, so ``skseg train-segnet`` calls it and
    the estimators do not; the environment variables ``MALLOC_MMAP_THRESHOLD_=33554432
    MALLOC_TRIM_THRESHOLD_=2147483647`` do the same for any program.

    Parameters
    ----------
    mmap_threshold : int, default=32 MiB
        Allocations at least this large still get their own pages.

    trim_threshold : int, default=2**31 - 1
        Free bytes at the top of the heap before glibc returns them.

    Returns
    -------
    applied : bool
        ``False`` where the C library is not glibc (macOS, Windows, musl) or refused the
        values; nothing is changed then.

    Examples
    --------
    >>> from skseg._memory import keep_freed_memory
    >>> keep_freed_memory(mmap_threshold=-1)
    Traceback (most recent call last):
    ...
    ValueError: mmap_threshold must be an int in [0, 2**31), got -1
    """
    for name, value in [("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)]:
        if not isinstance(value, int) or not 0 <= value < 2**31:
            raise ValueError(f"{name} must be an int in [0, 2**31), got {value!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return False  # not glibc
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(
        mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )
