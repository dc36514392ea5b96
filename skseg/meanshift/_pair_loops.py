"""The float32 pair loops of :mod:`skseg.meanshift._kernels`, compiled with llvmlite.

For each active query ``q`` of a query leaf and every source ``j`` of a contiguous
buffer (feature-major: ``width`` coordinate rows, then a row of log-weights and a row of
dot-form offsets), the loops add

    w_j = exp(log_w_j - |s_j - q|^2),  sum_j w_j  and  sum_j w_j (s_j - q)

to the query's sums. Two forms compute the same weights:

- the **difference form** forms ``s_j - q`` and its squared length, and evaluates a
  float32 exponential: ``exp(x) = 2**n exp(r)`` with ``n`` the integer nearest ``x /
  ln 2``, ``exp(r)`` from a degree-5 minimax polynomial on ``|r| <= ln(2) / 2``
  (relative error below ``3e-7``) and ``2**n`` added to its exponent bits;
- the **dot form** serves a compact query leaf whose points and sources are centred on
  the leaf's centre ``c``. With ``u = 2 log2(e) (q - c)`` for the query and ``a_j =
  log2(e) (log_w_j - |s_j - c|^2)`` for the source, ``a_j + u . (s_j - c)`` is the
  exponent in base 2, up to ``log2(e) |q - c|^2``, the same for every source of the
  query, which cancels from its mean and which the driver divides out of the sums. It
  needs three fused multiply-adds where the difference form needs seven operations, and
  no change of base inside the exponential (``2**x`` from the same polynomial in ``r ln
  2``): 18 vector operations per source instead of 24, 1.3 times as fast. It accumulates
  ``sum_j w_j (s_j - c)``.

They are written here as LLVM IR and compiled by llvmlite (numba's own compiler
library) because numba compiles every function for the vector width LLVM prefers on the
host, 256 bits on CPUs with AVX-512, and cannot ask for more per function; these
functions carry ``"prefer-vector-width"="512"``, which runs the loop itself 1.4 times as
fast on one AVX-512 core (a whole mean-shift step about 1.1 times) and changes nothing
elsewhere.
The compiled functions are registered with llvmlite's symbol table under
:data:`SYMBOLS`, where numba's linker finds the external functions the kernels declare.

Only the reduction additions may be reassociated (so that the loop vectorises); every
other operation is evaluated as written, with contractions into fused multiply-adds.
"""

import math
import struct
import threading

import llvmlite.binding as llvm
import numpy as np

#: the symbol of the pair loop of each form (``"difference"``, ``"dot"``) and padded
#: feature count
SYMBOLS = {
    (form, width): f"skseg_meanshift_{form}{width}_f32"
    for form in ("difference", "dot")
    for width in (3, 5)
}

# float32 constants as the IR spells them (doubles that are exact float32 values)
_LOG2E = "0x3FF7154760000000"
_LN2_HI = "0x3FE62E4000000000"
_LN2_LO = "0x3EB7F7D1C0000000"
# minimax coefficients of exp(r) = 1 + r q(r) on |r| <= ln(2) / 2 (exp(0) is exactly
# 1), highest degree first (Horner order)
_POLY = ("0x3F80FA8340000000", "0x3FA573A540000000", "0x3FC555A6A0000000",
         "0x3FDFFFDC60000000", "0x3FEFFFFF60000000", "0x3FF0000000000000")


def _hex_float32(value):
    """``value`` rounded to float32, spelled as the IR's double hexadecimal."""
    bits = struct.unpack("<Q", struct.pack("<d", float(np.float32(value))))[0]
    return f"0x{bits:016X}"


def _from_hex(text):
    return struct.unpack("<d", struct.pack("<Q", int(text, 16)))[0]


# 2**r = exp(r ln 2): the same polynomial in r ln 2, for the dot form's base-2 exponents
_POLY2 = tuple(
    _hex_float32(_from_hex(c) * math.log(2.0) ** (len(_POLY) - 1 - degree))
    for degree, c in enumerate(_POLY)
)
#: exponents below this (base 2; ``-87 / ln 2``) are raised to it, so that ``2**n`` stays
#: a normal float
_LOWEST2 = -125.0

_engine = None
_lock = threading.Lock()


