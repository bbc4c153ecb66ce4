use rwm_dist::backend::AttnAlgo;
use rwm_dist::budget::*;
use rwm_dist::layout::CpKind;

const GIB: u64 = 1 << 30;

fn llama_8b(seq_len: usize) -> MemoryInputs {
    MemoryInputs {
        layers: 32,
        hidden: 4096,
        heads: 32,
        kv_heads: 8,
        head_dim: 128,
        ffn: 14336,
        vocab: 128256,
        seq_len,
        ..Default::default()
    }
}

/// 1 layer, hidden 4, 2 heads of 2, 1 KV head, ffn 8, vocab 10, 4 tokens, bf16.
fn tiny() -> MemoryInputs {
    MemoryInputs {
        layers: 1,
        hidden: 4,
        heads: 2,
        kv_heads: 1,
        head_dim: 2,
        ffn: 8,
        vocab: 10,
        seq_len: 4,
        ..Default::default()
    }
}

/// `tiny` with a second layer that is MoE: 4 experts of ffn 2, top-2, 1 shared expert.
fn tiny_moe() -> MemoryInputs {
    MemoryInputs {
        layers: 2,
        moe_layer_count: 1,
        num_experts: 4,
        top_k: 2,
        expert_ffn: 2,
        shared_experts: 1,
        capacity_factor: 1.25,
        ..tiny()
    }
}

#[test]
fn llama_8b_parameters_and_kv_cache() {
    let m = llama_8b(8192);
    assert_eq!(m.param_count().unwrap(), 8_030_261_248);
    let b = m.estimate().unwrap();
    assert_eq!(b.bytes(term::PARAMETERS), 2 * 8_030_261_248);
    assert_eq!(b.bytes(term::KV_CACHE), 32 * 2 * 8 * 128 * 8192 * 2);
    assert_eq!(b.bytes(term::KV_CACHE), GIB);
    // flash keeps only the f32 lse: 8192 tokens * 32 heads
    assert_eq!(b.bytes(term::ATTENTION), 8192 * 32 * 4);
    assert_eq!(b.total, b.terms.iter().map(|t| t.bytes).sum::<u64>());
}

#[test]
fn tiny_dense_by_hand() {
    let b = tiny().estimate().unwrap();
    // embed + head 2*10*4 = 80; q,o 2*4*4 = 32; k,v 2*4*2 = 16; norms 8; final norm 4; mlp 3*4*8 = 96
    assert_eq!(tiny().param_count().unwrap(), 236);
    assert_eq!(b.bytes(term::PARAMETERS), 472);
    assert_eq!(b.bytes(term::KV_CACHE), 2 * 4 * 2 * 2); // k,v * 4 tokens * 1 head * dim 2 * bf16
    // hidden+residual 32, qkv 4*(2+2)*2 = 32, attn out 16, swiglu 2*4*8 = 64 elements, bf16
    assert_eq!(b.bytes(term::ACTIVATIONS), 144 * 2);
    assert_eq!(b.bytes(term::LOGITS), 10 * 4); // last token only, f32
    assert_eq!(b.bytes(term::ATTENTION), 4 * 2 * 4);
    assert_eq!(b.bytes(term::MOE_DISPATCH), 0);
    assert_eq!(b.total, 472 + 32 + 288 + 40 + 32);
    assert_eq!(b.terms.len(), 6, "no communication terms without parallelism");

    let full = MemoryInputs { full_logits: true, ..tiny() }.estimate().unwrap();
    assert_eq!(full.bytes(term::LOGITS), 4 * 10 * 4);
    let naive = MemoryInputs { attention: AttnAlgo::Naive, naive_heads_at_once: 2, ..tiny() }.estimate().unwrap();
    assert_eq!(naive.bytes(term::ATTENTION), 2 * 4 * 4 * (4 + 2)); // 2 heads of 4x4 f32 scores and bf16 probs
}

