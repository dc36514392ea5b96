"""Fused CPU kernels for one Gaussian mean-shift step (numba).

For every query ``q`` they accumulate, over the source leaves listed for the query's leaf,

    sum_j w_j exp(-|s_j - q|^2)  and  sum_j w_j exp(-|s_j - q|^2) (s_j - q)

in one pass over the sources: the distance, the exponential and the two sums stay in
registers, so no block of pair weights is ever written to memory (the blocked matrix
products of :func:`skseg.meanshift._backend.weighted_means_torch` write and re-read every
pair weight, which makes them memory-bound on CPUs). Differences ``s_j - q`` are formed
directly, which is accurate at any bandwidth, and the result is ``q`` plus the weighted
mean difference. The listed leaves are met nearest first, a chunk of about ``CHUNK``
sources at a time copied into one contiguous buffer (padded to whole vectors) that every
query streams in a single vectorised loop; after each chunk a query whose remaining
leaves provably move it by less than the tolerance stops. The lists themselves come from
:func:`leaf_list_block` (see :func:`skseg.meanshift._backend.leaf_lists`).

The float32 pair loops are compiled apart, for the widest vectors of the CPU, with an
exponential evaluated in float32 (relative error below ``3e-7``, a few float32 ulps;
:mod:`skseg.meanshift._pair_loops`). A query leaf whose points lie within
``sqrt(DOT_RADIUS2)`` of its centre takes their *dot form*: the chunk's sources are
centred on the leaf and each pair's exponent is a dot product plus a per-source offset,
1.3 times as fast as the *difference form* that wider leaves take. The float64 loops are
numba's, in the difference form, with the C library's ``exp``. Kernels exist for up to 3
and up to 5 features (colour, colour and position); fewer features are padded with
zeros.

The kernels run on plain threads (:func:`in_threads`) and copy between arrays in loops
rather than by slice assignment, which numba compiles with shape checks and their error
messages: both keep the compilation of their first use short (see
:func:`skseg.meanshift.compile_kernels`).
"""

import math
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from . import _pair_loops

#: most features a fused kernel handles; more fall back to the torch kernel
MAX_FEATURES = 5
#: sources met between two checks of the stopping rule
CHUNK = 512
#: float32 query leaves whose points all lie within this squared distance (scaled units)
#: of their box's centre take the dot form of the pair loops (:mod:`._pair_loops`). Its
#: exponent's rounding error grows as ``(|s - c| + |q - c|)**2``: within this radius it
#: stays within a few times the difference form's for the sources that carry weight
#: (measured: the same agreement with float64 on the benchmark photos), and the factor
#: the sums carry, ``exp(|q - c|**2)``, is at most ``e**4``. Float64 and wider leaves
#: take the difference form.
DOT_RADIUS2 = 4.0
#: buffers hold a multiple of this many sources (two 512-bit vectors of float32), so that
#: the pair loops never run their narrow and scalar remainder loops (14 % of a step's time
#: on the benchmark photo)
PAD = 32


@njit(inline="always")
def _chunks(s_starts, leaves, first, end):
    """The listed leaves ``first:end`` in chunks of about ``CHUNK`` sources: the end of
    every chunk (``ends[c]``, the last ``end``) and its number of sources."""
    ends = np.empty(end - first, dtype=np.int64)
    sizes = np.empty(end - first, dtype=np.int64)
    n_chunks, last = 0, first
    while last < end:
        m = 0
        while last < end and m < CHUNK:
            m += s_starts[leaves[last] + 1] - s_starts[leaves[last]]
            last += 1
        ends[n_chunks], sizes[n_chunks] = last, m
        n_chunks += 1
    return ends[:n_chunks], sizes[:n_chunks]