def _function(form, width):
    """IR of ``void f(queries, n_queries, lo, buf, m, acc, n_acc, active, n_active)``.

    Every argument is an int64 (pointers as addresses): ``queries`` is ``(width,
    n_queries)`` float32 (the points, or the dot form's ``u``), ``buf`` is ``(width + 2,
    m)`` float32 (coordinates, log-weights, dot-form offsets), ``acc`` is ``(width + 1,
    n_acc)`` float32 and ``active`` holds ``n_active`` int64 query indices ``i``, whose
    point is column ``lo + i`` of ``queries`` and whose sums are column ``i`` of ``acc``.
    """
    ks = range(width)
    dot = form == "dot"
    lines = [
        f"define void @{SYMBOLS[form, width]}(i64 %qa, i64 %nq, i64 %lo, i64 %ba, i64 %m, "
        "i64 %aa, i64 %nacc, i64 %ta, i64 %nact) #0 {",
        "entry:",
        "  %q = inttoptr i64 %qa to ptr",
        "  %buf = inttoptr i64 %ba to ptr",
        "  %acc = inttoptr i64 %aa to ptr",
        "  %act = inttoptr i64 %ta to ptr",
    ]
    # the buffer rows a form reads: the coordinates, then the log-weights (difference
    # form) or the offsets a_j (dot form)
    rows = [*ks, width + 1 if dot else width]
    lines += [f"  %qrow{k} = mul i64 %nq, {k}" for k in ks]
    lines += [f"  %brow{k} = mul i64 %m, {row}" for k, row in enumerate(rows)]
    lines += [f"  %arow{k} = mul i64 %nacc, {k}" for k in range(width + 1)]
    lines += [
        "  %nothing = icmp sle i64 %m, 0",
        "  %none = icmp sle i64 %nact, 0",
        "  %skip = or i1 %nothing, %none",
        "  br i1 %skip, label %done, label %query",
        # one active query: its coordinates
        "query:",
        "  %r = phi i64 [0, %entry], [%rnext, %store]",
        "  %tp = getelementptr i64, ptr %act, i64 %r",
        "  %i = load i64, ptr %tp, align 8",
        "  %col = add i64 %lo, %i",
    ]
    for k in ks:
        lines += [
            f"  %qx{k} = add i64 %qrow{k}, %col",
            f"  %qp{k} = getelementptr float, ptr %q, i64 %qx{k}",
            f"  %q{k} = load float, ptr %qp{k}, align 4",
        ]
    lines += ["  br label %pair", "pair:", "  %j = phi i64 [0, %query], [%jnext, %pair]"]
    lines += ["  %sw = phi float [0.0, %query], [%swnext, %pair]"]
    lines += [f"  %s{k} = phi float [0.0, %query], [%s{k}next, %pair]" for k in ks]
    for k in range(width + 1):
        lines += [
            f"  %bx{k} = add i64 %brow{k}, %j",
            f"  %bp{k} = getelementptr float, ptr %buf, i64 %bx{k}",
            f"  %b{k} = load float, ptr %bp{k}, align 4",
        ]
    lines += _dot_exponent(width) if dot else _difference_exponent(width)
    # the accumulated vector: s_j - c in the dot form, s_j - q in the difference form
    moved = "b" if dot else "d"
    lines += [
        "  %swnext = fadd reassoc contract float %sw, %w",
    ]
    for k in ks:
        lines += [
            f"  %wd{k} = fmul contract float %w, %{moved}{k}",
            f"  %s{k}next = fadd reassoc contract float %s{k}, %wd{k}",
        ]
    lines += [
        "  %jnext = add i64 %j, 1",
        "  %more = icmp slt i64 %jnext, %m",
        # two interleaved copies of the five-feature loop run out of vector registers
        # (13 % slower from the spills): one copy there
        "  br i1 %more, label %pair, label %store" + (", !llvm.loop !0" if width == 5 else ""),
        "store:",
    ]
    for k, value in enumerate(["%swnext", *(f"%s{k}next" for k in ks)]):
        lines += [
            f"  %ax{k} = add i64 %arow{k}, %i",
            f"  %ap{k} = getelementptr float, ptr %acc, i64 %ax{k}",
            f"  %old{k} = load float, ptr %ap{k}, align 4",
            f"  %new{k} = fadd float %old{k}, {value}",
            f"  store float %new{k}, ptr %ap{k}, align 4",
        ]
    lines += [
        "  %rnext = add i64 %r, 1",
        "  %again = icmp slt i64 %rnext, %nact",
        "  br i1 %again, label %query, label %done",
        "done:",
        "  ret void",
        "}",
    ]
    return "\n".join(lines)


