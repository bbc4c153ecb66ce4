//! Expert and context parallelism against the single-rank computation, with ranks
//! as threads (`LocalComm`) on the CPU backend; the same bodies run over NCCL when
//! two GPUs, libnccl and the CUDA backend are present.

use rwm_dist::backend::cpu::CpuBackend;
use rwm_dist::backend::{AttnAlgo, AttnParams, Backend, Gate, RouterParams, Routing};
use rwm_dist::comm::local::LocalComm;
use rwm_dist::comm::{Comm, Error as CommError};
use rwm_dist::parallel::context::{self, CpKind, CpParams, CpStats};
use rwm_dist::parallel::expert::{self, EpStats, ExpertPlacement};
use rwm_dist::rng::fill_uniform;
use rwm_dist::tensor::{DType, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `f(rank's comm)` on every rank of a local group of `n`, one thread each.
fn on_ranks<T: Send + 'static>(n: usize, f: impl Fn(LocalComm) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let handles: Vec<_> = LocalComm::group(n)
        .into_iter()
        .map(|c| {
            let f = f.clone();
            std::thread::spawn(move || f(c))
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

// ---------------------------------------------------------------- expert parallelism

#[derive(Clone)]
struct Moe {
    experts: usize,
    hidden: usize,
    ffn: usize,
    top_k: usize,
    /// Extra replicas (EPLB); empty for the contiguous placement.
    extra: Vec<usize>,
    /// Router bias favouring expert 0, so that its replicas carry real load.
    hot_expert_0: bool,
}

impl Moe {
    /// (first token, token count) of `rank`: uneven counts 5 + 4 r.
    fn tokens(rank: usize) -> (usize, usize) {
        ((0..rank).map(|r| 5 + 4 * r).sum(), 5 + 4 * rank)
    }
    fn total_tokens(&self, ep: usize) -> usize {
        (0..ep).map(|r| 5 + 4 * r).sum()
    }
    fn x(&self, ep: usize) -> Vec<f32> {
        fill_uniform(1, self.total_tokens(ep) * self.hidden, 1.0)
    }
    fn w_router(&self) -> Vec<f32> {
        fill_uniform(2, self.experts * self.hidden, 0.5)
    }
    /// [E, 2f, h]: gate rows then up rows of each expert.
    fn w1(&self) -> Vec<f32> {
        fill_uniform(3, self.experts * 2 * self.ffn * self.hidden, 0.3)
    }
    /// [E, h, f].
    fn w2(&self) -> Vec<f32> {
        fill_uniform(4, self.experts * self.hidden * self.ffn, 0.3)
    }
    fn route(&self, b: &dyn Backend, x: &Tensor) -> Routing {
        let wr = b.upload(&self.w_router(), &[self.experts, self.hidden], DType::F32).unwrap();
        let logits = b.matmul(x, &wr, DType::F32).unwrap();
        let p = RouterParams {
            gate: Gate::Softmax,
            top_k: self.top_k,
            n_group: 1,
            topk_group: 1,
            norm_topk: true,
            scaling: 1.0,
        };
        let mut bias = vec![0.0; self.experts];
        bias[0] = if self.hot_expert_0 { 1.0 } else { 0.0 };
        let bias = b.upload(&bias, &[self.experts], DType::F32).unwrap();
        b.route(&logits, &p, Some(&bias)).unwrap()
    }
    /// Weights of the given experts, stacked: ([n, 2f, h], [n, h, f]).
    fn weights_of(&self, b: &dyn Backend, experts: &[usize]) -> (Tensor, Tensor) {
        let (w1, w2) = (self.w1(), self.w2());
        let (s1, s2) = (2 * self.ffn * self.hidden, self.hidden * self.ffn);
        let a: Vec<f32> = experts.iter().flat_map(|&e| w1[e * s1..(e + 1) * s1].to_vec()).collect();
        let c: Vec<f32> = experts.iter().flat_map(|&e| w2[e * s2..(e + 1) * s2].to_vec()).collect();
        let n = experts.len();
        (
            b.upload(&a, &[n, 2 * self.ffn, self.hidden], DType::F32).unwrap(),
            b.upload(&c, &[n, self.hidden, self.ffn], DType::F32).unwrap(),
        )
    }
    fn experts_ffn(b: &dyn Backend, rows: &Tensor, offsets: &Tensor, w1: &Tensor, w2: &Tensor) -> Tensor {
        let gu = b.grouped_matmul(rows, w1, offsets).unwrap();
        let a = b.swiglu(&gu, None).unwrap();
        b.grouped_matmul(&a, w2, offsets).unwrap()
    }

    /// The whole layer on one rank over every token.
    fn reference(&self, ep: usize) -> (Vec<f32>, Vec<i32>) {
        let b = CpuBackend::new();
        let x = b.upload(&self.x(ep), &[self.total_tokens(ep), self.hidden], DType::F32).unwrap();
        let routing = self.route(&b, &x);
        let all: Vec<usize> = (0..self.experts).collect();
        let (w1, w2) = self.weights_of(&b, &all);
        let p = b.permute(&x, &routing.ids, self.experts).unwrap();
        let y = Self::experts_ffn(&b, &p.x, &p.offsets, &w1, &w2);
        let out = b.unpermute(&y, &p.row_of, &routing.weights).unwrap();
        (b.download(&out).unwrap(), b.download_i32(&routing.ids).unwrap())
    }

    /// This rank's part of the layer with expert parallelism over `comm`.
    fn rank(&self, b: &dyn Backend, comm: &dyn Comm) -> (Vec<f32>, EpStats) {
        let (ep, me) = (comm.size(), comm.rank());
        let (start, t) = Self::tokens(me);
        let x_all = self.x(ep);
        let x =
            b.upload(&x_all[start * self.hidden..(start + t) * self.hidden], &[t, self.hidden], DType::F32).unwrap();
        let routing = self.route(b, &x);
        let placement = ExpertPlacement::replicated(self.experts, ep, &self.extra).unwrap();
        let (out, stats) = expert::forward(b, comm, &placement, &x, &routing, |rows, offsets, slot_experts| {
            let (w1, w2) = self.weights_of(b, slot_experts);
            Ok(Self::experts_ffn(b, rows, offsets, &w1, &w2))
        })
        .unwrap();
        (b.download(&out).unwrap(), stats)
    }
}

fn check_ep(moe: &Moe, ep: usize) -> Vec<EpStats> {
    let (want, ids) = moe.reference(ep);
    let m = moe.clone();
    let got = on_ranks(ep, move |c| m.rank(&CpuBackend::new(), &c));
    let h = moe.hidden;
    for (r, (out, stats)) in got.iter().enumerate() {
        let (start, t) = Moe::tokens(r);
        let d = max_diff(out, &want[start * h..(start + t) * h]);
        assert!(d < 1e-5, "ep {ep} rank {r}: max diff {d}");
        assert_eq!(stats.rows_sent.iter().sum::<usize>(), t * moe.top_k, "rank {r} sends each (token, slot) once");
    }
    // Every rank's slots together processed each expert's rows exactly once.
    let placement = ExpertPlacement::replicated(moe.experts, ep, &moe.extra).unwrap();
    for (e, reps) in placement.replicas.iter().enumerate() {
        let routed = ids.iter().filter(|&&i| i as usize == e).count();
        let loads: Vec<usize> = reps.iter().map(|&(r, s)| got[r].1.rows_per_slot[s]).collect();
        assert_eq!(loads.iter().sum::<usize>(), routed, "expert {e} replicas {reps:?}");
        // Each sender splits an expert's rows near-equally, so replicas differ by at most one row per sender.
        let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
        assert!(spread <= ep, "expert {e}: replica loads {loads:?}");
    }
    got.into_iter().map(|(_, s)| s).collect()
}

fn small_moe(extra: Vec<usize>, hot: bool) -> Moe {
    let experts = if extra.is_empty() { 8 } else { 6 };
    Moe { experts, hidden: 16, ffn: 8, top_k: 2, extra, hot_expert_0: hot }
}

#[test]
fn ep_matches_single_rank_2_and_4_ranks() {
    for ep in [2, 4] {
        let stats = check_ep(&small_moe(vec![], false), ep);
        for s in &stats {
            assert!(s.bytes_sent > 0 && s.a2a_ms >= 0.0);
            let want_busbw = s.algbw_gbps * (ep - 1) as f64 / ep as f64;
            assert!((s.busbw_gbps - want_busbw).abs() <= 1e-9 * want_busbw.max(1.0));
        }
    }
}

#[test]
fn ep_with_replicated_hot_experts_matches_single_rank() {
    // 6 experts plus replicas of experts 0 and 3: 8 slots (4 per rank on 2, 2 on 4).
    for ep in [2, 4] {
        check_ep(&small_moe(vec![0, 3], true), ep);
    }
}

#[test]
fn ep_rejects_a_placement_for_another_group_size() {
    let err = on_ranks(2, |c| {
        let b = CpuBackend::new();
        let x = b.zeros(&[1, 4], DType::F32).unwrap();
        let routing = Routing {
            ids: b.upload_i32(&[0], &[1, 1]).unwrap(),
            weights: b.upload(&[1.0], &[1, 1], DType::F32).unwrap(),
            probs: b.zeros(&[1, 4], DType::F32).unwrap(),
        };
        let placement = ExpertPlacement::contiguous(4, 4).unwrap();
        expert::forward(&b, &c, &placement, &x, &routing, |r, _, _| Ok(b.rows(r, 0, r.shape()[0])?)).unwrap_err()
    });
    let msg = err[0].to_string();
    assert!(msg.contains("ranks 0..2"), "{msg}");
}

// ---------------------------------------------------------------- context parallelism

#[derive(Clone, Copy, Debug)]
struct Attn {
    len: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    dtype: DType,
    seed: u64,
}

impl Attn {
    fn qkv(&self, b: &dyn Backend) -> (Tensor, Tensor, Tensor) {
        let up = |seed, heads| {
            let v = fill_uniform(seed, self.len * heads * self.d, 1.0);
            b.upload(&v, &[self.len, heads, self.d], self.dtype).unwrap()
        };
        (up(self.seed, self.hq), up(self.seed + 1, self.hkv), up(self.seed + 2, self.hkv))
    }
    fn reference(&self) -> Vec<f32> {
        let b = CpuBackend::new();
        let (q, k, v) = self.qkv(&b);
        let p = AttnParams::causal(0, 0, AttnAlgo::Naive);
        b.download(&b.attention(&q, &k, &v, &p).unwrap().out).unwrap()
    }
    /// This rank's output rows and stats.
    fn rank(&self, b: &dyn Backend, comm: &dyn Comm, kind: CpKind, algo: AttnAlgo) -> (Vec<f32>, CpStats) {
        let (q, k, v) = self.qkv(b);
        let (n, me) = (comm.size(), comm.rank());
        let [q, k, v] = [&q, &k, &v].map(|t| context::take_shard(b, t, n, me).unwrap());
        let p = CpParams { kind, algo, seq_len: self.len, measure_comm: true };
        let (out, stats) = context::attention(b, comm, &q, &k, &v, &p).unwrap();
        (b.download(&out).unwrap(), stats)
    }
    /// Reassembles the ranks' outputs into sequence order.
    fn unshard(&self, outs: &[Vec<f32>]) -> Vec<f32> {
        let b = CpuBackend::new();
        let shards: Vec<Tensor> = outs
            .iter()
            .map(|o| b.upload(o, &[o.len() / (self.hq * self.d), self.hq, self.d], DType::F32).unwrap())
            .collect();
        b.download(&context::unshard(&b, &shards, self.len).unwrap()).unwrap()
    }
}

fn check_cp(a: Attn, n: usize, kind: CpKind, algo: AttnAlgo, tol: f32) -> Vec<CpStats> {
    let got = on_ranks(n, move |c| a.rank(&CpuBackend::new(), &c, kind, algo));
    let outs: Vec<Vec<f32>> = got.iter().map(|g| g.0.clone()).collect();
    let d = max_diff(&a.unshard(&outs), &a.reference());
    assert!(d < tol, "{a:?} cp {n} {kind:?} {algo:?}: max diff {d}");
    got.into_iter().map(|g| g.1).collect()
}

#[test]
fn cp_matches_full_attention_for_uneven_lengths() {
    for n in [2, 4] {
        for len in [37, 100, 129] {
            let a = Attn { len, hq: 4, hkv: 2, d: 16, dtype: DType::F32, seed: 10 * len as u64 + n as u64 };
            for kind in [CpKind::Ring, CpKind::AllGather] {
                for algo in [AttnAlgo::Naive, AttnAlgo::Flash] {
                    let stats = check_cp(a, n, kind, algo, 1e-5);
                    let block = (0..n).map(|r| context::shard_len(len, n, r).unwrap()).max().unwrap();
                    for s in &stats {
                        assert_eq!(s.bytes_recv, (n - 1) * 2 * block * a.hkv * a.d * 4);
                        assert!(s.comm_ms.is_some());
                        assert!(s.overlap.is_none_or(|o| (0.0..=1.0).contains(&o)));
                        if kind == CpKind::Ring {
                            // Of the 2 x 2n (query chunk, key chunk) pairs, those with the key
                            // chunk at or before the query chunk are computed: (r + 1) + (2n - r).
                            assert_eq!((s.blocks_computed, s.blocks_skipped), (2 * n + 1, 2 * n - 1));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn cp_handles_sequences_shorter_than_the_chunk_count() {
    // 5 positions in 8 chunks: some ranks hold empty chunks.
    let a = Attn { len: 5, hq: 2, hkv: 1, d: 8, dtype: DType::F32, seed: 7 };
    for kind in [CpKind::Ring, CpKind::AllGather] {
        check_cp(a, 4, kind, AttnAlgo::Flash, 1e-5);
    }
}

#[test]
fn cp_in_bf16_stays_close() {
    // Each merge rounds to bf16, so the error grows with the number of partials.
    let a = Attn { len: 100, hq: 4, hkv: 4, d: 16, dtype: DType::Bf16, seed: 3 };
    check_cp(a, 4, CpKind::Ring, AttnAlgo::Flash, 3e-2);
}

#[test]
fn cp_groups_split_from_a_larger_world() {
    // 4 ranks as 2 CP groups of 2 (color = rank / 2), each group on its own sequence.
    let base = Attn { len: 37, hq: 2, hkv: 1, d: 8, dtype: DType::F32, seed: 40 };
    let seqs = [base, Attn { len: 61, seed: 50, ..base }];
    let got = on_ranks(4, move |c| {
        let color = c.rank() / 2;
        let cp = c.split(color, c.rank()).unwrap();
        let (out, _) = seqs[color].rank(&CpuBackend::new(), cp.as_ref(), CpKind::Ring, AttnAlgo::Naive);
        (color, cp.rank(), out)
    });
    for (color, a) in seqs.iter().enumerate() {
        let mut outs = vec![Vec::new(); 2];
        got.iter().filter(|g| g.0 == color).for_each(|g| outs[g.1] = g.2.clone());
        let d = max_diff(&a.unshard(&outs), &a.reference());
        assert!(d < 1e-5, "group {color}: max diff {d}");
    }
}

// ---------------------------------------------------------------- failures

#[test]
fn silent_peer_times_out_within_the_bound() {
    let timeout = Duration::from_millis(300);
    let mut comms = LocalComm::group_with_timeout(2, timeout);
    let silent = comms.pop().unwrap();
    let waiter = comms.pop().unwrap();
    // The silent rank stays alive (no PeerLost) but never takes part.
    let keeper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1000));
        drop(silent);
    });
    let b = CpuBackend::new();
    let x = b.zeros(&[2, 3], DType::F32).unwrap();
    let start = Instant::now();
    let err = waiter.all_gather(&x).unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, CommError::Timeout { rank: 0, op: "all_gather", .. }), "{err}");
    assert!(took >= timeout && took < timeout + Duration::from_millis(700), "took {took:?}");
    let start = Instant::now();
    let err = waiter.sendrecv_start(&x, 1, 1).unwrap().wait().unwrap_err();
    assert!(matches!(err, CommError::Timeout { op: "sendrecv wait", .. }), "{err}");
    assert!(start.elapsed() < timeout + Duration::from_millis(700));
    keeper.join().unwrap();
}

// ---------------------------------------------------------------- NCCL (needs 2 GPUs)

/// Written straight to stderr: the test harness captures `println!`, and a skip must be seen.
fn skipped(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
fn nccl_ep_and_cp_match_cpu_on_two_gpus() {
    use rwm_dist::backend::cuda::CudaBackend;
    use rwm_dist::comm::nccl::{NcclComm, nccl_present};
    let backends = (CudaBackend::new(0), CudaBackend::new(1));
    let (Ok(_), Ok(_)) = &backends else {
        let why = [backends.0.err(), backends.1.err()].into_iter().flatten().next().map(|e| e.to_string());
        skipped(&format!("SKIPPED nccl_ep_and_cp_match_cpu_on_two_gpus: {}", why.unwrap_or_default()));
        return;
    };
    if !nccl_present() {
        skipped("SKIPPED nccl_ep_and_cp_match_cpu_on_two_gpus: libnccl not found");
        return;
    }
    drop(backends);
    let moe = small_moe(vec![0, 3], true);
    let attn = Attn { len: 129, hq: 4, hkv: 2, d: 64, dtype: DType::F32, seed: 9 };
    let m = moe.clone();
    let got = on_ranks(2, move |host| {
        let r = host.rank();
        let b = CudaBackend::new(r).unwrap();
        let c = NcclComm::new(Arc::new(host), &b, r).unwrap();
        let ep = m.rank(&b, &c).0;
        let ring = attn.rank(&b, &c, CpKind::Ring, AttnAlgo::Flash).0;
        let gathered = attn.rank(&b, &c, CpKind::AllGather, AttnAlgo::Flash).0;
        (ep, ring, gathered)
    });
    let (want, _) = moe.reference(2);
    for (r, g) in got.iter().enumerate() {
        let (start, t) = Moe::tokens(r);
        let d = max_diff(&g.0, &want[start * moe.hidden..(start + t) * moe.hidden]);
        assert!(d < 2e-2, "EP rank {r}: max diff {d}");
    }
    let want = attn.reference();
    for kind in [1, 2] {
        let outs: Vec<Vec<f32>> = got.iter().map(|g| if kind == 1 { g.1.clone() } else { g.2.clone() }).collect();
        let d = max_diff(&attn.unshard(&outs), &want);
        assert!(d < 2e-2, "CP kind {kind}: max diff {d}");
    }
}