@njit(inline="always")
def _gather(sources, log_w, s_starts, leaves, first, last, m, centre, dot):
    """Sources of the listed leaves ``first:last`` in one contiguous feature-major buffer:
    coordinates, log-weights and, for the dot form, the coordinates taken from
    ``centre`` (float32 values: the differences round once, in either precision) and
    the offsets ``a_j = log2(e) (log_w_j - |s_j - centre|^2)``, from the rounded
    coordinates so that the pair loop's exponent is that of the stored point.

    Padded to a multiple of ``PAD`` with copies of the last source of log-weight
    ``-inf`` (the float32 loops give them ``exp(-87)``, the weight of any source that
    far, a ``1e-38`` of a query's own weight).
    """
    width = sources.shape[0]
    buf = np.empty((width + 2, -(-m // PAD) * PAD), dtype=sources.dtype)
    norm2 = np.zeros(m if dot else 0)
    at = 0
    for p in range(first, last):
        lo, hi = s_starts[leaves[p]], s_starts[leaves[p] + 1]
        for j in range(hi - lo):
            for k in range(width):
                buf[k, at + j] = sources[k, lo + j]
            buf[width, at + j] = log_w[lo + j]
        at += hi - lo
    if dot:
        for k in range(width):
            row = buf[k]
            shift = row.dtype.type(centre[k])
            for j in range(m):
                row[j] -= shift
            for j in range(m):
                norm2[j] += np.float64(row[j]) * np.float64(row[j])
        offsets, log_weights = buf[width + 1], buf[width]
        for j in range(m):
            offsets[j] = _LOG2E * (np.float64(log_weights[j]) - norm2[j])
    for j in range(m, buf.shape[1]):
        for k in range(width):
            buf[k, j] = buf[k, m - 1]
        for k in range(width, width + 2):
            buf[k, j] = -np.inf
    return buf


@njit(fastmath=True, cache=True)
def _add_3(queries, lo, buf, acc, active):
    """Add the buffer's weights and weighted differences to the sums of the active queries
    (float64; float32 takes :mod:`._pair_loops`)."""
    m = buf.shape[1]
    for i in active:
        q0, q1, q2 = queries[0, lo + i], queries[1, lo + i], queries[2, lo + i]
        sw, s0, s1, s2 = acc[0, i], acc[1, i], acc[2, i], acc[3, i]
        for j in range(m):
            a, b, c = buf[0, j] - q0, buf[1, j] - q1, buf[2, j] - q2
            w = math.exp(buf[3, j] - (a * a + b * b + c * c))
            sw += w
            s0 += w * a
            s1 += w * b
            s2 += w * c
        acc[0, i], acc[1, i], acc[2, i], acc[3, i] = sw, s0, s1, s2


@njit(fastmath=True, cache=True)
def _add_5(queries, lo, buf, acc, active):
    """As :func:`_add_3`, for five features."""
    m = buf.shape[1]
    for i in active:
        q0, q1, q2 = queries[0, lo + i], queries[1, lo + i], queries[2, lo + i]
        q3, q4 = queries[3, lo + i], queries[4, lo + i]
        sw, s0, s1, s2 = acc[0, i], acc[1, i], acc[2, i], acc[3, i]
        s3, s4 = acc[4, i], acc[5, i]
        for j in range(m):
            a, b, c = buf[0, j] - q0, buf[1, j] - q1, buf[2, j] - q2
            e, f = buf[3, j] - q3, buf[4, j] - q4
            w = math.exp(buf[5, j] - (a * a + b * b + c * c + e * e + f * f))
            sw += w
            s0 += w * a
            s1 += w * b
            s2 += w * c
            s3 += w * e
            s4 += w * f
        acc[0, i], acc[1, i], acc[2, i], acc[3, i] = sw, s0, s1, s2
        acc[4, i], acc[5, i] = s3, s4


def _pair_function(form, width):
    """The compiled float32 pair loop of ``form`` for ``width`` features
    (:mod:`._pair_loops`)."""
    return types.ExternalFunction(
        _pair_loops.SYMBOLS[form, width], types.void(*([types.int64] * 9))
    )


_pairs_3_f32 = _pair_function("difference", 3)
_pairs_5_f32 = _pair_function("difference", 5)
_dot_3_f32 = _pair_function("dot", 3)
_dot_5_f32 = _pair_function("dot", 5)


def _sums_3(queries, lo, buf, acc, active):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def _sums_5(queries, lo, buf, acc, active):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def _dot_sums_3(queries, lo, buf, acc, active):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def _dot_sums_5(queries, lo, buf, acc, active):  # pragma: no cover - replaced by the overload
    raise NotImplementedError


def _external_sums(pairs):
    def sums(queries, lo, buf, acc, active):
        pairs(
            np.int64(queries.ctypes.data), queries.shape[1], lo,
            np.int64(buf.ctypes.data), buf.shape[1],
            np.int64(acc.ctypes.data), acc.shape[1],
            np.int64(active.ctypes.data), len(active),
        )

    return sums


@overload(_sums_3)
def _sums_3_overload(queries, lo, buf, acc, active):
    if queries.dtype == types.float32:
        return _external_sums(_pairs_3_f32)
    return lambda queries, lo, buf, acc, active: _add_3(queries, lo, buf, acc, active)


@overload(_sums_5)
def _sums_5_overload(queries, lo, buf, acc, active):
    if queries.dtype == types.float32:
        return _external_sums(_pairs_5_f32)
    return lambda queries, lo, buf, acc, active: _add_5(queries, lo, buf, acc, active)


def _float32_only(queries, lo, buf, acc, active):
    raise TypeError("the dot form serves float32 only")


# the dot form's queries are its factors u (see _pair_loops)
@overload(_dot_sums_3)
def _dot_sums_3_overload(queries, lo, buf, acc, active):
    if queries.dtype == types.float32:
        return _external_sums(_dot_3_f32)
    return _float32_only


@overload(_dot_sums_5)
def _dot_sums_5_overload(queries, lo, buf, acc, active):
    if queries.dtype == types.float32:
        return _external_sums(_dot_5_f32)
    return _float32_only


@njit(cache=True)
def _exp_kernel(x, out, dot):
    # one source at the query, of log-weight (difference form) or offset (dot form) x
    queries = np.zeros((3, 1), dtype=x.dtype)
    buf = np.zeros((5, 1), dtype=x.dtype)
    acc = np.zeros((4, 1), dtype=x.dtype)
    active = np.zeros(1, dtype=np.int64)
    for i in range(len(x)):
        buf[3, 0] = buf[4, 0] = x[i]
        for k in range(4):
            acc[k, 0] = 0
        if dot:
            _dot_sums_3(queries, 0, buf, acc, active)
        else:
            _sums_3(queries, 0, buf, acc, active)
        out[i] = acc[0, 0]


def exp_kernel(x, out, *, dot=False):
    """``out[i] = exp(x[i])`` with the difference form's exponential, or ``2**x[i]``
    with the dot form's (float32 only), for tests."""
    _pair_loops.register()
    _exp_kernel(x, out, dot)


# exp(x) = 2**n exp(r) with r = x - n ln 2 (ln 2 in two parts: n * _LN2_HI is exact)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: relative error of :func:`_exp_above` (degree-8 Taylor polynomial on |r| <= ln(2) / 2:
#: below 3e-10), rounded up
_EXP_SLACK = 1e-8


@njit(inline="always")
def _exp_above(x):
    """An upper bound of ``exp(x)`` for ``x <= 0``, within a relative ``2 * _EXP_SLACK``.

    Plain float64 arithmetic, with ``2**n`` written into the exponent bits, so that loops
    of it vectorise without fast-math and give the same value in vector and scalar code.
    """
    x = max(x, -708.0)
    n = math.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (
        1 / 120 + r * (1 / 720 + r * (1 / 5040 + r * (1 / 40320))))))))
    return p * _float64_from_bits((np.int64(n) + 1023) << 52) * (1.0 + _EXP_SLACK)


