import platform
import sys

import pytest

from skseg._memory import keep_freed_memory

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds():
    assert keep_freed_memory() is True


def test_other_systems_are_left_alone(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False


@pytest.mark.parametrize(
    "kwargs, name",
    [({"mmap_threshold": -1}, "mmap_threshold"), ({"trim_threshold": 2**31}, "trim_threshold")],
)
def test_thresholds_outside_a_c_int_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        keep_freed_memory(**kwargs)
