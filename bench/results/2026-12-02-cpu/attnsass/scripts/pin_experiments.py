#!/usr/bin/env python3
"""Where does ptxas put the P V wait (WARPGROUP.DEPBAR.LE gsb0, 0x0) of flash_fwd_sm90_d128_s2p's main loop?
Builds variants of main's kernels/flash_attention_sm90.cu with only that instantiation, each changing the
few lines around the wait, compiles them with NVRTC (bench/nvrtc_check.py of the worktree W) and prints how
many MUFU.EX2 of the loop come before the wait.
  LIBNVRTC=... python3 pin_experiments.py W OUT_DIR CUOBJDUMP
W must hold main's kernel (the default loop: it is what the variants edit)."""
import pathlib, re, shutil, subprocess, sys
W, OUT, CO = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
(OUT / "kernels").mkdir(parents=True, exist_ok=True)
(OUT / "bench").mkdir(exist_ok=True)
for h in (W / "kernels").glob("*.cuh"):
    shutil.copy(h, OUT / "kernels")
shutil.copy(W / "bench/nvrtc_check.py", OUT / "bench")
src = (W / "kernels/flash_attention_sm90.cu").read_text()
src = src[: src.index("F3(flash_fwd_sm90_d128_s2,")] + "F3_OUT(flash_fwd_sm90_d128_s2p, bf16, 128, 2, true, false, 0)\n"
OLD = """                wg_wait<1>();  // S of tile t is ready; P V of tile t + 1 may still run
                wg_pin(s);
                if (lane == 0) mbar_arrive(kempty(stage));
                softmax(t, alpha);
                wg_wait<0>();"""
assert src.count(OLD) == 1, "not main's default loop"
HEAD = """                wg_wait<1>();  // S of tile t is ready; P V of tile t + 1 may still run
                wg_pin(s);
"""
VARIANTS = {
    "main (K arrive, softmax, wait)": OLD,
    "__syncwarp() before the wait": OLD.replace("wg_wait<0>();", "__syncwarp();\n                wg_wait<0>();"),
    "asm bar.warp.sync before the wait": OLD.replace("wg_wait<0>();", 'asm volatile("bar.warp.sync -1;\\n" ::: "memory");\n                wg_wait<0>();'),
    "wg_pin(s) (asm with s in/out) before the wait": OLD.replace("wg_wait<0>();", "wg_pin(s);\n                wg_wait<0>();"),
    "K arrive after the softmax": HEAD + "                softmax(t, alpha);\n                if (lane == 0) mbar_arrive(kempty(stage));\n                wg_wait<0>();",
    "K arrive after, predicate on l[1]": HEAD + "                softmax(t, alpha);\n                if (lane == 0 && !(l[1] < 0.f)) mbar_arrive(kempty(stage));\n                wg_wait<0>();",
    "K arrive after, predicate on l[0], l[1] (lean)": HEAD + "                softmax(t, alpha);\n                if (lane == 0 && !(fminf(l[0], l[1]) < 0.f)) mbar_arrive(kempty(stage));\n                wg_wait<0>();",
    "K arrive early, dummy ld.shared on l before the wait": OLD.replace("wg_wait<0>();", '{ u32 d; asm volatile("ld.shared.u32 %0, [%1];\\n" : "=r"(d) : "r"(kempty(stage) + (u32)(fminf(l[0], l[1]) < 0.f)) : "memory"); }\n                wg_wait<0>();'),
}
for i, (name, new) in enumerate(VARIANTS.items()):
    f = f"v{i}.cu"
    (OUT / "kernels" / f).write_text(src.replace(OLD, new))
    log = subprocess.run([sys.executable, "bench/nvrtc_check.py", "--cubin-dir", "cubin", f], cwd=OUT, capture_output=True, text=True).stdout
    spill = re.search(r"(\d+) bytes spill stores", log)
    sass = subprocess.run([CO, "--dump-sass", str(OUT / "cubin" / f"v{i}.cubin")], capture_output=True, text=True).stdout
    ins = [re.sub(r"\s+", " ", m.group(2)).strip() for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", sass)]
    # the loop: from the second WARPGROUP.DEPBAR.LE gsb0, 0x1 ... its DEPBAR 0x0 (the first of each is in the loop)
    d1 = next(k for k, x in enumerate(ins) if x.endswith("DEPBAR.LE gsb0, 0x1"))
    d0 = next(k for k in range(d1, len(ins)) if ins[k].endswith("DEPBAR.LE gsb0, 0x0"))
    mufu = sum("MUFU.EX2" in x for x in ins[d1:d0])
    print(f"{name:55s} spills {spill.group(1) if spill else '?':>3} B; DEPBAR 0x1 -> 0x0: {d0 - d1:3d} instructions, MUFU.EX2 before the wait: {mufu}")