@intrinsic
def _float64_from_bits(typingctx, bits):
    """The float64 whose bit pattern is the int64 ``bits``."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _next_item(typingctx, counter):
    """Take the next item from ``counter`` (an int64 array of one element): add one to
    it atomically and return its value before."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", data, ir.Constant(ir.IntType(64), 1), "monotonic")

    return types.int64(counter), codegen


def in_threads(kernel, n_items, *args):
    """Run ``kernel(counter, *args)`` on ``numba.get_num_threads()`` threads at once.

    ``kernel`` is compiled with ``nogil=True`` and takes items ``0 .. n_items - 1`` from
    the shared ``counter`` (:func:`_next_item`) until none are left: items of very
    different cost are handed out one at a time. Each item writes its own part of the
    outputs, so the result does not depend on which thread takes which item. Plain
    threads rather than numba's ``prange``, which compiles every loop body a second time
    (the first use compiled for 32-40 s on 2 cores with it, 17-20 s without).
    """
    counter = np.zeros(1, dtype=np.int64)
    n_threads = max(1, min(numba.get_num_threads(), n_items))
    errors = []

    def work():
        try:
            kernel(counter, *args)
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(n_threads - 1)]
    for thread in threads:
        thread.start()
    work()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@njit(inline="always")
def _tails(queries, lo, n, box_lo, box_hi, box_weight, leaves, first, ends, left_a, left_b):
    """Per query, the bounds of what the leaves not met yet can add after every chunk.

    ``tail_a[c, i]`` bounds ``W_S exp(-gap(q_i, S)**2)`` and ``tail_b[c, i]``
    ``W_S exp(-gap(q_i, S)**2) far(q_i, S)``, summed over the listed leaves from entry
    ``ends[c]`` on and over the leaves left out of the list (``left_a``, ``left_b``,
    bounds for the whole query leaf). ``gap`` and ``far`` are the nearest and farthest
    distances from the query point to the box of ``S``. The inner loops run over the
    queries, so that they vectorise.
    """
    d = box_lo.shape[1]
    points = np.empty((d, n))
    for k in range(d):
        for i in range(n):
            points[k, i] = queries[k, lo + i]
    tail_a = np.empty((len(ends), n))
    tail_b = np.empty((len(ends), n))
    a_sum = np.full(n, left_a)
    b_sum = np.full(n, left_b)
    gap2 = np.empty(n)
    far2 = np.empty(n)
    c = len(ends) - 1
    for p in range(ends[-1] - 1, first - 1, -1):
        if p == ends[c] - 1:  # the sums now hold the leaves from ends[c] on
            for i in range(n):
                tail_a[c, i] = a_sum[i]
                tail_b[c, i] = b_sum[i]
            c -= 1
        leaf = leaves[p]
        for i in range(n):
            gap2[i] = far2[i] = 0.0
        for k in range(d):
            low, high = box_lo[leaf, k], box_hi[leaf, k]
            for i in range(n):
                below, above = low - points[k, i], points[k, i] - high
                gap2[i] += max(below, above, 0.0) ** 2
                far2[i] += max(-below, -above) ** 2
        weight = box_weight[leaf]
        for i in range(n):
            reach = weight * _exp_above(-gap2[i])
            a_sum[i] += reach
            b_sum[i] += reach * math.sqrt(far2[i])
    return tail_a, tail_b