#[test]
fn tiny_moe_by_hand() {
    let m = tiny_moe();
    // tiny's 236 + one more attention layer 56 + router 4*4 + routed 4*3*4*2 + shared 3*4*2
    assert_eq!(m.param_count().unwrap(), 236 + 56 + 16 + 96 + 24);
    let b = m.estimate().unwrap();
    // rows = ceil(1.25 * 4 tokens * 2) = 10, h 4, F 2: rows in 10*4, then max(gate/up 2F + act F = 6,
    // act F + out h = 6) per row: 10*(4 + 6), bf16
    assert_eq!(b.bytes(term::MOE_DISPATCH), 10 * (4 + 6) * 2);
    // dense swiglu (64) beats the shared expert's (16); router logits+probs 2*4*4 f32
    assert_eq!(b.bytes(term::ACTIVATIONS), 288 + 128);
    assert_eq!(b.bytes(term::COMM_EP), 0);

    let ep2 = MemoryInputs { ep: 2, ..m.clone() }.estimate().unwrap();
    // half of the routed experts' 96 params * 2 bytes leaves the rank; nothing else does
    assert_eq!(b.bytes(term::PARAMETERS) - ep2.bytes(term::PARAMETERS), 96);
    assert_eq!(ep2.bytes(term::KV_CACHE), b.bytes(term::KV_CACHE));
    assert_eq!(ep2.bytes(term::COMM_EP), 2 * 10 * 4 * 2);
}

#[test]
fn context_parallel_halves_sequence_terms() {
    let one = llama_8b(8192).estimate().unwrap();
    let ring = MemoryInputs { cp: 2, ..llama_8b(8192) }.estimate().unwrap();
    assert_eq!(ring.bytes(term::PARAMETERS), one.bytes(term::PARAMETERS));
    assert_eq!(ring.bytes(term::KV_CACHE) * 2, one.bytes(term::KV_CACHE));
    assert_eq!(ring.bytes(term::ACTIVATIONS) * 2, one.bytes(term::ACTIVATIONS));
    // two blocks of K and V in flight: 2 * 2 * 4096 * 8 * 128 * 2
    assert_eq!(ring.bytes(term::COMM_CP_RING), 32 << 20);
    // lse, plus the f32 output accumulator and running lse for merging blocks
    assert_eq!(ring.bytes(term::ATTENTION), 4096 * 32 * 4 + 4096 * 32 * 129 * 4);

    let gather = MemoryInputs { cp: 4, cp_mode: CpKind::AllGather, ..llama_8b(8192) }.estimate().unwrap();
    assert_eq!(gather.bytes(term::KV_CACHE) * 4, one.bytes(term::KV_CACHE));
    assert_eq!(gather.bytes(term::COMM_CP_ALLGATHER), 2 * 8192 * 8 * 128 * 2); // the whole sequence's K, V
    assert_eq!(gather.bytes(term::COMM_CP_RING), 0);
    // naive scores: local queries against every key
    let naive = MemoryInputs { cp: 4, cp_mode: CpKind::AllGather, attention: AttnAlgo::Naive, ..llama_8b(8192) };
    assert_eq!(naive.estimate().unwrap().bytes(term::ATTENTION), 2048 * 8192 * (4 + 2));
}

#[test]
fn tensor_and_data_parallel_shard_their_terms() {
    let one = llama_8b(4096).estimate().unwrap();
    let tp2 = MemoryInputs { tp: 2, ..llama_8b(4096) };
    // attention 2*4096*16*128 + 2*4096*4*128, mlp 3*4096*7168, norms 8192 per layer; vocab halves
    let per_layer = 2 * 4096 * 16 * 128 + 2 * 4096 * 4 * 128 + 3 * 4096 * 7168 + 8192;
    assert_eq!(tp2.local_param_count().unwrap(), 2 * 64128 * 4096 + 32 * per_layer + 4096);
    let b = tp2.estimate().unwrap();
    assert_eq!(b.bytes(term::KV_CACHE) * 2, one.bytes(term::KV_CACHE));
    assert_eq!(b.bytes(term::COMM_TP), 4096 * 4096 * 2);
    let dp2 = MemoryInputs { batch: 4, dp: 2, ..llama_8b(4096) }.estimate().unwrap();
    assert_eq!(dp2.bytes(term::KV_CACHE), 2 * one.bytes(term::KV_CACHE)); // 2 local sequences
}

