"""skorch callbacks used by :class:`~skseg.SegNetSegmenter`."""

import math
import time

import torch
from skorch.callbacks import Callback, ProgressBar

from ._optim import WarmupStableDecayLR


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


class StopOnNonFiniteLoss(Callback):
    """Stop training with a clear error as soon as a batch's loss is not finite.

    A learning rate that is too high (or infinite) makes the weights overflow; without
    this check training goes on, ``predict`` returns one class everywhere and nothing
    says why. The error names the epoch and the learning rate, and ``fit`` raises it, so
    no diverged model is ever returned or saved.
    """

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        if training and loss is not None and not torch.isfinite(loss.detach()).all():
            raise FloatingPointError(
                f"training diverged: the loss became {float(loss.detach())} in epoch "
                f"{len(net.history)} (lr={net.lr}); lower lr, or check the inputs for "
                "NaN or inf"
            )


class PlannedLRSchedule(Callback):
    """The net's learning-rate schedule over ``max_epochs`` epochs, across ``partial_fit`` calls.

    The schedule is the net's ``lr_schedule``: ``"onecycle"``
    (:class:`torch.optim.lr_scheduler.OneCycleLR`) or ``"wsd"``
    (:class:`~skseg.segnet.WarmupStableDecayLR`), each parameter group peaking at its own
    learning rate (the net's ``lr`` unless the group sets one) and stepped every batch;
    the callback is inactive for ``"constant"``.
    :meth:`~skseg.SegNetSegmenter.fit` starts a schedule of ``max_epochs`` epochs; calls
    of ``partial_fit(X, y, epochs=k)`` continue it, so fresh data can be streamed in
    epoch by epoch under one schedule. A call after the schedule has ended starts a new
    one. Its length is planned from the first epoch's number of training steps; an epoch
    of another size re-plans the rest as that many steps for each epoch left (the same
    schedule over the new total, continued from the step reached), so epochs may grow or
    shrink as they go and the schedule still ends with the last one.

    With the net's ``max_time`` (seconds for one call of ``fit`` or ``partial_fit``), the
    callback also plans by time: before every epoch after the first it counts the epochs
    that fit in the time left at the rate measured so far, ends training when none does,
    and otherwise plans the schedule to end with the last that fits; a batch that ends
    past ``max_time`` ends training at once.

    Parameters
    ----------
    pct_start : float, default=0.2
        Share of the steps spent warming up in the one-cycle schedule.

    warmup : float, default=0.1
        Share of the steps spent warming up in the warmup-stable-decay schedule.

    decay : float, default=0.3
        Share of the steps spent decaying in the warmup-stable-decay schedule.
    """

    def __init__(self, pct_start=0.2, warmup=0.1, decay=0.3):
        self.pct_start = pct_start
        self.warmup = warmup
        self.decay = decay

    def initialize(self):
        self.scheduler_ = None
        self.peak_lrs_ = None
        self.epochs_begun_ = self.steps_done_ = 0
        return self

    def on_train_begin(self, net, **kwargs):
        self.train_start_ = time.perf_counter()
        self.epochs_this_call_ = 0

    def _out_of_time(self, net):
        max_time = getattr(net, "max_time", None)
        return max_time is not None and time.perf_counter() - self.train_start_ >= max_time

    def _epochs_in_budget(self, net):
        """Epochs of this fit call that ``net.max_time`` holds at the rate measured so far.

        ``None`` without a budget or before the first epoch has been timed.
        """
        max_time = getattr(net, "max_time", None)
        if max_time is None or self.epochs_this_call_ == 0:
            return None
        elapsed = time.perf_counter() - self.train_start_
        per_epoch = elapsed / self.epochs_this_call_
        return self.epochs_this_call_ + int(max(0.0, max_time - elapsed) // per_epoch)

    def _scheduler(self, net, total_steps, step=0):
        if getattr(self, "peak_lrs_", None) is None or len(self.peak_lrs_) != len(
            net.optimizer_.param_groups
        ):
            # every parameter group peaks at its own rate (``net.lr`` unless the group set
            # another), read before any schedule has changed it
            self.peak_lrs_ = [group["lr"] for group in net.optimizer_.param_groups]
        if net.lr_schedule == "wsd":
            scheduler = WarmupStableDecayLR(
                net.optimizer_,
                max_lr=self.peak_lrs_,
                total_steps=total_steps,
                warmup=self.warmup,
                decay=self.decay,
            )
        else:
            pct_start = self.pct_start
            if pct_start * total_steps == 1:
                # torch divides by zero when the warm-up would end exactly at step 0
                pct_start *= 1 + 1e-6
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                net.optimizer_,
                max_lr=self.peak_lrs_,
                total_steps=total_steps,
                pct_start=pct_start,
            )
        if step:  # continue from `step`: set the rate (and momentum) of that step
            scheduler.last_epoch = step - 1
            scheduler.step()
        return scheduler

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        in_budget = self._epochs_in_budget(net)
        if in_budget is not None and in_budget <= self.epochs_this_call_:
            raise KeyboardInterrupt  # skorch ends training here, as early stopping does
        # the epochs the schedule ends with: max_epochs, or fewer when the time is short
        last_epoch = net.max_epochs
        if in_budget is not None:
            last_epoch = min(last_epoch, self.epochs_begun_ - self.epochs_this_call_ + in_budget)
        self.epochs_this_call_ += 1
        if net.lr_schedule == "constant":
            return
        steps = max(1, math.ceil(len(dataset_train) / net.batch_size))
        scheduler = getattr(self, "scheduler_", None)
        if scheduler is None or self.steps_done_ >= scheduler.total_steps:
            self.scheduler_ = self._scheduler(net, steps * net.max_epochs)
            self.epochs_begun_ = self.steps_done_ = 0
        else:
            epochs_left = max(1, last_epoch - self.epochs_begun_)
            total = self.steps_done_ + steps * epochs_left
            if total != scheduler.total_steps:
                self.scheduler_ = self._scheduler(net, total, step=self.steps_done_)
        self.epochs_begun_ += 1

    def on_batch_end(self, net, training=False, **kwargs):
        if training and self._out_of_time(net):
            raise KeyboardInterrupt  # the budget is spent, even within an epoch
        scheduler = getattr(self, "scheduler_", None)
        if not training or scheduler is None:
            return
        self.steps_done_ += 1
        # the scheduler starts at step 0; step total_steps - 1 is the cycle's last
        if scheduler.last_epoch < scheduler.total_steps - 1:
            scheduler.step()