@njit(inline="always")
def _settled(acc, i, offsets, scale, tail_a, tail_b, tolerance):
    """Whether the leaves not met yet move query ``i`` by at most ``tolerance``.

    With ``sw`` the total weight and ``s`` the weighted difference of the sources met so
    far (the query's mean is ``q + s / sw``), the rest moves it by at most
    ``(tail_b + tail_a |s| / sw) / sw`` (see
    :func:`skseg.meanshift._backend.leaf_lists`). The sums ``acc`` are those of the
    sources' offsets from the query minus ``offsets`` (``q - c`` in the dot form, zero
    in the difference form), times ``1 / scale``.
    """
    sw = np.float64(acc[0, i]) * scale[i]
    norm2 = 0.0
    for k in range(1, acc.shape[0]):
        moved = np.float64(acc[k, i]) - np.float64(acc[0, i]) * offsets[k - 1, i]
        norm2 += (moved * scale[i]) ** 2
    # no weight yet (every source met so far underflowed): not settled
    return sw > 0 and tail_b * sw + tail_a * math.sqrt(norm2) <= tolerance * sw * sw


@njit(inline="always")
def _centring(queries, lo, n, dot_radius2):
    """How the pair loops see query leaf ``queries[:, lo:lo + n]``.

    Returns the centre ``c`` of its bounding box (rounded to float32), the offsets ``q -
    c`` and the factors ``exp(-|q - c|**2)`` that take the dot form's sums back to true
    weights, and whether the leaf takes the dot form: all its points within
    ``sqrt(dot_radius2)`` of ``c``.
    Otherwise (also whenever ``dot_radius2 < 0``) the centre and offsets are zero and
    the factors one: the difference form.
    """
    width = queries.shape[0]
    centre = np.zeros(width)
    offsets = np.zeros((width, n))
    scale = np.ones(n)
    if dot_radius2 < 0:
        return centre, offsets, scale, False
    for k in range(width):
        low = high = np.float64(queries[k, lo])
        for i in range(1, n):
            low = min(low, np.float64(queries[k, lo + i]))
            high = max(high, np.float64(queries[k, lo + i]))
        # a float32 value, so that the pair loops' differences from it round once
        centre[k] = np.float32(0.5 * (low + high))
    dist2 = np.zeros(n)
    for k in range(width):
        for i in range(n):
            offsets[k, i] = np.float64(queries[k, lo + i]) - centre[k]
            dist2[i] += offsets[k, i] ** 2
    if dist2.max() > dot_radius2:
        return np.zeros(width), np.zeros((width, n)), scale, False
    for i in range(n):
        scale[i] = math.exp(-dist2[i])
    return centre, offsets, scale, True


