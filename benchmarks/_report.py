"""What every benchmark script shares: the machine's name and the tables it writes."""

import platform
from pathlib import Path

#: where the scripts write the tables that the docs' benchmarks page includes
TABLES = Path(__file__).resolve().parent.parent / "docs" / "generated_benchmarks"


def cpu_name():
    """The CPU's model name and its widest vector extensions (Linux), for the table."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    info = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    flags = set(info.get("flags", "").split())
    extensions = [("avx2", "AVX2"), ("avx512f", "AVX-512"), ("amx_bf16", "AMX")]
    features = ", ".join(name for flag, name in extensions if flag in flags) or "no AVX2"
    return f"{info.get('model name', 'unknown CPU')} ({features})"


def cpu_line():
    """The CPU, the threads torch uses and torch's version: the start of every table's
    heading."""
    import torch  # here, so that scripts that time other processes start without it

    return f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def write_tables(path, *tables):
    """Write reStructuredText list-tables to ``path`` and print the file.

    Every table is ``(text, columns, rows)``: the line above it (which names the machine),
    its column names and its rows of cells.
    """
    lines = []
    for text, columns, rows in tables:
        lines += [text, "", ".. list-table::", "   :header-rows: 1", ""]
        for cells in [columns, *rows]:
            lines.append(f"   * - {cells[0]}")
            lines.extend(f"     - {cell}" for cell in cells[1:])
        lines.append("")
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines))
    print(path.read_text(), flush=True)
