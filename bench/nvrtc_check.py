#!/usr/bin/env python3
"""Compile kernels/*.cu with NVRTC exactly as the CUDA backend does (named headers,
same options), without a GPU, and print ptxas's register/spill report.

  LIBNVRTC=/path/to/libnvrtc.so.13 python3 bench/nvrtc_check.py [--arch sm_90a] [--cubin-dir DIR] [file.cu ...]

NVRTC comes from CUDA or from the nvidia-cuda-nvrtc wheel (put its lib/ on LD_LIBRARY_PATH too:
NVRTC loads libnvrtc-builtins from there); with --cubin-dir the CUBINs are written out for
`cuobjdump --dump-sass` / `--dump-resource-usage`. For a quick look at one file and architecture;
the check CI runs (every file for every architecture it claims, spills against a table) is
tests/kernel_arch.rs.
"""
import argparse
import ctypes
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
KERNELS = ROOT / "kernels"


def compile_nvrtc(src, name, opts, headers=(), lib=None):
    """Compiles CUDA source `src` (bytes) named `name` with NVRTC options `opts` and named headers
    [(name, bytes)]: (ok, log text, cubin bytes or None). The library is LIBNVRTC (default libnvrtc.so.13)."""
    lib = lib or ctypes.CDLL(os.environ.get("LIBNVRTC", "libnvrtc.so.13"))
    prog = ctypes.c_void_p()
    n = len(headers)
    hsrc = (ctypes.c_char_p * n)(*[h for _, h in headers]) if n else None
    hname = (ctypes.c_char_p * n)(*[h.encode() for h, _ in headers]) if n else None
    r = lib.nvrtcCreateProgram(ctypes.byref(prog), src, name.encode(), n, hsrc, hname)
    assert r == 0, r
    copts = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
    ok = lib.nvrtcCompileProgram(prog, len(opts), copts) == 0
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    cubin = None
    if ok:
        lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetCUBIN(prog, buf)
        cubin = buf.raw
    return ok, log.value.decode(errors="replace"), cubin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--arch", default="sm_90a")
    ap.add_argument("--cubin-dir")
    ap.add_argument("--define", "-D", action="append", default=[])
    args = ap.parse_args()
    lib = ctypes.CDLL(os.environ.get("LIBNVRTC", "libnvrtc.so.13"))
    headers = [(h.name, h.read_bytes()) for h in sorted(KERNELS.glob("*.cuh"))]
    files = [KERNELS / f for f in args.files] if args.files else sorted(KERNELS.glob("*.cu"))
    opts = [f"--gpu-architecture={args.arch}", "-std=c++17", "-default-device", "--ptxas-options=-v"]
    opts += [f"-D{d}" for d in args.define]
    failed = 0
    for f in files:
        ok, text, cubin = compile_nvrtc(f.read_bytes(), f.name, opts, headers, lib)
        print(f"== {f.name}: {'ok' if ok else 'FAILED'}")
        for line in text.splitlines():
            if not ok or "error" in line or "warning" in line or "Used" in line or "spill" in line or "Compiling" in line:
                print("  " + line)
        if not ok:
            failed += 1
        elif args.cubin_dir:
            pathlib.Path(args.cubin_dir).mkdir(parents=True, exist_ok=True)
            (pathlib.Path(args.cubin_dir) / (f.stem + ".cubin")).write_bytes(cubin)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