# No fast-math in the driver: with it, the exponentials of _tails took the C library's
# vector and scalar versions, which round differently, depending on the alignment of
# their arrays; that moved the stopping points, and so the results, from run to run.
# The sums (_add_3, _add_5) are compiled apart, with fast-math.
@njit(nogil=True, cache=True)
def _means(counter, queries, q_starts, sources, log_w, s_starts, box_lo, box_hi, box_weight,
           ptr, leaves, left_a, left_b, tolerance, dot_radius2, out):
    """One thread's share of the query leaves: meet each leaf's list chunk by chunk, stop
    when settled."""
    width = queries.shape[0]
    while True:
        leaf = _next_item(counter)
        if leaf >= len(q_starts) - 1:
            break
        lo, hi = q_starts[leaf], q_starts[leaf + 1]
        first, end = ptr[leaf], ptr[leaf + 1]
        ends, sizes = _chunks(s_starts, leaves, first, end)
        tail_a, tail_b = _tails(queries, lo, hi - lo, box_lo, box_hi, box_weight,
                                leaves, first, ends, left_a[leaf], left_b[leaf])
        centre, offsets, scale, dot = _centring(queries, lo, hi - lo, dot_radius2)
        factors = np.empty((width, hi - lo if dot else 0), dtype=queries.dtype)
        for k in range(width if dot else 0):
            for i in range(hi - lo):
                factors[k, i] = 2 * _LOG2E * offsets[k, i]
        acc = np.zeros((width + 1, hi - lo), dtype=queries.dtype)
        active = np.arange(hi - lo)
        n_active = hi - lo
        at = first
        for c in range(len(ends)):
            last, m = ends[c], sizes[c]
            buf = _gather(sources, log_w, s_starts, leaves, at, last, m, centre, dot)
            if dot and width == 3:
                _dot_sums_3(factors, 0, buf, acc, active[:n_active])
            elif dot:
                _dot_sums_5(factors, 0, buf, acc, active[:n_active])
            elif width == 3:
                _sums_3(queries, lo, buf, acc, active[:n_active])
            else:
                _sums_5(queries, lo, buf, acc, active[:n_active])
            at = last
            if at == end:
                break
            kept = 0
            for r in range(n_active):
                i = active[r]
                if not _settled(acc, i, offsets, scale, tail_a[c, i], tail_b[c, i],
                                tolerance):
                    active[kept] = i
                    kept += 1
            n_active = kept
            if n_active == 0:
                break
        for k in range(width):
            for i in range(hi - lo):
                if dot:  # the mean is c plus the mean offset from c
                    out[k, lo + i] = centre[k] + np.float64(acc[k + 1, i]) / acc[0, i]
                else:
                    out[k, lo + i] = queries[k, lo + i] + acc[k + 1, i] / acc[0, i]


def leaf_list_block(q_lo, q_hi, q_floor, s_lo, s_hi, s_weight, budget):
    """The lists of one block of query leaves (see
    :func:`skseg.meanshift._backend.leaf_lists`), one query leaf per row, in parallel.

    Returns ``lists`` of shape ``(n_rows, n_source_leaves)``, whose row ``r`` starts with
    the ``counts[r]`` kept source leaves of query leaf ``r``, nearest first (ties by leaf
    index), and the bounds ``left_a``, ``left_b`` of the leaves left out. A source leaf is
    left out while the bounds of the leaves left out, smallest first, add up to at most
    ``budget`` times the query leaf's weight floor; the largest bound always stays.
    """
    n_rows, n_src = len(q_lo), len(s_lo)
    lists = np.empty((n_rows, n_src), dtype=np.int64)
    counts = np.empty(n_rows, dtype=np.int64)
    left_a = np.zeros(n_rows)
    left_b = np.zeros(n_rows)
    in_threads(_list_rows, n_rows, q_lo, q_hi, q_floor, s_lo, s_hi, s_weight, budget,
               lists, counts, left_a, left_b)
    return lists, counts, left_a, left_b


