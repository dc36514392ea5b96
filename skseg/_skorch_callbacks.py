"""skorch callbacks used by :class:`~skseg.SegNetSegmenter`."""

import math

import torch
from skorch.callbacks import Callback, ProgressBar


class QuietProgressBar(ProgressBar):
    """skorch's batch progress bar, shown only while the net's ``verbose`` is on."""

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        self.active_ = bool(net.verbose)
        if self.active_:
            super().on_epoch_begin(net, dataset_train, dataset_valid, **kwargs)

    def on_batch_end(self, net, **kwargs):
        if self.active_:
            super().on_batch_end(net, **kwargs)

    def on_epoch_end(self, net, **kwargs):
        if self.active_:
            super().on_epoch_end(net, **kwargs)


class OneCyclePerFit(Callback):
    """One-cycle learning rate over the epochs of each ``fit`` or ``partial_fit`` call.

    The number of steps is taken from the actual training split at the first epoch, so
    the cycle ends exactly on the last batch. The peak rate is the net's ``lr``; it is
    active only while the net's ``lr_schedule`` is ``"onecycle"``.

    Parameters
    ----------
    pct_start : float, default=0.2
        Share of the steps spent warming up.
    """

    def __init__(self, pct_start=0.2):
        self.pct_start = pct_start

    def on_train_begin(self, net, **kwargs):
        self.scheduler_ = None

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        if self.scheduler_ is not None or net.lr_schedule != "onecycle":
            return
        steps = max(1, math.ceil(len(dataset_train) / net.batch_size)) * net.max_epochs
        self.scheduler_ = torch.optim.lr_scheduler.OneCycleLR(
            net.optimizer_, max_lr=net.lr, total_steps=steps, pct_start=self.pct_start
        )

    def on_batch_end(self, net, training=False, **kwargs):
        scheduler = self.scheduler_
        if training and scheduler is not None and scheduler.last_epoch < scheduler.total_steps:
            scheduler.step()
