"""Multi-GPU and multi-node SegNet training with Hugging Face Accelerate.

Requires the ``accelerate`` extra: ``pip install "skseg[accelerate]"``.
"""

from skorch.hf import AccelerateMixin

from ._estimator import SegNetSegmenter

__all__ = ["AcceleratedSegNetSegmenter"]


class AcceleratedSegNetSegmenter(AccelerateMixin, SegNetSegmenter):
    """:class:`~skseg.SegNetSegmenter` trained through :class:`accelerate.Accelerator`.

    skorch's :class:`~skorch.hf.AccelerateMixin` hands the network, optimizer and data
    loaders to the accelerator, which places them on the devices of the current process
    and, when the script is started with ``accelerate launch``, runs distributed data
    parallel training across GPUs and machines. Device placement belongs to the
    accelerator, so leave ``device=None``. Mixed precision is the accelerator's too
    (``Accelerator(mixed_precision="bf16")``), so ``mixed_precision`` defaults to
    ``False`` here.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`~skseg.SegNetSegmenter`.

    accelerator : accelerate.Accelerator
        The accelerator to train with.

    device : None, default=None
        Must stay ``None`` while the accelerator places tensors.

    mixed_precision : bool, default=False
        Leave the precision to the accelerator.

    unwrap_after_train : bool, default=True
        Unwrap the network after training so that it predicts and pickles as usual.

    Examples
    --------
    >>> from accelerate import Accelerator
    >>> from skseg.segnet import AcceleratedSegNetSegmenter
    >>> from skseg.datasets import load_digits_standin, make_multidigit_mnist
    >>> digits, labels = load_digits_standin()
    >>> X, y = make_multidigit_mnist(8, digits=digits, labels=labels, image_size=32,
    ...                              random_state=0)
    >>> net = AcceleratedSegNetSegmenter(
    ...     accelerator=Accelerator(cpu=True), width=4, depth=2, max_epochs=1, verbose=0)
    >>> net.fit(X, y).predict(X).shape
    (8, 32, 32)
    """

    def __init__(self, *args, mixed_precision=False, **kwargs):
        super().__init__(*args, mixed_precision=mixed_precision, **kwargs)

    def _initialize_callbacks(self):
        # skorch prints through the accelerator whatever the verbosity; honour verbose=0
        if self.callbacks__print_log__sink == "auto" and not self.verbose:
            self.callbacks__print_log__sink = _silent
        return super()._initialize_callbacks()


def _silent(*args, **kwargs):
    """A print sink that prints nothing."""