@njit(nogil=True, cache=True)
def _list_rows(counter, q_lo, q_hi, q_floor, s_lo, s_hi, s_weight, budget, lists, counts,
               left_a, left_b):
    """One thread's share of the rows of :func:`leaf_list_block`."""
    n_rows, n_src = len(q_lo), len(s_lo)
    d = q_lo.shape[1]
    while True:
        r = _next_item(counter)
        if r >= n_rows:
            break
        near2 = np.zeros(n_src)  # squared nearest and farthest distances between boxes
        far2 = np.zeros(n_src)
        for j in range(n_src):
            for k in range(d):
                below, above = s_lo[j, k] - q_hi[r, k], q_lo[r, k] - s_hi[j, k]
                near2[j] += max(below, above, 0.0) ** 2
                far2[j] += max(s_hi[j, k] - q_lo[r, k], q_hi[r, k] - s_lo[j, k]) ** 2
        # the query leaf's total weight is at least what every source adds from its
        # farthest point, and at least the floor it was given
        floor = q_floor[r]
        total = 0.0
        for j in range(n_src):
            total += s_weight[j] * math.exp(-far2[j])
        floor = max(floor, total)
        far = np.sqrt(far2)
        farthest = far.max()
        reach = np.empty(n_src)
        bound = np.empty(n_src)
        for j in range(n_src):
            reach[j] = s_weight[j] * math.exp(-near2[j])
            bound[j] = reach[j] * (far[j] + farthest)
        # leaves of a bound below budget * floor / n_src all go, whatever the order: their
        # bounds add up to less than the budget. Only the others are sorted.
        kept = np.ones(n_src, dtype=np.bool_)
        largest = np.argmax(bound)
        small = budget * floor / n_src
        # summed locally: neighbouring rows, taken by other threads, share cache lines
        running = a_left = b_left = 0.0
        for j in range(n_src):
            if bound[j] <= small and j != largest:
                running += bound[j]
                kept[j] = False
                a_left += reach[j]
                b_left += reach[j] * far[j]
        rest = np.flatnonzero(kept)
        by_bound = rest[np.argsort(bound[rest], kind="mergesort")]
        for rank in range(len(rest) - 1):  # the leaf of the largest bound always stays
            j = by_bound[rank]
            running += bound[j]
            if running > budget * floor:
                break
            kept[j] = False
            a_left += reach[j]
            b_left += reach[j] * far[j]
        left_a[r], left_b[r] = a_left, b_left
        n_kept = 0
        for j in range(n_src):
            if kept[j]:
                lists[r, n_kept] = j
                n_kept += 1
        counts[r] = n_kept
        kept_leaves = lists[r, :n_kept]
        by_distance = kept_leaves[np.argsort(near2[kept_leaves], kind="mergesort")]
        for rank in range(n_kept):
            kept_leaves[rank] = by_distance[rank]


