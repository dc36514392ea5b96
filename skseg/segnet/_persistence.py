"""Model files of :class:`~skseg.SegNetSegmenter`: one file of tensors and plain values.

:func:`save_model` writes the simple constructor parameters, the classes and their loss
weights, the image shape, the training history and the weights, with a format name, a
version and a SHA-256 checksum of the weights. :func:`load_model` reads such a file with
``torch.load(weights_only=True)``, which cannot run code, and rejects foreign, truncated,
corrupted and newer files with a ``ValueError`` that says which.
"""

import hashlib
import json
import math
import os
import zipfile

import torch
from sklearn.utils.validation import check_is_fitted

from .._device import resolve_device

# constructor parameters that save() stores; classes and callables are not stored
_SAVED_PARAMS = (
    "width",
    "depth",
    "convs_per_block",
    "encoder_skip",
    "input_skip",
    "input_thresholds",
    "top_block",
    "lr",
    "max_epochs",
    "max_time",
    "batch_size",
    "validation_fraction",
    "lr_schedule",
    "weight_decay",
    "augment",
    "mixed_precision",
    "channels_last",
    "image_shape",
    "ignore_index",
    "class_weight",
    "test_time_shifts",
    "random_state",
    "verbose",
)

#: what :meth:`SegNetSegmenter.save` writes under the ``"format"`` key, and the newest
#: version of the file layout :meth:`SegNetSegmenter.load` reads (files from before the
#: versions are read as version 0). Version 2 added ``class_weight``, which version 1
#: readers cannot pass to their constructor. Version 3 reads ``convs_per_block=None`` as
#: one convolution at the top level and two below; earlier files meant two at the two
#: lowest levels and one above.
FILE_FORMAT = "skseg.SegNetSegmenter"
FILE_FORMAT_VERSION = 3


def save_model(estimator, path, *, weights_dtype=None):
    """Write ``estimator`` to ``path``; see :meth:`skseg.SegNetSegmenter.save`."""
    check_is_fitted(estimator, "classes_")
    params = {name: getattr(estimator, name) for name in _SAVED_PARAMS}
    if not isinstance(params["augment"], (bool, str)):  # a callable: not stored
        del params["augment"]
    for name in ("image_shape", "convs_per_block"):
        if isinstance(params[name], (tuple, list)):
            params[name] = [int(v) for v in params[name]]
    if isinstance(params["class_weight"], dict):  # numpy scalars are not plain values
        params["class_weight"] = {int(k): float(v) for k, v in params["class_weight"].items()}
    class_weight = getattr(estimator, "class_weight_", None)
    state = estimator.module_.state_dict()
    if weights_dtype is not None:
        state = {
            name: tensor.to(weights_dtype) if tensor.is_floating_point() else tensor
            for name, tensor in state.items()
        }
    torch.save(
        {
            "format": FILE_FORMAT,
            "format_version": FILE_FORMAT_VERSION,
            "params": params,
            "classes": torch.as_tensor(estimator.classes_),
            **({} if class_weight is None else {"class_weight": torch.as_tensor(class_weight)}),
            "image_shape": list(estimator.image_shape_),
            "history": json.dumps(estimator.history.to_list(), default=float),
            "state_dict": state,
            "checksum": _weights_checksum(state),
        },
        path,
    )


def load_model(cls, path, **params):
    """An estimator of class ``cls`` from ``path``; see :meth:`skseg.SegNetSegmenter.load`."""
    saved = _read_model_file(path)
    stored = dict(saved["params"])
    stored.setdefault("input_thresholds", 0)  # files from before the parameters
    stored.setdefault("top_block", "unpool")
    stored.setdefault("augment", False)
    stored.setdefault("convs_per_block", 1)
    if stored["convs_per_block"] is None and saved.get("format_version", 0) < 3:
        depth = stored.get("depth", 4)
        stored["convs_per_block"] = tuple(1 if lvl < depth - 2 else 2 for lvl in range(depth))
    for name in ("image_shape", "convs_per_block"):
        if isinstance(stored.get(name), list):
            stored[name] = tuple(stored[name])
    estimator = cls(**{**stored, **params})
    resolve_device(estimator.device)
    estimator.classes_ = saved["classes"].numpy()
    estimator.image_shape_ = tuple(saved["image_shape"])
    estimator.n_features_in_ = math.prod(estimator.image_shape_)
    if "class_weight" in saved:  # the loss weights of the fit, for further training
        estimator.class_weight_ = saved["class_weight"].numpy()
    estimator.initialize()
    try:
        estimator.module_.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: the weights do not fit the network the file's parameters build "
            f"({exc})"
        ) from exc
    estimator.module_.to(estimator.device)
    if "history" in saved:
        from skorch.history import History

        estimator.history_ = History(json.loads(saved["history"]))
    return estimator


def _weights_checksum(state_dict):
    """SHA-256 of the names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_model_file(path):
    """The dictionary :meth:`SegNetSegmenter.save` wrote, or a ValueError saying why not."""
    # save() writes torch's zip layout; anything else (a plain pickle, text, a truncated
    # file) is refused here, before torch.load falls back to its legacy unpickler
    if os.path.exists(path) and not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a SegNetSegmenter model file: it is not the zip archive of "
            "tensors that SegNetSegmenter.save writes"
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a zip archive that is damaged, not torch's, or holds code
        raise ValueError(
            f"{path} is not a SegNetSegmenter model file: it cannot be read as a file of "
            f"tensors and plain values ({type(exc).__name__}: {str(exc).splitlines()[0]})"
        ) from exc
    if not isinstance(saved, dict) or not {"params", "state_dict"} <= saved.keys():
        raise ValueError(
            f"{path} is not a SegNetSegmenter model file (written by "
            "SegNetSegmenter.save); for skorch's save_params files, build the estimator "
            "and call load_params"
        )
    version = saved.get("format_version", 0)  # files from before the versions
    if saved.get("format", FILE_FORMAT) != FILE_FORMAT:
        raise ValueError(f"{path} holds a {saved['format']!r} file, not a SegNetSegmenter")
    if not isinstance(version, int) or version > FILE_FORMAT_VERSION:
        raise ValueError(
            f"{path} was written in format version {version!r} by a newer skseg; this "
            f"version reads up to {FILE_FORMAT_VERSION}: upgrade skseg to load it"
        )
    if version >= 1 and _weights_checksum(saved["state_dict"]) != saved.get("checksum"):
        raise ValueError(f"{path} is corrupted: its weights do not match their checksum")
    return saved


