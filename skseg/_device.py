"""Choosing the torch device an estimator runs on."""

import functools
from pathlib import Path

import torch


def resolve_device(device):
    """Turn ``"auto"``, ``"cpu"`` or ``"cuda"`` into a :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"} or str
        ``"auto"`` picks CUDA when a GPU is visible and the CPU otherwise. Explicit device
        strings such as ``"cuda:1"`` are accepted too.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If ``device`` names no torch device, or names an accelerator (``"cuda"``,
        ``"mps"``, ``"xpu"``, ...) that this torch build or machine does not have.

    Examples
    --------
    >>> from skseg._device import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device={device!r} is not a device torch knows: use 'auto', 'cpu', 'cuda' "
            "or a torch device string such as 'cuda:1'"
        ) from error
    # every accelerator has a torch module of its type with is_available() (torch.cuda,
    # torch.mps, torch.xpu, ...): without this, the first tensor moved there fails inside
    # torch
    backend = getattr(torch, resolved.type, None)
    if resolved.type != "cpu" and not getattr(backend, "is_available", lambda: True)():
        missing = "CUDA GPU" if resolved.type == "cuda" else f"{resolved.type} device"
        raise ValueError(
            f"device={device!r} was requested but this torch build or machine has no "
            f"{missing}; use device='cpu' or device='auto'."
        )
    return resolved


def has_fast_bfloat16(device):
    """Whether bfloat16 arithmetic runs natively, and so faster than float32, on ``device``.

    On CUDA, GPUs that support bfloat16 (Ampere and later). On the CPU, processors with
    AMX or AVX-512 BF16 instructions; elsewhere (AVX2-only CPUs, for instance) oneDNN
    emulates bfloat16 and autocast runs several times *slower* than float32.

    Parameters
    ----------
    device : torch.device or str

    Returns
    -------
    bool

    Examples
    --------
    >>> from skseg._device import has_fast_bfloat16
    >>> has_fast_bfloat16("meta")  # only CPUs and CUDA GPUs compute in bfloat16
    False
    """
    device = torch.device(device)
    if device.type == "cuda":
        # compute capability 8 (Ampere) and later compute in bfloat16; older GPUs emulate it
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu":
        return False
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


@functools.lru_cache(maxsize=1)
def _cpu_flags():
    """The CPU's feature flags as Linux lists them (empty elsewhere: torch has no public
    way to ask for bfloat16 support, and float32 is the safe choice)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()
