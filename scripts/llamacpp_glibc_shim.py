"""Run the prebuilt `llama-cpp-py-sync` wheel on a glibc older than 2.38 (Debian 12 has 2.36).

The wheel is tagged manylinux2014 but its libraries ask for GLIBC_2.38, only for the C23 spellings
of strtol/strtoul/strtoull/sscanf (`__isoc23_*`). This script (needs gcc) builds a tiny library that
defines them by calling the classic functions, and rewrites, in the installed package only, each
library's need for GLIBC_2.38 into GLIBC_2.2.5 (same libc, no symbol asks for it any more by name).
Then run with the shim preloaded:

    python scripts/llamacpp_glibc_shim.py          # once, after pip install llama-cpp-py-sync
    LD_PRELOAD=<printed path> python bench/interop.py --threads 1

Not needed where glibc is 2.38 or newer. Never used by the app or CI.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import tempfile
from pathlib import Path

SHIM_C = r"""
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
long __isoc23_strtol(const char *s, char **e, int b) { return strtol(s, e, b); }
long long __isoc23_strtoll(const char *s, char **e, int b) { return strtoll(s, e, b); }
unsigned long __isoc23_strtoul(const char *s, char **e, int b) { return strtoul(s, e, b); }
unsigned long long __isoc23_strtoull(const char *s, char **e, int b) { return strtoull(s, e, b); }
int __isoc23_sscanf(const char *s, const char *f, ...) { va_list a; va_start(a, f); int r = vsscanf(s, f, a); va_end(a); return r; }
"""


def elf_hash(name: str) -> int:
    h = 0
    for c in name.encode():
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def patch(path: Path) -> int:
    """Rename this ELF's GLIBC_2.38 version needs to GLIBC_2.2.5; the number renamed."""
    b = bytearray(path.read_bytes())
    shoff, = struct.unpack_from("<Q", b, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", b, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]
    verneed = [s for s in secs if s[1] == 0x6FFFFFFE]  # SHT_GNU_verneed
    if not verneed:
        return 0
    _, _, _, _, vr_off, _, link, count, _, _ = verneed[0]
    strtab_off, strtab_size = secs[link][4], secs[link][5]
    strtab = bytes(b[strtab_off:strtab_off + strtab_size])
    old_name = strtab.find(b"GLIBC_2.38\0")
    new_name = strtab.find(b"GLIBC_2.2.5\0")
    off, n = vr_off, 0
    for _ in range(count):
        _, cnt, _, aux, nxt = struct.unpack_from("<HHIII", b, off)
        a = off + aux
        for _ in range(cnt):
            _, flags, other, name, anext = struct.unpack_from("<IHHII", b, a)
            if old_name >= 0 and name == old_name:
                if new_name < 0:
                    raise SystemExit(f"{path}: no GLIBC_2.2.5 string to reuse")
                struct.pack_into("<IHHII", b, a, elf_hash("GLIBC_2.2.5"), flags, other, new_name, anext)
                n += 1
            a += anext
        off += nxt
    if n:
        path.write_bytes(b)
    return n


def main() -> None:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp_py_sync")
    if spec is None or spec.origin is None:
        raise SystemExit("llama_cpp_py_sync is not installed: pip install llama-cpp-py-sync")
    pkg = Path(spec.origin).parent
    for lib in sorted(pkg.glob("*.so*")):
        print(f"{lib.name}: {patch(lib)} version need(s) rewritten")
    shim = pkg / "libisoc23shim.so"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "shim.c"
        src.write_text(SHIM_C)
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(shim), str(src)], check=True)
    print(f"LD_PRELOAD={shim}")


if __name__ == "__main__":
    sys.exit(main())
