#!/usr/bin/env python3
"""Write the PTX NVRTC makes of one kernels/ file, with the backend's options (as bench/nvrtc_check.py).
  LIBNVRTC=... python3 nvrtc_ptx.py WORKTREE FILE.cu OUT.ptx"""
import ctypes, os, pathlib, sys
root, name, out = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
K = root / "kernels"
lib = ctypes.CDLL(os.environ["LIBNVRTC"])
hs = sorted(K.glob("*.cuh"))
n = len(hs)
prog = ctypes.c_void_p()
assert lib.nvrtcCreateProgram(ctypes.byref(prog), (K / name).read_bytes(), name.encode(), n,
                              (ctypes.c_char_p * n)(*[h.read_bytes() for h in hs]),
                              (ctypes.c_char_p * n)(*[h.name.encode() for h in hs])) == 0
opts = [b"--gpu-architecture=sm_90a", b"-std=c++17", b"-default-device"]
assert lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)) == 0
sz = ctypes.c_size_t()
lib.nvrtcGetPTXSize(prog, ctypes.byref(sz))
buf = ctypes.create_string_buffer(sz.value)
lib.nvrtcGetPTX(prog, buf)
open(out, "wb").write(buf.value)