#[test]
fn overflow_names_the_largest_term() {
    let b = Budget {
        terms: vec![Term { name: "weights", bytes: 30 * GIB }, Term { name: "kv cache", bytes: 60 * GIB }],
        total: 90 * GIB,
    };
    assert_eq!(b.check_fit(90 * GIB), Ok(()));
    let err = b.check_fit(80 * GIB).unwrap_err();
    assert_eq!((err.term, err.by_bytes), ("kv cache", 10 * GIB));
    let msg = err.to_string();
    assert!(msg.contains("by 10.00 GiB") && msg.contains("largest term: kv cache (60.00 GiB)"), "{msg}");

    // 64 sequences of 8192 tokens: 64 GiB of KV cache does not fit an H100 beside the weights.
    let big = MemoryInputs { batch: 64, ..llama_8b(8192) }.estimate().unwrap();
    assert_eq!(big.bytes(term::KV_CACHE), 64 * GIB);
    let err = big.check_fit(parse_device_memory("h100").unwrap()).unwrap_err();
    assert_eq!(err.term, term::KV_CACHE);
    assert_eq!(err.by_bytes, big.total - 80 * GIB);
}

#[test]
fn render_shows_terms_and_fit() {
    let b = llama_8b(8192).estimate().unwrap();
    let mut out = Vec::new();
    b.render(Some(80 * GIB), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("kv cache") && l.contains("1,073,741,824") && l.contains("1.000 GiB")),
        "{text}"
    );
    assert!(text.contains("headroom"), "{text}");
    let mut out = Vec::new();
    b.render(Some(GIB), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("DOES NOT FIT") && text.contains("largest term: parameters"), "{text}");
}

#[test]
fn device_memory_presets_and_numbers() {
    assert_eq!(parse_device_memory("H100").unwrap(), 80 * GIB);
    assert_eq!(parse_device_memory("h200").unwrap(), 141 * GIB);
    assert_eq!(parse_device_memory("gb200").unwrap(), 189_471 << 20);
    assert_eq!(parse_device_memory("79.5GiB").unwrap(), 79 * GIB + GIB / 2);
    let err = parse_device_memory("a100").unwrap_err().to_string();
    assert!(err.starts_with("--device-memory") && err.contains("h200"), "{err}");
}

#[test]
fn invalid_layouts_name_the_field() {
    let err = MemoryInputs { tp: 3, ..llama_8b(8192) }.estimate().unwrap_err().to_string();
    assert!(err.contains("heads = 32") && err.contains("tp = 3"), "{err}");
    // Zigzag CP shards any length: the largest shard (ceil) bounds the KV cache.
    let odd = MemoryInputs { cp: 3, ..llama_8b(8192) }.estimate().unwrap();
    assert_eq!(odd.bytes(term::KV_CACHE), 2 * 32 * 2731 * 8 * 128 * 2);
    let err = MemoryInputs { ep: 3, ..tiny_moe() }.estimate().unwrap_err().to_string();
    assert!(err.contains("num_experts = 4") && err.contains("ep = 3"), "{err}");
    let err = MemoryInputs { top_k: 5, ..tiny_moe() }.estimate().unwrap_err().to_string();
    assert!(err.contains("top_k = 5") && err.contains("1..=4"), "{err}");
    let err = MemoryInputs { layers: 0, ..tiny() }.estimate().unwrap_err().to_string();
    assert!(err.contains("layers = 0"), "{err}");
}

#[test]
fn sizes_that_overflow_64_bits_are_refused_naming_the_term() {
    let huge = llama_8b(usize::MAX);
    let e = huge.estimate().unwrap_err();
    assert_eq!(e, MemoryError::TooLarge { term: term::KV_CACHE });
    assert!(e.to_string().contains("kv cache overflows 64-bit"), "{e}");
    let e = MemoryInputs { vocab: usize::MAX / 2, ..llama_8b(8) }.param_count().unwrap_err();
    assert_eq!(e, MemoryError::TooLarge { term: term::PARAMETERS });
    // Each term fits, their sum does not.
    let terms = vec![Term { name: "a", bytes: u64::MAX }, Term { name: "b", bytes: 1 }];
    assert_eq!(Budget::new(terms).unwrap_err(), MemoryError::TooLarge { term: "total" });
    // The checked arithmetic itself.
    assert_eq!((n(3) * n(4) + n(5)).get("x"), Ok(17));
    assert_eq!((n(usize::MAX) * n(2)).get("x"), Err(MemoryError::TooLarge { term: "x" }));
    assert_eq!((Checked::from(u64::MAX) + n(1)).max(n(0)).get("y"), Err(MemoryError::TooLarge { term: "y" }));
    assert_eq!(Checked::rows(1.1, n(100)).get("rows"), Ok(110));
    assert_eq!(Checked::rows(1.0, Checked::from(u64::MAX)).get("rows"), Err(MemoryError::TooLarge { term: "rows" }));
}
