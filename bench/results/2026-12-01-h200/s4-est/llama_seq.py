"""The optimized llama pass's buffers in order (models::llama::Llama::prefill, fused norms, flash),
as alloc/free events: (op, name, bytes)."""
def seq(S=8192, L=2, h=4096, q=4096, kv=1024, f=14336, heads=32, vocab=128256, fp8=False):
    H, Q, KV, F2, F = 2*S*h, 2*S*q, 2*S*kv, 2*S*2*f, 2*S*f
    ev = []
    A = lambda n, b: ev.append(('a', n, b))
    D = lambda n: ev.append(('f', n, 0))
    cnt = [0]
    def lin(out, ob, inb):
        # Linear::forward: FP8 quantises its input (data, scale, amax freed at once), then the GEMM.
        if fp8:
            i = cnt[0]; cnt[0] += 1
            A(f'q8_{i}', inb); A(f'q8s_{i}', 4); A(f'amax_{i}', 4); D(f'amax_{i}')
            A(out, ob); D(f'q8_{i}'); D(f'q8s_{i}')
        else:
            A(out, ob)
    A('x0', H); x = 'x0'; pending = None
    for l in range(L):
        if pending:
            A(f'n{l}', H); A(f'x{l+1}', H); D(x); x = f'x{l+1}'; D(pending)
        else:
            A(f'n{l}', H)
        lin(f'q0{l}', Q, S*h); A(f'q{l}', Q); D(f'q0{l}')
        lin(f'k0{l}', KV, S*h); A(f'k{l}', KV); D(f'k0{l}')
        lin(f'v{l}', KV, S*h)
        D(f'n{l}')
        A(f'a{l}', Q); A(f'lse{l}', heads*S*4); D(f'lse{l}')
        D(f'q{l}')
        lin(f'o{l}', H, S*q)
        A(f'n2{l}', H); A(f'xm{l}', H); D(x); x = f'xm{l}'
        lin(f'gu{l}', F2, S*h); A(f'act{l}', F); D(f'gu{l}'); lin(f'd{l}', H, S*f); D(f'act{l}')
        pending = f'd{l}'
        D(f'n2{l}'); D(f'o{l}'); D(f'a{l}')
    A('xf', H); D(x); D(pending); x = 'xf'
    for l in range(L): D(f'k{l}'); D(f'v{l}')
    A('last', 2*h)  # rows(x); x lives until prefill returns
    A('nl', 2*h)
    if fp8: lin('logits', 2*vocab, h)
    else: A('logits', 4*vocab)
    D('nl'); D('last'); D(x)
    return ev
