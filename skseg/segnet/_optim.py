"""Muon (orthogonalised momentum for convolution weights, AdamW for the rest) and a
warmup-stable-decay learning-rate schedule."""

import math
from numbers import Integral

import torch
from torch import nn
from torch.optim.adamw import adamw

__all__ = ["Muon", "WarmupStableDecayLR", "muon_param_groups", "orthogonalize"]

# coefficients of the quintic Newton-Schulz iteration of Muon (Jordan et al., 2024), tuned
# to push all singular values into roughly [0.7, 1.2] in few steps
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix, steps=5, *, dtype=None):
    """Approximate the orthogonal polar factor of a matrix by Newton-Schulz iterations.

    For ``matrix = U S V^T`` (reduced SVD) the result is close to ``U V^T``: the same
    singular vectors, with every singular value that is not much smaller than the
    Frobenius norm of ``matrix`` moved into about ``[0.7, 1.2]``; each step multiplies
    tiny ones by about 3.4, so five steps lift those down to about 1/500 of the norm
    (and leave smaller ones small, which is what an optimizer step wants). Only matrix
    products are used, so it is cheap on any device.

    Parameters
    ----------
    matrix : torch.Tensor of shape (m, n)
        A 2-D tensor.

    steps : int, default=5
        Iterations.

    dtype : torch.dtype, default=None
        Floating-point type to iterate in (``None``: that of ``matrix``). The iteration
        is robust to rounding: ``torch.bfloat16`` gives the same result to within a few
        per cent, for GPUs, whose bfloat16 matrix products are several times faster.
        On CPUs float32 takes less time, AMX included, because it iterates in the
        cheaper form of the Notes.

    Returns
    -------
    torch.Tensor of shape (m, n)
        The approximate polar factor, in the dtype of ``matrix``.

    Notes
    -----
    Every step multiplies the (wide) matrix on the left by a polynomial in its Gram
    matrix. Where one side is more than 1.5 times the other and the iteration runs in
    float32 or float64, those polynomials are composed on the small Gram matrix and
    applied to ``matrix`` once, which takes about half the arithmetic for the weights of
    convolutions (whose columns are the input channels times the kernel size). The
    result is the same iteration's to about 2e-3 of its largest entry: squaring the
    spectrum costs some precision, far less than bfloat16 iterations differ by, which is
    why bfloat16 iterations keep the direct form.

    Examples
    --------
    >>> import torch
    >>> from skseg.segnet import orthogonalize
    >>> q = orthogonalize(torch.randn(4, 6, generator=torch.Generator().manual_seed(0)))
    >>> s = torch.linalg.svdvals(q)
    >>> bool(((s > 0.6) & (s < 1.3)).all())
    True
    """
    if matrix.ndim != 2:
        raise ValueError(f"orthogonalize expects a 2-D tensor, got shape {tuple(matrix.shape)}")
    x = matrix.to(dtype or matrix.dtype)
    x = x / (x.norm() + 1e-7)
    transposed = x.shape[0] > x.shape[1]
    if transposed:  # iterate on the smaller Gram matrix
        x = x.T
    rows, cols = x.shape
    if x.dtype in (torch.float32, torch.float64) and 2 * cols > 3 * rows:
        x = _newton_schulz_in_gram_space(x, steps)
    else:
        a, b, c = _NS_COEFFICIENTS
        for _ in range(steps):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if transposed else x).to(matrix.dtype)


def _newton_schulz_in_gram_space(x, steps):
    # Each step multiplies x (m x n, m <= n) on the left by p(A) = a I + b A + c A^2 of
    # its Gram matrix A = x x^T. Every p(A) is a polynomial in the first Gram matrix, so
    # they all commute: after k steps x_k = Q_k x_0 and A_k = p(A_{k-1}) A_{k-1} p(A_{k-1}),
    # all m x m. Iterating on those and multiplying x_0 once at the end costs
    # 2 m^2 n + (4 steps - 3) m^3 multiply-adds instead of steps (2 m^2 n + m^3): about
    # half for the weights of SegNetLite, whose rows are 2 to 18 times fewer than their
    # columns. Rounding grows with the condition of A, so this runs in float32 or wider
    # only (bfloat16 iterations take the direct form).
    a, b, c = _NS_COEFFICIENTS
    gram = x @ x.T
    product = None
    for step in range(steps):
        poly = b * gram + c * gram @ gram
        poly.diagonal().add_(a)
        product = poly if product is None else poly @ product
        if step < steps - 1:
            gram = poly @ (poly @ gram)
    return product @ x