def _difference_exponent(width):
    """``%w = exp(max(log_w - |s - q|^2, -87))`` from ``%b0..`` and ``%q0..``."""
    lines = [f"  %d{k} = fsub contract float %b{k}, %q{k}" for k in range(width)]
    lines.append("  %sq0 = fmul contract float %d0, %d0")
    for k in range(1, width):
        lines += [
            f"  %t{k} = fmul contract float %d{k}, %d{k}",
            f"  %sq{k} = fadd contract float %sq{k - 1}, %t{k}",
        ]
    lines += [
        # from -87 on, 2**n * p(r) is a normal float whose exponent field is p's plus n
        f"  %x0 = fsub contract float %b{width}, %sq{width - 1}",
        "  %x = call float @llvm.maxnum.f32(float %x0, float -87.0)",
        f"  %nx = fmul contract float %x, {_LOG2E}",
        "  %n = call float @llvm.roundeven.f32(float %nx)",
        f"  %rh = fmul contract float %n, {_LN2_HI}",
        "  %r1 = fsub contract float %x, %rh",
        f"  %rl = fmul contract float %n, {_LN2_LO}",
        "  %rr = fsub contract float %r1, %rl",
    ]
    return lines + _power_of_two(_POLY)


def _dot_exponent(width):
    """``%w = 2**max(a + u . (s - c), -125)`` from ``%b0..`` (``s - c``, then ``a``) and
    ``%q0..`` (``u``)."""
    lines, partial = [], f"%b{width}"
    for k in reversed(range(width)):
        lines += [
            f"  %e{k}m = fmul contract float %q{k}, %b{k}",
            f"  %e{k} = fadd contract float %e{k}m, {partial}",
        ]
        partial = f"%e{k}"
    lines += [
        f"  %x = call float @llvm.maxnum.f32(float {partial}, float {_LOWEST2})",
        "  %n = call float @llvm.roundeven.f32(float %x)",
        "  %rr = fsub float %x, %n",
    ]
    return lines + _power_of_two(_POLY2)


def _power_of_two(poly):
    """``%w = 2**%n * poly(%rr)``: Horner's rule, then ``n`` added to the exponent bits."""
    lines = [f"  %h0 = fmul contract float %rr, {poly[0]}"]
    for step, coefficient in enumerate(poly[1:-1], start=1):
        lines += [
            f"  %h{step}a = fadd contract float %h{step - 1}, {coefficient}",
            f"  %h{step} = fmul contract float %rr, %h{step}a",
        ]
    last = len(poly) - 2
    return lines + [
        f"  %p = fadd contract float %h{last}, {poly[-1]}",
        "  %ni = fptosi float %n to i32",
        "  %nb = shl i32 %ni, 23",
        "  %pb = bitcast float %p to i32",
        "  %wb = add i32 %pb, %nb",
        "  %w = bitcast i32 %wb to float",
    ]


def module_ir():
    """The IR of every pair loop, as one module."""
    return "\n\n".join(
        [
            "declare float @llvm.roundeven.f32(float)\n"
            "declare float @llvm.maxnum.f32(float, float)",
            *(_function(form, width) for form, width in SYMBOLS),
            'attributes #0 = { nounwind "prefer-vector-width"="512" '
            '"min-legal-vector-width"="512" }',
            '!0 = distinct !{!0, !1}\n!1 = !{!"llvm.loop.interleave.count", i32 1}',
        ]
    )


def register():
    """Compile the pair loops for the host CPU and register their symbols (once)."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _compile()


def _compile():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
        opt=3,
        codemodel="jitdefault",
    )
    module = llvm.parse_assembly(module_ir())
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    module.verify()
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    tuning.loop_vectorization = True
    passes = llvm.create_pass_builder(machine, tuning)
    passes.getModulePassManager().run(module, passes)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    for symbol in SYMBOLS.values():
        llvm.add_symbol(symbol, engine.get_function_address(symbol))
    return engine  # kept alive in _engine: it owns the machine code