@njit(cache=True)
def row_groups(X):
    """Group the equal rows of ``X`` (float64) with a hash table.

    Rows are equal when their bits are, once ``-0.0`` is made ``0.0`` (``X + 0.0``).
    Linear probing in a table of at least twice as many slots as rows; one pass over the
    rows.

    Returns
    -------
    first : ndarray of shape (n_groups,)
        The first row of every group, in order of appearance.
    group : ndarray of shape (n,)
        The group of every row.
    """
    n, d = X.shape
    size = 16
    while size < 2 * n:
        size *= 2
    table = np.full(size, -1, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    group = np.empty(n, dtype=np.int64)
    bits = (X + 0.0).view(np.uint64)
    n_groups = 0
    for i in range(n):
        h = np.uint64(0x9E3779B97F4A7C15)
        for k in range(d):  # splitmix64-style mixing of every coordinate's bits
            h ^= bits[i, k]
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        slot = np.int64(h & np.uint64(size - 1))
        while True:
            g = table[slot]
            if g < 0:  # a new group
                table[slot] = n_groups
                first[n_groups] = i
                group[i] = n_groups
                n_groups += 1
                break
            same = True
            for k in range(d):
                if bits[i, k] != bits[first[g], k]:
                    same = False
                    break
            if same:
                group[i] = g
                break
            slot = (slot + 1) & (size - 1)
    return first[:n_groups], group


@njit(cache=True)
def bounding_box(points):
    """Smallest and largest value of every column of ``points``, in float64, in one pass
    over the rows (``inf`` and ``-inf`` for no rows). numpy reduces an ``(n, 3)`` array
    along its first axis about 25 times as slowly (4.3 ms for 127,000 rows)."""
    n, d = points.shape
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for i in range(n):
        for k in range(d):
            value = np.float64(points[i, k])
            lo[k] = min(lo[k], value)
            hi[k] = max(hi[k], value)
    return lo, hi


@njit(cache=True)
def group_means(points, weights, group, n_groups):
    """Weighted mean and total weight of every group of ``points``.

    Sums run in float64, one point after the other (the same result on every run), and
    are returned in the dtype of ``points`` and ``weights``.
    """
    sums = np.zeros((n_groups, points.shape[1]))
    totals = np.zeros(n_groups)
    for i in range(len(points)):
        g = group[i]
        totals[g] += weights[i]
        for k in range(points.shape[1]):
            sums[g, k] += np.float64(points[i, k]) * weights[i]
    means = np.empty((n_groups, points.shape[1]), dtype=points.dtype)
    for g in range(n_groups):
        for k in range(points.shape[1]):
            means[g, k] = sums[g, k] / totals[g]
    return means, totals.astype(weights.dtype)


#: the k-d tree's top levels are split one after the other, their nodes then in parallel
KD_SERIAL_LEVELS = 2


def kd_order(points, leaf_size):
    """Order ``points`` along a k-d tree; see :func:`skseg.meanshift._backend.kd_leaves`.

    Nodes are split depth first, the lower half first, each at the median of its widest
    coordinate (a quickselect with median-of-three pivots: the same order on every run).
    The nodes below the top :data:`KD_SERIAL_LEVELS` levels are split in parallel, into
    the same order.
    """
    order = np.arange(len(points))
    bounds = _top_nodes(points, order, leaf_size, KD_SERIAL_LEVELS)
    starts = np.empty(len(points) + 1, dtype=np.int64)
    counts = np.empty(len(bounds) - 1, dtype=np.int64)
    in_threads(_split_nodes, len(counts), points, order, bounds, leaf_size, starts, counts)
    return order, _gather_starts(starts, bounds, counts)


@njit(cache=True)
def _top_nodes(points, order, leaf_size, levels):
    """Split the top ``levels`` levels; the bounds of their nodes, lowest first."""
    bounds = np.array([0, len(points)])
    for _ in range(levels):
        parts = np.empty(2 * len(bounds) - 1, dtype=np.int64)
        parts[0], n_parts = 0, 1
        for t in range(len(bounds) - 1):
            lo, hi = bounds[t], bounds[t + 1]
            if hi - lo > leaf_size:
                parts[n_parts] = _split(points, order, lo, hi)
                n_parts += 1
            parts[n_parts] = hi
            n_parts += 1
        bounds = parts[:n_parts].copy()
    return bounds


@njit(nogil=True, cache=True)
def _split_nodes(counter, points, order, bounds, leaf_size, starts, counts):
    """One thread's share of the nodes: split each, writing its leaves' starts from its own
    start on (a node has no more leaves than points) and its number of leaves to
    ``counts``."""
    while True:
        t = _next_item(counter)
        if t >= len(bounds) - 1:
            break
        counts[t] = _leaves(points, order, bounds[t], bounds[t + 1], leaf_size, starts)


@njit(cache=True)
def _gather_starts(starts, bounds, counts):
    """The nodes' leaf starts, moved down into one run, in order, and the end."""
    n_leaves = 0
    for t in range(len(counts)):
        for j in range(counts[t]):
            starts[n_leaves] = starts[bounds[t] + j]
            n_leaves += 1
    starts[n_leaves] = bounds[-1]
    return starts[: n_leaves + 1].copy()


@njit(inline="always")
def _split(points, order, lo, hi):
    """Partition ``order[lo:hi]`` at the median of its widest coordinate; the middle."""
    dim, widest = 0, -1.0
    for k in range(points.shape[1]):
        low = high = points[order[lo], k]
        for i in range(lo + 1, hi):
            value = points[order[i], k]
            low, high = min(low, value), max(high, value)
        if high - low > widest:
            dim, widest = k, high - low
    mid = lo + (hi - lo) // 2
    _select(points[:, dim], order, lo, hi, mid)
    return mid


@njit
def _leaves(points, order, lo, hi, leaf_size, starts):
    """Split ``order[lo:hi]`` depth first, the lower half first, until nodes hold at most
    ``leaf_size`` points; write the leaves' starts to ``starts[lo:]`` and return their
    number."""
    base, n_leaves = lo, 0
    stack = np.empty((2 * 64, 2), dtype=np.int64)  # depth at most log2(n) < 64
    stack[0, 0], stack[0, 1] = lo, hi
    top = 1
    while top > 0:
        top -= 1
        lo, hi = stack[top, 0], stack[top, 1]
        if hi - lo <= leaf_size:
            starts[base + n_leaves] = lo
            n_leaves += 1
            continue
        mid = _split(points, order, lo, hi)
        stack[top, 0], stack[top, 1] = mid, hi  # upper half after the lower one
        stack[top + 1, 0], stack[top + 1, 1] = lo, mid
        top += 2
    return n_leaves


@njit(inline="always")
def _select(key, order, lo, hi, nth):
    """Permute ``order[lo:hi]`` so that ``key[order[nth]]`` is in its sorted place, with
    no larger key before it and no smaller one after it.

    Quickselect with a median-of-three pivot and a three-way partition (keys below,
    equal to and above the pivot), so that repeated keys cost no more than distinct ones.
    """
    hi -= 1
    while hi > lo:
        mid = lo + (hi - lo) // 2
        a, b, c = key[order[lo]], key[order[mid]], key[order[hi]]
        if (a <= b <= c) or (c <= b <= a):
            pivot = b
        elif (b <= a <= c) or (c <= a <= b):
            pivot = a
        else:
            pivot = c
        # order[lo:below] < pivot, order[below:i] == pivot, order[above + 1:hi + 1] > pivot
        below, i, above = lo, lo, hi
        while i <= above:
            value = key[order[i]]
            if value < pivot:
                order[below], order[i] = order[i], order[below]
                below += 1
                i += 1
            elif value > pivot:
                order[i], order[above] = order[above], order[i]
                above -= 1
            else:
                i += 1
        if nth < below:
            hi = below - 1
        elif nth > above:
            lo = above + 1
        else:
            return


def leaf_list_means(
    queries, q_starts, sources, log_w, s_starts, boxes, ptr, leaves, left, tolerance
):
    """Gaussian-weighted means seen from every query, over its leaf's listed source leaves.

    Parameters
    ----------
    queries : ndarray of shape (n, d), float32 or float64
        Scaled query positions, sorted so that query leaf ``i`` is
        ``queries[q_starts[i]:q_starts[i + 1]]``.
    q_starts : ndarray of shape (n_query_leaves + 1,)
    sources : ndarray of shape (m, d), same dtype
        Scaled source positions, sorted by source leaf.
    log_w : ndarray of shape (m,)
        Logarithm of each source's weight.
    s_starts : ndarray of shape (n_source_leaves + 1,)
    boxes : tuple of (lo, hi, weight)
        Bounding box corners (``(n_source_leaves, d)``) and total weight of every source
        leaf.
    ptr, leaves : ndarray
        Compressed lists: query leaf ``i`` may meet the source leaves
        ``leaves[ptr[i]:ptr[i + 1]]``, nearest first.
    left : tuple of (left_a, left_b), ndarrays of shape (n_query_leaves,)
        Bounds of what the source leaves left out of each list can add (see
        :func:`skseg.meanshift._backend.leaf_lists`).
    tolerance : float
        Largest move, in scaled units, that meeting fewer sources may cause; each query
        stops meeting its leaf's list once the rest provably moves it by less.

    Returns
    -------
    ndarray of shape (n, d)
        ``q + sum_j w_j k_j (s_j - q) / sum_j w_j k_j`` with ``k_j = exp(-|s_j - q|^2)``
        over the sources met.
    """
    n, d = queries.shape
    if d > MAX_FEATURES:
        raise ValueError(f"the fused kernels take at most {MAX_FEATURES} features, got {d}")
    width = 3 if d <= 3 else 5

    def padded(points):
        # feature-major layout: every coordinate is one contiguous row the kernel streams
        out = np.zeros((width, len(points)), dtype=points.dtype)
        out[:d] = points.T
        return out

    out = np.empty((width, n), dtype=queries.dtype)
    as_index = np.int64
    padded_queries = padded(queries)
    padded_sources = padded_queries if sources is queries else padded(sources)
    _pair_loops.register()  # before _means is compiled or loaded from numba's cache
    in_threads(
        _means,
        len(q_starts) - 1,
        padded_queries,
        q_starts.astype(as_index),
        padded_sources,
        log_w.astype(queries.dtype),
        s_starts.astype(as_index),
        *(np.ascontiguousarray(b, dtype=np.float64) for b in boxes),
        ptr.astype(as_index),
        leaves.astype(as_index),
        *(np.asarray(b, dtype=np.float64) for b in left),
        float(tolerance),
        DOT_RADIUS2 if queries.dtype == np.float32 else -1.0,
        out,
    )
    return out[:d].T
