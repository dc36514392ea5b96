"""Choosing the torch device an estimator runs on."""

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
        If a CUDA device is requested and no CUDA GPU is available.

    Examples
    --------
    >>> from skseg._device import resolve_device
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but no CUDA GPU is available to torch; "
            "use device='cpu' or device='auto'."
        )
    return resolved
