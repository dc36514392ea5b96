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


class OneCycle(Callback):
    """One-cycle learning rate over ``max_epochs`` epochs, across ``partial_fit`` calls.

    :meth:`~skseg.SegNetSegmenter.fit` starts a cycle of ``max_epochs`` epochs; calls of
    ``partial_fit(X, y, epochs=k)`` continue it, so fresh data can be streamed in epoch by
    epoch under one schedule. A call after the cycle has ended starts a new one. The
    number of steps per epoch is taken from the first epoch's training split. The peak
    rate is the net's ``lr``; the callback is inactive unless the net's ``lr_schedule`` is
    ``"onecycle"``.

    Parameters
    ----------
    pct_start : float, default=0.2
        Share of the steps spent warming up.
    """

    def __init__(self, pct_start=0.2):
        self.pct_start = pct_start

    def initialize(self):
        self.scheduler_ = None
        return self

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        scheduler = getattr(self, "scheduler_", None)
        finished = scheduler is not None and scheduler.last_epoch >= scheduler.total_steps - 1
        if net.lr_schedule != "onecycle" or (scheduler is not None and not finished):
            return
        steps = max(1, math.ceil(len(dataset_train) / net.batch_size)) * net.max_epochs
        self.scheduler_ = torch.optim.lr_scheduler.OneCycleLR(
            net.optimizer_, max_lr=net.lr, total_steps=steps, pct_start=self.pct_start
        )

    def on_batch_end(self, net, training=False, **kwargs):
        scheduler = getattr(self, "scheduler_", None)
        # the scheduler starts at step 0; step total_steps - 1 is the cycle's last
        if training and scheduler is not None and scheduler.last_epoch < scheduler.total_steps - 1:
            scheduler.step()
