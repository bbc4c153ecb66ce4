//! Checks the world and its host communicator across ranks; run by tests/mpi.rs as
//! `mpirun -np 4 mpi_smoke MODE`. Every value is a function of (sender, receiver, index),
//! so each rank checks what it received by itself.
//!
//! Modes: `smoke` (all collectives, splits, local ranks on two faked hosts),
//! `hang` (rank 1 skips a barrier: the watchdog must end the job), `fail` (rank 2 aborts),
//! `features` (prints whether this build has MPI).

use rwm_dist::backend::{Backend, cpu::CpuBackend};
use rwm_dist::layout::{Dim, ParallelDims};
use rwm_dist::parallel::groups::Groups;
use rwm_dist::tensor::DType;
use rwm_dist::world::World;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "smoke".into());
    if mode == "features" {
        println!("mpi feature: {}", cfg!(feature = "mpi"));
        return;
    }
    // Two fake hosts, interleaved (ranks 0, 2 on node-a; 1, 3 on node-b), to check that
    // local ranks come from host names and not from launcher variables.
    let launcher_rank: Option<usize> = std::env::var("OMPI_COMM_WORLD_RANK").ok().and_then(|r| r.parse().ok());
    let host = (mode == "smoke").then(|| format!("node-{}", ["a", "b"][launcher_rank.unwrap_or(0) % 2]));
    let world = match World::init_with_host(host) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("mpi_smoke: {e}");
            std::process::exit(2);
        }
    };
    match mode.as_str() {
        "smoke" => {
            if let Err(e) = smoke(&world) {
                world.abort(1, &format!("smoke check failed: {e}"));
            }
            println!("rank {}: all checks passed", world.rank);
            if world.rank == 0 {
                // What launch/mpirun.sh passed on.
                println!("NCCL_NVLS_ENABLE={}", std::env::var("NCCL_NVLS_ENABLE").unwrap_or_default());
            }
        }
        "hang" => {
            if world.rank == 1 {
                std::thread::sleep(std::time::Duration::from_secs(120));
            }
            world.comm().barrier().unwrap();
        }
        "fail" => {
            if world.rank == 2 {
                world.abort(3, "simulated failure on rank 2");
            }
            world.comm().barrier().unwrap();
            std::thread::sleep(std::time::Duration::from_secs(120));
        }
        m => {
            eprintln!("unknown mode {m}: expected smoke, hang, fail or features");
            std::process::exit(2);
        }
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

fn smoke(w: &World) -> Result<(), String> {
    let (r, n) = (w.rank, w.size);
    ensure(n == 4, || format!("size {n}, expected 4"))?;
    // Hosts node-a, node-b, node-a, node-b.
    ensure(w.local_size == 2 && w.local_rank == r / 2 && w.node == r % 2, || format!("locality {w:?}"))?;
    ensure(w.hosts == ["node-a", "node-b", "node-a", "node-b"], || format!("hosts {:?}", w.hosts))?;

    let b = CpuBackend::new();
    let c = w.comm();
    let e = |x: rwm_dist::comm::Error| x.to_string();
    let be = |x: rwm_dist::backend::Error| x.to_string();

    // all_to_all_v: rank r sends (r + j) % 3 + 1 rows of 2 to rank j; value 1000 r + 10 j + k.
    let rows_to = |from: usize, to: usize| (from + to) % 3 + 1;
    let mut send = Vec::new();
    for j in 0..n {
        for k in 0..rows_to(r, j) * 2 {
            send.push((1000 * r + 10 * j + k) as f32);
        }
    }
    let send_rows: Vec<usize> = (0..n).map(|j| rows_to(r, j)).collect();
    let recv_rows: Vec<usize> = (0..n).map(|j| rows_to(j, r)).collect();
    let x = b.upload(&send, &[send.len() / 2, 2], DType::F32).map_err(be)?;
    let y = c.all_to_all_v(&x, &send_rows, &recv_rows).map_err(e)?;
    let mut want = Vec::new();
    for j in 0..n {
        for k in 0..rows_to(j, r) * 2 {
            want.push((1000 * j + 10 * r + k) as f32);
        }
    }
    ensure(y.shape() == [want.len() / 2, 2], || format!("all_to_all_v shape {:?}", y.shape()))?;
    ensure(b.download(&y).map_err(be)? == want, || "all_to_all_v values".into())?;

    // The same on i32 tensors.
    let xi: Vec<i32> = send.iter().map(|&v| v as i32).collect();
    let yi = c.all_to_all_v(&b.upload_i32(&xi, &[xi.len() / 2, 2]).map_err(be)?, &send_rows, &recv_rows).map_err(e)?;
    let wi: Vec<i32> = want.iter().map(|&v| v as i32).collect();
    ensure(b.download_i32(&yi).map_err(be)? == wi, || "all_to_all_v i32 values".into())?;

    // all_gather with r + 1 rows of 3 on rank r.
    let mine: Vec<f32> = (0..(r + 1) * 3).map(|k| (100 * r + k) as f32).collect();
    let g = c.all_gather(&b.upload(&mine, &[r + 1, 3], DType::F32).map_err(be)?).map_err(e)?;
    let want: Vec<f32> = (0..n).flat_map(|j| (0..(j + 1) * 3).map(move |k| (100 * j + k) as f32)).collect();
    ensure(g.shape() == [10, 3], || format!("all_gather shape {:?}", g.shape()))?;
    ensure(b.download(&g).map_err(be)? == want, || "all_gather values".into())?;

    // all_reduce_sum: sum over ranks of (r + 0.5 k) = 6 + 2 k.
    let v: Vec<f32> = (0..5).map(|k| r as f32 + 0.5 * k as f32).collect();
    let s = c.all_reduce_sum(&b.upload(&v, &[5], DType::F32).map_err(be)?).map_err(e)?;
    let want: Vec<f32> = (0..5).map(|k| 6.0 + 2.0 * k as f32).collect();
    ensure(b.download(&s).map_err(be)? == want, || "all_reduce_sum values".into())?;

    // Ring: send to r + 1, receive from r - 1.
    let (to, from) = ((r + 1) % n, (r + n - 1) % n);
    let v: Vec<f32> = (0..6).map(|k| (10 * r + k) as f32).collect(); // exact in bf16
    let p = c.sendrecv_start(&b.upload(&v, &[2, 3], DType::Bf16).map_err(be)?, to, from).map_err(e)?;
    let got = p.wait().map_err(e)?;
    let want: Vec<f32> = (0..6).map(|k| (10 * from + k) as f32).collect();
    ensure(got.shape() == [2, 3] && got.dtype() == DType::Bf16, || format!("sendrecv {got:?}"))?;
    ensure(b.download(&got).map_err(be)? == want, || "sendrecv values".into())?;

    // Counts: element j goes to rank j.
    let counts: Vec<usize> = (0..n).map(|j| 10 * r + j).collect();
    let got = c.all_to_all_counts(&counts).map_err(e)?;
    ensure(got == (0..n).map(|j| 10 * j + r).collect::<Vec<_>>(), || format!("all_to_all_counts {got:?}"))?;

    // gather_bytes: r + 1 bytes of value r.
    let got = c.gather_bytes(&vec![r as u8; r + 1]).map_err(e)?;
    if r == 0 {
        let want: Vec<Vec<u8>> = (0..n).map(|j| vec![j as u8; j + 1]).collect();
        ensure(got.as_ref() == Some(&want), || format!("gather_bytes {got:?}"))?;
    } else {
        ensure(got.is_none(), || "gather_bytes gave a non-root rank data".into())?;
    }

    // broadcast_bytes: a 128-byte id from rank 0 (as NCCL's unique id).
    let id: Vec<u8> = (0..128).map(|k| (k * 7 + 3) as u8).collect();
    let mine = if r == 0 { id.clone() } else { vec![0xEE; 5] };
    ensure(c.broadcast_bytes(&mine).map_err(e)? == id, || "broadcast_bytes".into())?;

    // Sub-communicators. Separate: tp 1 x cp 2 x ep 2 x dp 1, CP groups {0,1},{2,3}, EP {0,2},{1,3}.
    // Folded: tp 1 x cp 2 x dp 2 with ep 4 over all ranks.
    let layouts = [ParallelDims::new(1, 2, 2, 1), ParallelDims::folded(1, 2, 4, 2)];
    let host: std::sync::Arc<dyn Backend> = std::sync::Arc::new(CpuBackend::new());
    for dims in layouts {
        let groups = Groups::split(c.as_ref(), &dims, &host).map_err(|x| x.to_string())?;
        for (dim, sub) in [(Dim::Cp, &groups.cp), (Dim::Ep, &groups.ep), (Dim::Dp, &groups.dp)] {
            let group = dims.group(r, dim);
            ensure(sub.size() == group.len() && sub.rank() == dims.coords(r).get(dim), || {
                format!("{dims:?} {dim:?}: sub rank {} of {}", sub.rank(), sub.size())
            })?;
            let ids = sub.all_gather(&b.upload(&[r as f32], &[1], DType::F32).map_err(be)?).map_err(e)?;
            let want: Vec<f32> = group.iter().map(|&g| g as f32).collect();
            ensure(b.download(&ids).map_err(be)? == want, || format!("{dims:?} {dim:?} group members"))?;
        }
    }

    // Comm::split follows MPI_Comm_split: color r % 2, key 10 - r reverses each pair.
    let sub = c.split(r % 2, 10 - r).map_err(e)?;
    ensure(sub.rank() == 1 - r / 2 && sub.size() == 2, || format!("split: rank {} of {}", sub.rank(), sub.size()))?;
    let ids = sub.all_gather(&b.upload(&[r as f32], &[1], DType::F32).map_err(be)?).map_err(e)?;
    let want = if r % 2 == 0 { [2.0, 0.0] } else { [3.0, 1.0] };
    ensure(b.download(&ids).map_err(be)? == want, || "split members".into())?;

    // Count blocks of 2: block j of rank r is (100 r + 10 j, 100 r + 10 j + 1).
    let counts: Vec<usize> = (0..n).flat_map(|j| [100 * r + 10 * j, 100 * r + 10 * j + 1]).collect();
    let got = c.all_to_all_count_blocks(&counts, 2).map_err(e)?;
    let want: Vec<usize> = (0..n).flat_map(|j| [100 * j + 10 * r, 100 * j + 10 * r + 1]).collect();
    ensure(got == want, || format!("all_to_all_count_blocks {got:?}"))?;

    // Bad arguments are errors, not hangs: every rank passes the same wrong count.
    ensure(c.all_to_all_counts(&[1, 2]).is_err(), || "3 counts accepted for 4 ranks".into())?;
    c.barrier().map_err(e)?;
    Ok(())
}