def _is_float_dtype(dtype):
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point


class Muon(torch.optim.Optimizer):
    """Muon for the weights of hidden convolutions, AdamW for everything else.

    Muon (MomentUm Orthogonalized by Newton-Schulz) keeps a Nesterov momentum of the
    gradient of each weight, reshapes it to a matrix (output channels x the rest),
    replaces it by its approximate orthogonal polar factor (:func:`orthogonalize`) and
    steps along that: every direction of the update gets the same size, so directions
    that the gradient underweights learn as fast as the dominant ones. The step is
    ``lr * muon_lr_ratio * sqrt(max(1, rows / cols))``.

    Parameters that should not be orthogonalised (biases, normalisation layers, the
    first layer that reads the input, the classifier) take the steps of
    :class:`torch.optim.AdamW` (its functional form, ``torch.optim.adamw.adamw``) with
    learning rate ``lr``.
    :func:`muon_param_groups` splits a module's parameters this way; each parameter
    group says which update it takes with ``use_muon`` (``None``: Muon for parameters
    of two or more dimensions).

    :class:`torch.optim.Muon` takes matrices only; this class extends the same update
    (tested step by step against it on matrices) to convolution weights, reshaped, to
    Newton-Schulz iterations in bfloat16 (``ns_dtype``) and to AdamW for the rest, in
    one optimizer that skorch and torch's learning-rate schedulers drive.

    Learning-rate schedulers drive ``lr``; both updates follow it. Schedulers that
    cycle momentum (:class:`torch.optim.lr_scheduler.OneCycleLR`) cycle ``betas`` of
    the Adam part and leave Muon's ``momentum`` fixed.

    Parameters
    ----------
    params : iterable of torch.Tensor or dict
        Parameters or parameter groups.

    lr : float, default=1e-3
        Learning rate of the Adam part; the Muon part uses ``lr * muon_lr_ratio``.

    muon_lr_ratio : float, default=16.0
        Ratio of Muon's learning rate to Adam's.

    momentum : float, default=0.95
        Momentum of the Muon part.

    nesterov : bool, default=True
        Orthogonalise the Nesterov look-ahead ``grad + momentum * buffer`` rather than
        the buffer.

    ns_steps : int, default=5
        Newton-Schulz iterations per step.

    ns_dtype : torch.dtype, default=None
        Floating-point type of the Newton-Schulz iterations (``None``: that of the
        gradients). ``torch.bfloat16``, as in the reference implementation, is meant for
        GPUs. On CPUs float32 iterations take less time, even with native bfloat16
        matrix products (AMX), and CPUs that emulate bfloat16 run them some 30 times
        slower than in float32. :class:`~skseg.SegNetSegmenter` chooses bfloat16 on
        CUDA devices where ``mixed_precision`` runs the network in bfloat16.

    betas : tuple of float, default=(0.9, 0.999)
        Adam's moment decay rates.

    eps : float, default=1e-8
        Adam's denominator term.

    weight_decay : float, default=0.0
        Decoupled weight decay of both parts: every step multiplies a parameter by
        ``1 - step_lr * weight_decay``, ``step_lr`` being the part's learning rate.

    References
    ----------
    K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse and J. Bernstein,
    "Muon: An optimizer for hidden layers in neural networks", 2024,
    https://kellerjordan.github.io/posts/muon/

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skseg.segnet import Muon, muon_param_groups
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> opt = Muon(muon_param_groups(net), lr=1e-3)
    >>> [group["use_muon"] for group in opt.param_groups]
    [True, False]
    >>> net(torch.randn(2, 1, 8, 8)).sum().backward()
    >>> opt.step()
    """

    def __init__(
        self,
        params,
        lr=1e-3,
        *,
        muon_lr_ratio=16.0,
        momentum=0.95,
        nesterov=True,
        ns_steps=5,
        ns_dtype=None,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.0,
    ):
        for name, value, valid in [
            ("lr", lr, lr >= 0),
            ("muon_lr_ratio", muon_lr_ratio, muon_lr_ratio >= 0),
            ("momentum", momentum, 0 <= momentum < 1),
            ("ns_steps", ns_steps, isinstance(ns_steps, Integral) and ns_steps >= 1),
            ("ns_dtype", ns_dtype, ns_dtype is None or _is_float_dtype(ns_dtype)),
            ("betas", betas, len(betas) == 2 and all(0 <= beta < 1 for beta in betas)),
            ("eps", eps, eps >= 0),
            ("weight_decay", weight_decay, weight_decay >= 0),
        ]:
            if not valid:
                raise ValueError(f"invalid Muon parameter {name}={value!r}")
        defaults = dict(
            lr=lr,
            muon_lr_ratio=muon_lr_ratio,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            ns_dtype=ns_dtype,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            use_muon=None,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        """Take one optimisation step.

        Parameters
        ----------
        closure : callable, default=None
            Re-evaluates the model and returns the loss.

        Returns
        -------
        loss : torch.Tensor or None
            What ``closure`` returned.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            adamw_params = []
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("Muon does not support sparse gradients")
                use_muon = group["use_muon"]
                if use_muon is None:
                    use_muon = param.ndim >= 2
                if use_muon:
                    self._muon_step(param, group)
                else:
                    adamw_params.append(param)
            if adamw_params:
                self._adamw_steps(adamw_params, group)
        return loss

    def _muon_step(self, param, group):
        grad = param.grad
        state = self.state[param]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        buffer = state["momentum_buffer"]
        buffer.mul_(group["momentum"]).add_(grad)
        update = grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
        matrix = update.reshape(len(update), -1)
        direction = orthogonalize(matrix, group["ns_steps"], dtype=group["ns_dtype"])
        direction = direction.view(param.shape)
        lr = group["lr"] * group["muon_lr_ratio"]
        param.mul_(1 - lr * group["weight_decay"])
        param.add_(direction, alpha=-lr * math.sqrt(max(1.0, matrix.shape[0] / matrix.shape[1])))

    def _adamw_steps(self, params, group):
        """AdamW steps for ``params``: torch's functional AdamW, on this optimizer's state."""
        for param in params:
            state = self.state[param]
            if "exp_avg" not in state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        states = [self.state[param] for param in params]
        beta1, beta2 = group["betas"]
        adamw(
            params,
            [param.grad for param in params],
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [],
            [state["step"] for state in states],
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )


def muon_param_groups(module):
    """Split a network's parameters into a Muon group and an AdamW group for :class:`Muon`.

    Muon takes the weights of the convolutions with a spatial kernel (larger than 1 x 1)
    except the first convolution, which reads the input; AdamW takes the rest: the first
    convolution, 1 x 1 convolutions (classifiers, projections), biases, normalisation
    layers and anything else.

    Parameters
    ----------
    module : torch.nn.Module
        The network.

    Returns
    -------
    groups : list of dict
        ``[{"params": [...], "use_muon": True}, {"params": [...], "use_muon": False}]``,
        empty groups left out.

    Examples
    --------
    >>> from skseg.segnet import muon_param_groups
    >>> from skseg.segnet import SegNetLite
    >>> muon, adamw = muon_param_groups(SegNetLite(width=8, depth=2))
    >>> [tuple(p.shape) for p in muon["params"]]
    [(16, 8, 3, 3), (8, 8, 3, 3), (8, 16, 3, 3)]
    """
    convolutions = [
        layer
        for layer in module.modules()
        if isinstance(layer, nn.modules.conv._ConvNd) and math.prod(layer.kernel_size) > 1
    ]
    muon_ids = {id(layer.weight) for layer in convolutions[1:]}
    muon, other = [], []
    for param in module.parameters():
        if param.requires_grad:
            (muon if id(param) in muon_ids else other).append(param)
    groups = [{"params": muon, "use_muon": True}, {"params": other, "use_muon": False}]
    return [group for group in groups if group["params"]]


class WarmupStableDecayLR(torch.optim.lr_scheduler.LambdaLR):
    r"""Warm up linearly, hold the peak rate, decay linearly to zero.

    Over ``total_steps`` steps (``scheduler.step()`` once per batch), the rate of step
    ``s`` is ``max_lr`` times

    .. math::

        \min\left(1,\; \frac{1}{d_f} + \left(1 - \frac{1}{d_f}\right)
        \frac{s}{w T},\; \frac{T - s}{c T}\right)

    with ``T = total_steps``, ``w = warmup``, ``c = decay`` and ``d_f = div_factor``:
    from ``max_lr / div_factor`` up to ``max_lr`` over the first ``warmup`` share of the
    steps, constant, and down to zero (reached one step after the last) over the last
    ``decay`` share. Unlike :class:`torch.optim.lr_scheduler.OneCycleLR`, whose cosine
    anneal spends its second half well below the peak, the rate stays at the peak
    until the decay starts; the momentum is left as it is. It is a
    :class:`torch.optim.lr_scheduler.LambdaLR` whose factor (:meth:`factor`) depends on
    the step number alone, so setting ``last_epoch`` and calling ``step()`` continues
    the schedule from any step.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        The optimizer whose ``lr`` to drive.

    max_lr : float or list of float
        Peak rate, one for all parameter groups or one per group.

    total_steps : int
        Steps of the schedule.

    warmup : float, default=0.1
        Share of the steps spent warming up.

    decay : float, default=0.3
        Share of the steps spent decaying; ``warmup + decay`` must not exceed 1.

    div_factor : float, default=25.0
        The first step's rate is ``max_lr / div_factor`` (as in ``OneCycleLR``).

    last_epoch : int, default=-1
        Index of the last step taken (``-1``: start).

    Examples
    --------
    >>> import torch
    >>> from skseg.segnet import WarmupStableDecayLR
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> scheduler = WarmupStableDecayLR(opt, max_lr=1.0, total_steps=10, warmup=0.2, decay=0.4)
    >>> rates = []
    >>> for _ in range(10):
    ...     rates.append(round(opt.param_groups[0]["lr"], 2))
    ...     opt.step()
    ...     scheduler.step()
    >>> rates
    [0.04, 0.52, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer,
        max_lr,
        total_steps,
        *,
        warmup=0.1,
        decay=0.3,
        div_factor=25.0,
        last_epoch=-1,
    ):
        for name, value, valid in [
            ("total_steps", total_steps, isinstance(total_steps, Integral) and total_steps >= 1),
            ("warmup", warmup, 0 <= warmup <= 1),
            ("decay", decay, 0 <= decay <= 1 - warmup),
            ("div_factor", div_factor, div_factor >= 1),
        ]:
            if not valid:
                raise ValueError(f"invalid WarmupStableDecayLR parameter {name}={value!r}")
        groups = optimizer.param_groups
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * len(groups)
        if len(max_lrs) != len(groups):
            raise ValueError(f"max_lr has {len(max_lrs)} values for {len(groups)} parameter groups")
        self.max_lrs = max_lrs
        self.total_steps = int(total_steps)
        self.warmup, self.decay, self.div_factor = warmup, decay, div_factor
        if last_epoch == -1:  # LambdaLR scales each group's initial rate: the peak
            for group, peak in zip(groups, max_lrs):
                group["initial_lr"] = peak
        super().__init__(optimizer, lr_lambda=self.factor, last_epoch=last_epoch)

    def factor(self, step):
        """Share of the peak rate at ``step`` (0-based).

        Parameters
        ----------
        step : int
            Step number.

        Returns
        -------
        float
        """
        total, start = self.total_steps, 1 / self.div_factor
        rate = 1.0
        if self.warmup > 0:
            rate = min(rate, start + (1 - start) * step / (self.warmup * total))
        if self.decay > 0:
            rate = min(rate, (total - step) / (self.decay * total))
        return max(rate, 0.0)
