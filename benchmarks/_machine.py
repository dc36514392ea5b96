"""The machine a benchmark runs on, named the same way above every table."""

import platform
from pathlib import Path


def cpu_name():
    """The CPU's model name and its widest vector extensions (Linux), for the table."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    info = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    extensions = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_bf16", "AMX")]
    features = ", ".join(name for flag, name in extensions if flag in flags) or "no AVX2"
    return f"{info.get('model name', 'unknown CPU')} ({features})"
