//! Topology files, the `nvidia-smi topo -m` reader, discovery through a stand-in
//! nvidia-smi, placement and its cost, and `topo show`.

use rwm_dist::topology::{Error, LinkKind, Topology};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
fn shipped(name: &str) -> Topology {
    Topology::load(root().join("topology").join(name)).unwrap_or_else(|e| panic!("{e}"))
}
fn fixture(name: &str) -> String {
    std::fs::read_to_string(root().join("tests/fixtures/topology").join(name)).unwrap()
}

mod schema {
    use super::*;

    #[test]
    fn every_shipped_file_loads_and_round_trips() {
        let mut n = 0;
        for e in std::fs::read_dir(root().join("topology")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let t = Topology::load(&p).unwrap_or_else(|e| panic!("{e}"));
                let back = Topology::parse(&t.to_toml(), "written").unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert_eq!(back, t, "{}", p.display());
                n += 1;
            }
        }
        assert!(n >= 4, "expected the four shipped files, found {n}");
    }

    #[test]
    fn nvl72_is_one_domain_across_18_trays() {
        let t = shipped("gb200-nvl72.toml");
        assert_eq!((t.nodes, t.gpus_per_node, t.gpu_count()), (18, 4, 72));
        assert_eq!(t.domains.len(), 1);
        assert_eq!(t.domains[0].gpus, (0..72).collect::<Vec<_>>());
        assert_eq!((t.node_of(71), t.local_of(71), t.node_of(5), t.local_of(5)), (17, 3, 1, 1));
        assert_eq!(t.link(0, 71), LinkKind::NvLink);
        assert_eq!(t.bandwidth_gb_per_s(0, 71), 900.0);
        assert_eq!(t.network_gb_per_s, Some(50.0));
    }

    #[test]
    fn dgx_x3_has_a_domain_per_node_and_network_between() {
        let t = shipped("dgx-h100-x3.toml");
        assert_eq!(t.gpu_count(), 24);
        assert_eq!(t.domains.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["node0", "node1", "node2"]);
        assert_eq!((t.domain_of(7), t.domain_of(8), t.domain_of(23)), (0, 1, 2));
        assert_eq!(t.link(0, 7), LinkKind::NvLink);
        assert_eq!(t.link(7, 8), LinkKind::Network);
        assert_eq!(t.bandwidth_gb_per_s(0, 7), 450.0);
        assert_eq!(t.bandwidth_gb_per_s(0, 8), 50.0);
        let one = shipped("dgx-h100.toml");
        assert_eq!((one.gpu_count(), one.domains.len(), one.nvlink_gb_per_s), (8, 1, Some(450.0)));
        let single = shipped("single-gpu.toml");
        assert_eq!(single.gpu_count(), 1);
        assert_eq!(single.link(0, 0), LinkKind::SameGpu);
        assert!(single.bandwidth_gb_per_s(0, 0).is_infinite());
    }

    const GOOD: &str = r#"name = "t"
nodes = 2
gpus_per_node = 2
gpus = 4

[gpu]
model = "m"
memory_gb = 80
nvlink_gb_per_s = 450
network_gb_per_s = 50

[[nvlink_domain]]
name = "a"
gpus = [0, 1]

[[nvlink_domain]]
name = "b"
gpus = ["2-3"]
"#;

    fn parse_err(text: &str) -> String {
        match Topology::parse(text, "bad.toml") {
            Ok(t) => panic!("accepted: {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_base_parses() {
        let t = Topology::parse(GOOD, "good.toml").unwrap();
        assert_eq!(t.domains[1].gpus, vec![2, 3]);
        assert_eq!(t.link(1, 2), LinkKind::Network);
    }

    #[test]
    fn syntax_errors_give_file_line_and_column() {
        let e = parse_err(&GOOD.replace("model = \"m\"", "model = \"m"));
        assert!(e.starts_with("bad.toml:7:"), "{e}");
        let e = parse_err(&GOOD.replace("nodes = 2", "nodes = \"two\""));
        assert!(e.starts_with("bad.toml:2:"), "{e}");
        let e = parse_err(&GOOD.replace("nvlink_gb_per_s", "nvlink_gbps"));
        assert!(e.starts_with("bad.toml:9:") && e.contains("nvlink_gbps"), "{e}");
    }

    #[test]
    fn gpu_total_mismatch_names_both_factors() {
        let e = parse_err(&GOOD.replace("gpus = 4", "gpus = 5"));
        assert_eq!(e, "bad.toml:4: field `gpus`: 5 but nodes 2 x gpus_per_node 2 = 4");
    }

    #[test]
    fn gpu_listed_twice_in_a_domain_points_at_the_repeat() {
        let text = GOOD.replace("gpus = [0, 1]", "gpus = [\n  0,\n  1,\n  1,\n]");
        let e = parse_err(&text);
        assert_eq!(e, "bad.toml:17: field `nvlink_domain[0]`: GPU 1 is listed twice (first at line 16)");
    }

    #[test]
    fn gpu_in_two_domains_names_both() {
        let e = parse_err(&GOOD.replace("gpus = [\"2-3\"]", "gpus = [\"1-3\"]"));
        assert_eq!(e, "bad.toml:18: field `nvlink_domain[1]`: GPU 1 is already in nvlink_domain[0] (line 14)");
    }

    #[test]
    fn gpu_in_no_domain() {
        let e = parse_err(&GOOD.replace("gpus = [\"2-3\"]", "gpus = [2]"));
        assert!(e.starts_with("bad.toml: field `nvlink_domain`: GPU 3 (node 1, local GPU 1) is in no"), "{e}");
    }

    #[test]
    fn zero_bandwidth_names_field_and_line() {
        let e = parse_err(&GOOD.replace("nvlink_gb_per_s = 450", "nvlink_gb_per_s = 0"));
        assert_eq!(e, "bad.toml:9: field `gpu.nvlink_gb_per_s`: must be a positive GB/s value, got 0");
        let e = parse_err(&GOOD.replace("memory_gb = 80", "memory_gb = -1"));
        assert_eq!(e, "bad.toml:8: field `gpu.memory_gb`: must be a positive GB value, got -1");
    }

    #[test]
    fn bandwidths_required_by_the_links_in_use() {
        let e = parse_err(&GOOD.replace("nvlink_gb_per_s = 450\n", ""));
        assert!(e.contains("field `gpu.nvlink_gb_per_s`: missing: NVLink domain \"a\" links 2 GPUs"), "{e}");
        let e = parse_err(&GOOD.replace("network_gb_per_s = 50\n", ""));
        assert!(e.contains("`gpu.network_gb_per_s`: missing: GPUs 0 and 2 are on different nodes"), "{e}");
        // One node in two domains needs PCIe.
        let one_node = GOOD.replace("nodes = 2\ngpus_per_node = 2", "nodes = 1\ngpus_per_node = 4");
        let e = parse_err(&one_node);
        assert!(e.contains("`gpu.pcie_gb_per_s`: missing: GPUs 0 and 2 share a node"), "{e}");
        let ok = one_node.replace("[gpu]\n", "[gpu]\npcie_gb_per_s = 32\n");
        assert_eq!(Topology::parse(&ok, "ok.toml").unwrap().bandwidth_gb_per_s(1, 2), 32.0);
    }

    #[test]
    fn bad_indices_and_ranges() {
        let e = parse_err(&GOOD.replace("gpus = [\"2-3\"]", "gpus = [\"2-4\"]"));
        assert_eq!(e, "bad.toml:18: field `nvlink_domain[1].gpus`: GPU 4 out of range: valid GPUs are 0..=3");
        let e = parse_err(&GOOD.replace("gpus = [\"2-3\"]", "gpus = [\"3-2\"]"));
        assert!(e.contains("range \"3-2\" runs backwards"), "{e}");
        let e = parse_err(&GOOD.replace("gpus = [\"2-3\"]", "gpus = [\"two\"]"));
        assert!(e.contains("\"two\" is not a GPU index"), "{e}");
        let e = parse_err(&GOOD.replace("gpus = [\"2-3\"]", "nodes = [2]"));
        assert_eq!(e, "bad.toml:18: field `nvlink_domain[1].nodes`: node 2 out of range: valid nodes are 0..=1");
        let e = parse_err(&GOOD.replace("gpus = [\"2-3\"]", "gpus = [\"2-3\"]\nnodes = [1]"));
        assert!(e.contains("give exactly one of `gpus` or `nodes`"), "{e}");
        let e = parse_err(&GOOD.replace("name = \"b\"", "name = \"a\""));
        assert_eq!(e, "bad.toml:17: field `nvlink_domain[1].name`: name \"a\" already used by nvlink_domain[0]");
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Topology::load("/nonexistent/x.toml").unwrap_err();
        assert!(matches!(e, Error::Io { .. }) && e.to_string().starts_with("/nonexistent/x.toml: "), "{e}");
    }
}

mod nvsmi {
    use super::*;
    use rwm_dist::topology::nvsmi::{self, Conn, Options};

    #[test]
    fn dgx_h100_matrix() {
        let m = nvsmi::parse(&fixture("dgx-h100-8gpu.txt")).unwrap();
        assert_eq!(m.gpu_columns().len(), 8);
        assert_eq!(m.nic_count(), 12);
        let col = |n: &str| m.columns.iter().position(|c| c == n).unwrap();
        assert_eq!(m.conn(col("GPU0"), col("GPU5")), Conn::NvLink(18));
        assert_eq!(m.conn(col("GPU0"), col("NIC0")), Conn::Pxb);
        assert_eq!(m.conn(col("GPU0"), col("NIC6")), Conn::Sys);
        assert_eq!(m.conn(col("NIC1"), col("NIC2")), Conn::Pix);
        assert_eq!(m.nic_names.last(), Some(&("NIC11".to_string(), "mlx5_11".to_string())));
        let g4 = m.row("GPU4").unwrap();
        assert_eq!((g4.cpu_affinity.as_deref(), g4.numa_affinity.as_deref()), (Some("56-111,168-223"), Some("1")));
        // Through NVSwitch each peer shows the GPU's own 18 links, not 7 x 18.
        assert_eq!(nvsmi::links_per_gpu(&m), vec![18; 8]);
        let opts = Options {
            name: "dgx".into(),
            gpu_model: "NVIDIA H100 80GB HBM3".into(),
            memory_gb: 80.0,
            ..Default::default()
        };
        let t = nvsmi::to_topology(&m, &opts).unwrap();
        assert_eq!(t.domains.len(), 1);
        // 18 links x 25 GB/s: the NVLink figure in the hand-written dgx-h100.toml.
        assert_eq!(t.nvlink_gb_per_s, shipped("dgx-h100.toml").nvlink_gb_per_s);
        assert_eq!(t.pcie_gb_per_s, None);
        assert_eq!(Topology::parse(&t.to_toml(), "w").unwrap(), t);
    }

    #[test]
    fn two_gpu_pcie_machine_has_a_domain_per_gpu() {
        let m = nvsmi::parse(&fixture("pcie-2gpu.txt")).unwrap();
        assert_eq!(m.columns, ["GPU0", "GPU1", "NIC0"]);
        assert_eq!(m.conn(0, 1), Conn::Sys);
        assert_eq!(m.conn(0, 2), Conn::Phb);
        assert_eq!(m.row("GPU1").unwrap().numa_affinity.as_deref(), Some("1"));
        let t = nvsmi::to_topology(&m, &Options::default()).unwrap();
        assert_eq!(t.domains.iter().map(|d| d.gpus.clone()).collect::<Vec<_>>(), vec![vec![0], vec![1]]);
        assert_eq!((t.nvlink_gb_per_s, t.pcie_gb_per_s), (None, Some(32.0)));
        assert_eq!(t.link(0, 1), LinkKind::Pcie);
        assert_eq!(Topology::parse(&t.to_toml(), "w").unwrap(), t);
    }

    #[test]
    fn bridged_pairs_become_two_domains() {
        let m = nvsmi::parse(&fixture("a100-pcie-4gpu-bridged.txt")).unwrap();
        assert_eq!(nvsmi::links_per_gpu(&m), vec![12; 4]);
        let t = nvsmi::to_topology(&m, &Options::default()).unwrap();
        assert_eq!(t.domains.iter().map(|d| d.gpus.clone()).collect::<Vec<_>>(), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(t.nvlink_gb_per_s, Some(12.0 * 25.0));
        assert_eq!((t.link(0, 1), t.link(1, 2)), (LinkKind::NvLink, LinkKind::Pcie));
    }

    #[test]
    fn captured_single_h100() {
        let m = nvsmi::parse(&fixture("h100-1gpu-vm.txt")).unwrap();
        assert_eq!(m.columns, ["GPU0"]);
        let r = m.row("GPU0").unwrap();
        assert_eq!((r.cpu_affinity.as_deref(), r.numa_affinity.as_deref()), (Some("0-15"), Some("0")));
        let t = nvsmi::to_topology(&m, &Options::default()).unwrap();
        assert_eq!((t.gpu_count(), t.domains.len(), t.nvlink_gb_per_s), (1, 1, None));
    }

    #[test]
    fn malformed_matrices_name_the_line() {
        let good = fixture("pcie-2gpu.txt");
        let e = nvsmi::parse(&good.replace("GPU1\tSYS\t X ", "GPU1\tNVX\t X ")).unwrap_err().to_string();
        assert_eq!(
            e,
            "nvidia-smi topo -m output, line 3: unknown link \"NVX\" between GPU1 and GPU0 \
             (expected X, NV<n>, PIX, PXB, PHB, NODE or SYS)"
        );
        let e = nvsmi::parse(&good.replace("GPU1\tSYS\t X ", "GPU1\tNV4\t X ")).unwrap_err().to_string();
        assert!(e.contains("GPU0 to GPU1 is Sys but GPU1 to GPU0 is NvLink(4)"), "{e}");
        let no_row: String = good.lines().filter(|l| !l.starts_with("GPU1")).map(|l| format!("{l}\n")).collect();
        let e = nvsmi::parse(&no_row).unwrap_err().to_string();
        assert!(e.contains("no row for column GPU1"), "{e}");
        let e = nvsmi::parse("NVIDIA-SMI has failed\n").unwrap_err().to_string();
        assert!(e.contains("no header line starting with GPU0"), "{e}");
    }
}

mod discover {
    use super::*;
    use rwm_dist::topology::discover::{DiscoverOptions, Source, discover};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Mutex, MutexGuard};

    /// Tests here write scripts and then run them. A child forked by a parallel test while a
    /// script is still open for writing keeps it open, and running it fails with "Text
    /// file busy"; so these tests take turns.
    static SPAWN: Mutex<()> = Mutex::new(());
    fn turn() -> MutexGuard<'static, ()> {
        SPAWN.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stand-in nvidia-smi that prints a fixture for `topo -m` and a CSV line for the query.
    fn fake_smi(dir: &Path, matrix: &str, query: &str) -> PathBuf {
        let m = dir.join("matrix.txt");
        std::fs::write(&m, fixture(matrix)).unwrap();
        let p = dir.join("nvidia-smi");
        let script =
            format!("#!/bin/sh\nif [ \"$1\" = topo ]; then cat '{}'; else printf '%s\\n' '{query}'; fi\n", m.display());
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn falls_back_to_nvidia_smi() {
        let _turn = turn();
        let dir = tempfile::tempdir().unwrap();
        let smi = fake_smi(dir.path(), "pcie-2gpu.txt", "NVIDIA RTX A6000, 49140, 4, 16");
        let opts = DiscoverOptions {
            name: Some("ws".into()),
            network_gb_per_s: Some(12.5),
            use_nvml: false,
            nvidia_smi: smi,
            ..Default::default()
        };
        let (t, src) = discover(&opts).unwrap();
        assert_eq!(src, Source::NvidiaSmi);
        assert_eq!((t.name.as_str(), t.gpu_model.as_str(), t.gpu_count()), ("ws", "NVIDIA RTX A6000", 2));
        // 49140 MiB = 51.53 GB; Gen4 x16 = 16 x 1.969 GB/s.
        assert_eq!(t.memory_gb, 51.5);
        assert_eq!(t.pcie_gb_per_s, Some(31.5));
        assert_eq!(t.network_gb_per_s, Some(12.5));
    }

    #[test]
    fn nothing_found_is_a_clear_error() {
        let _turn = turn();
        let opts =
            DiscoverOptions { use_nvml: false, nvidia_smi: "/nonexistent/nvidia-smi".into(), ..Default::default() };
        let e = discover(&opts).unwrap_err().to_string();
        assert!(e.starts_with("topology discovery failed: no GPU information on this machine"), "{e}");
        assert!(e.contains("/nonexistent/nvidia-smi: cannot run"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let smi = dir.path().join("nvidia-smi");
        std::fs::write(&smi, "#!/bin/sh\necho 'NVIDIA-SMI has failed because it couldn'\"'\"'t communicate with the NVIDIA driver' >&2\nexit 9\n").unwrap();
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = discover(&DiscoverOptions { use_nvml: false, nvidia_smi: smi, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("couldn't communicate with the NVIDIA driver"), "{e}");
    }

    #[test]
    fn nvml_absent_or_present_never_panics() {
        let _turn = turn();
        let opts = DiscoverOptions { nvidia_smi: "/nonexistent/nvidia-smi".into(), ..Default::default() };
        match discover(&opts) {
            Ok((t, src)) => assert!(src == Source::Nvml && t.gpu_count() > 0),
            Err(e) => assert!(e.to_string().contains("NVML: "), "{e}"),
        }
    }

    #[test]
    fn discover_command_writes_a_loadable_file() {
        let _turn = turn();
        let dir = tempfile::tempdir().unwrap();
        let smi = fake_smi(dir.path(), "dgx-h100-8gpu.txt", "NVIDIA H100 80GB HBM3, 81559, 5, 16");
        let out = dir.path().join("mine.toml");
        let cmd = rwm_dist::cli::TopoCommand::Discover(rwm_dist::cli::DiscoverArgs {
            output: Some(out.clone()),
            name: Some("dgx".into()),
            network_gb_per_s: Some(50.0),
            nvlink_gb_per_link: None,
            no_nvml: true,
            nvidia_smi: smi,
        });
        let mut msg = Vec::new();
        rwm_dist::app::topo::run(&cmd, &mut msg).unwrap();
        let msg = String::from_utf8(msg).unwrap();
        assert!(msg.contains("8 GPU(s) NVIDIA H100 80GB HBM3, 1 NVLink domain(s)"), "{msg}");
        let t = Topology::load(&out).unwrap();
        assert_eq!((t.gpu_count(), t.nvlink_gb_per_s, t.memory_gb), (8, Some(450.0), 85.5));
    }
}

mod placement {
    use super::*;
    use rwm_dist::layout::{Dim, EpLayout, ParallelDims};
    use rwm_dist::topology::{GroupBytes, cost, place, round_robin};

    fn dims(tp: usize, cp: usize, ep: usize, dp: usize) -> ParallelDims {
        ParallelDims::new(tp, cp, ep, dp)
    }

    #[test]
    fn validate_names_each_factor() {
        let e = dims(1, 4, 8, 1).validate(24).unwrap_err().to_string();
        assert_eq!(e, "layout: world size 24 != tp 1 x cp 4 x ep 8 x dp 1 = 32");
        let e = dims(1, 1, 6, 1).check_experts(64, "--experts").unwrap_err().to_string();
        assert!(e.starts_with("layout: ep 6 must divide --experts = 64"), "{e}");
        assert!(dims(1, 1, 8, 1).validate(8).is_ok() && dims(1, 1, 8, 1).check_experts(64, "e").is_ok());
        assert_eq!(dims(0, 1, 1, 1).validate(0).unwrap_err().to_string(), "layout: tp must be at least 1, got 0");
        let e = ParallelDims::infer_dp(24, 1, 4, 8, EpLayout::Separate).unwrap_err().to_string();
        assert_eq!(e, "layout: world size 24 is not a multiple of tp 1 x cp 4 x ep 8 = 32, so no dp fits");
        assert_eq!(ParallelDims::infer_dp(24, 2, 2, 2, EpLayout::Separate).unwrap(), dims(2, 2, 2, 3));
        // Folded, EP reuses the CP x DP ranks: 24 = tp 1 x cp 4 x dp 6 and ep 8 divides 4 x 6.
        let f = ParallelDims::infer_dp(24, 1, 4, 8, EpLayout::Folded).unwrap();
        assert_eq!(f, ParallelDims::folded(1, 4, 8, 6));
        assert!(f.validate(24).is_ok());
        let e = ParallelDims::folded(1, 4, 16, 6).validate(24).unwrap_err().to_string();
        assert_eq!(e, "layout: ep 16 must divide cp 4 x dp 6 = 24: folded EP groups are formed from those ranks");
        let e = ParallelDims::folded(1, 4, 8, 6).validate(32).unwrap_err().to_string();
        assert_eq!(e, "layout: world size 32 != tp 1 x cp 4 x dp 6, ep 8 folded over cp x dp = 24");
    }

    #[test]
    fn world_must_fit_the_topology() {
        let t = shipped("dgx-h100-x3.toml");
        let e = place(&t, 32, dims(1, 4, 8, 1)).unwrap_err().to_string();
        assert_eq!(e, "world size 32 does not fit topology \"dgx-h100-x3\": it has 24 GPUs (3 nodes x 8 GPUs)");
    }

    fn assert_distinct_gpus(p: &rwm_dist::topology::Placement) {
        let mut g: Vec<usize> = p.slots.iter().map(|s| s.gpu).collect();
        g.sort_unstable();
        g.dedup();
        assert_eq!(g.len(), p.slots.len(), "two ranks share a GPU: {p:?}");
    }

    #[test]
    fn nvl72_with_24_ranks_uses_six_whole_trays() {
        let t = shipped("gb200-nvl72.toml");
        let p = place(&t, 24, dims(1, 4, 6, 1)).unwrap();
        assert_distinct_gpus(&p);
        assert_eq!(p.nodes_used(), (0..6).collect::<Vec<_>>());
        for dim in Dim::ALL {
            let (inside, n) = p.groups_in_domain(dim);
            assert_eq!(inside, n, "{dim:?}");
        }
        let c = cost(&t, &p, &GroupBytes::uniform(1e9));
        assert_eq!(c.network_bytes, 0.0);
        // cp: 24 ranks x 1 GB; ep: 24 ranks x 1 GB, all over NVLink.
        assert_eq!(c.nvlink_bytes, 48e9);
        assert!((c.time_s - 2.0 * 1e9 / 900e9).abs() < 1e-12, "{}", c.time_s);
    }

    #[test]
    fn nvl72_with_72_ranks() {
        let t = shipped("gb200-nvl72.toml");
        let p = place(&t, 72, dims(4, 2, 9, 1)).unwrap();
        assert_distinct_gpus(&p);
        assert_eq!(p.nodes_used().len(), 18);
        // TP groups of 4 are exactly one tray each.
        for g in p.dims.groups(Dim::Tp) {
            assert!(g.iter().all(|&r| p.slots[r].node == p.slots[g[0]].node), "{g:?}");
        }
        assert_eq!(cost(&t, &p, &GroupBytes::uniform(1e9)).network_bytes, 0.0);
    }

    #[test]
    fn dgx_x3_tp8_keeps_each_tp_group_in_a_node() {
        let t = shipped("dgx-h100-x3.toml");
        let p = place(&t, 24, dims(8, 1, 1, 3)).unwrap();
        assert_distinct_gpus(&p);
        for (r, s) in p.slots.iter().enumerate() {
            assert_eq!((s.node, s.local_gpu), (r / 8, r % 8));
        }
        let b = GroupBytes::uniform(1e9);
        let ours = cost(&t, &p, &b);
        let naive = cost(&t, &round_robin(&t, 24, p.dims).unwrap(), &b);
        assert_eq!(p.groups_in_domain(Dim::Tp), (3, 3));
        assert!(ours.time_s < naive.time_s, "{} vs {}", ours.time_s, naive.time_s);
        assert!(ours.network_bytes < naive.network_bytes);
    }

    #[test]
    fn dgx_x3_cp4_ep6_hand_worked_cost() {
        let t = shipped("dgx-h100-x3.toml");
        let p = place(&t, 24, dims(1, 4, 6, 1)).unwrap();
        assert_distinct_gpus(&p);
        // CP groups (4 consecutive ranks) stay in a node; EP groups of 6 must span all three.
        assert_eq!(p.groups_in_domain(Dim::Cp), (6, 6));
        assert_eq!(p.groups_in_domain(Dim::Ep), (0, 4));
        // Blocks of 4 fill node 0, then 1, then 2: EP group e-th member (rank cp + 4e) is on node e / 2.
        for r in 0..24 {
            assert_eq!(p.slots[r].node, r / 8, "rank {r}");
        }
        let c = cost(&t, &p, &GroupBytes::uniform(1e9));
        // CP: each of 24 ranks sends 1 GB to 3 peers on its node.
        assert_eq!(c.per_dim[1].nvlink_bytes, 24e9);
        // EP: each rank sends 0.2 GB to each of 5 peers, one on its node and four elsewhere.
        assert!((c.per_dim[2].nvlink_bytes - 24.0 * 0.2e9).abs() < 1.0);
        assert!((c.per_dim[2].network_bytes - 24.0 * 0.8e9).abs() < 1.0);
        let expect = 1e9 / 450e9 + 0.8e9 / 50e9;
        assert!((c.time_s - expect).abs() < 1e-12, "{} vs {expect}", c.time_s);
        let naive = cost(&t, &round_robin(&t, 24, p.dims).unwrap(), &GroupBytes::uniform(1e9));
        assert!(c.time_s < naive.time_s && c.network_bytes < naive.network_bytes);
    }

    #[test]
    fn inner_blocks_stay_in_domains_whenever_they_fit() {
        // Every factorisation of 24 on dgx-h100-x3: a group whose block fits in 8 GPUs stays in a node.
        let t = shipped("dgx-h100-x3.toml");
        let divisors = [1, 2, 3, 4, 6, 8, 12, 24];
        for tp in divisors {
            for cp in divisors {
                for ep in divisors {
                    let Ok(d) = ParallelDims::infer_dp(24, tp, cp, ep, EpLayout::Separate) else { continue };
                    let p = place(&t, 24, d).unwrap();
                    assert_distinct_gpus(&p);
                    for (dim, block) in [(Dim::Tp, tp), (Dim::Cp, tp * cp), (Dim::Ep, tp * cp * ep)] {
                        if 8 % block == 0 {
                            let (inside, n) = p.groups_in_domain(dim);
                            assert_eq!(inside, n, "{d:?} {dim:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn folded_ep_blocks_stay_in_domains_when_they_nest() {
        let t = shipped("dgx-h100-x3.toml");
        let divisors = [1, 2, 3, 4, 6, 8, 12, 24];
        for tp in divisors {
            for cp in divisors {
                for ep in divisors {
                    let Ok(d) = ParallelDims::infer_dp(24, tp, cp, ep, EpLayout::Folded) else { continue };
                    if d.validate(24).is_err() {
                        continue;
                    }
                    let p = place(&t, 24, d).unwrap();
                    assert_distinct_gpus(&p);
                    let nests = cp % ep == 0 || ep % cp == 0;
                    for (dim, block, must) in [(Dim::Tp, tp, true), (Dim::Cp, tp * cp, true), (Dim::Ep, tp * ep, nests)]
                    {
                        if must && 8 % block == 0 {
                            let (inside, n) = p.groups_in_domain(dim);
                            assert_eq!(inside, n, "{d:?} {dim:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn dgx_x3_folded_cp4_ep8_hand_worked_cost() {
        let t = shipped("dgx-h100-x3.toml");
        let d = ParallelDims::folded(1, 4, 8, 6);
        let p = place(&t, 24, d).unwrap();
        // EP blocks of 8 are whole nodes, each holding two CP groups of 4.
        for r in 0..24 {
            assert_eq!((p.slots[r].node, p.slots[r].local_gpu), (r / 8, r % 8));
        }
        assert_eq!((p.groups_in_domain(Dim::Cp), p.groups_in_domain(Dim::Ep)), ((6, 6), (3, 3)));
        let c = cost(&t, &p, &GroupBytes::uniform(1e9));
        // CP and EP: 24 ranks x 1 GB each over NVLink. DP groups {1,5,9,13,17,21}: each rank
        // sends 0.2 GB to its one peer on its node and 0.8 GB to four on other nodes.
        assert!((c.nvlink_bytes - (24e9 + 24e9 + 24.0 * 0.2e9)).abs() < 1.0);
        assert!((c.network_bytes - 24.0 * 0.8e9).abs() < 1.0);
        let expect = 2.0 * 1e9 / 450e9 + 0.8e9 / 50e9;
        assert!((c.time_s - expect).abs() < 1e-12, "{} vs {expect}", c.time_s);
        let naive = cost(&t, &round_robin(&t, 24, d).unwrap(), &GroupBytes::uniform(1e9));
        assert!(c.time_s < naive.time_s, "{} vs {}", c.time_s, naive.time_s);
    }

    #[test]
    fn pcie_pair_is_charged_at_pcie_speed() {
        let m = rwm_dist::topology::nvsmi::parse(&fixture("pcie-2gpu.txt")).unwrap();
        let t = rwm_dist::topology::nvsmi::to_topology(&m, &Default::default()).unwrap();
        let p = place(&t, 2, dims(2, 1, 1, 1)).unwrap();
        let c = cost(&t, &p, &GroupBytes { tp: 3.2e9, cp: 0.0, ep: 0.0, dp: 0.0 });
        assert_eq!((c.pcie_bytes, c.nvlink_bytes, c.network_bytes), (6.4e9, 0.0, 0.0));
        assert!((c.time_s - 0.1).abs() < 1e-12);
    }
}

mod show {
    use super::*;
    use rwm_dist::app::topo::run;
    use rwm_dist::cli::{ShowArgs, TopoCommand};
    use rwm_dist::layout::{EpLayout, LayoutArgs};

    fn args(world: usize, cp: usize, ep: usize, dp: Option<usize>, ep_layout: EpLayout) -> TopoCommand {
        TopoCommand::Show(ShowArgs {
            topology: root().join("topology/dgx-h100-x3.toml"),
            world: Some(world),
            layout: LayoutArgs { tp: 1, cp, ep, dp, ep_layout },
            experts: None,
            tp_bytes: 1e9,
            cp_bytes: 1e9,
            ep_bytes: 1e9,
            dp_bytes: 1e9,
        })
    }

    fn show(cmd: TopoCommand) -> String {
        let mut out = Vec::new();
        run(&cmd, &mut out).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn folded_world_24_cp4_ep8() {
        let s = show(args(24, 4, 8, None, EpLayout::Folded));
        assert!(
            s.contains("world 24 = tp 1 x cp 4 x dp 6, ep 8 folded over cp x dp on dgx-h100-x3 (nodes 0-2)"),
            "{s}"
        );
        // rank 13: cp 13 % 4 = 1, ep 13 % 8 = 5, dp 13 / 4 = 3; node 1, GPU 5.
        assert!(s.contains("\n   13     1    5    0    1    5    3  node1\n"), "{s}");
        assert!(s.contains("groups inside one NVLink domain: tp 24/24, cp 6/6, ep 3/3, dp 0/4"), "{s}");
        assert!(s.contains("naive round-robin over nodes:"), "{s}");
        assert_eq!(s.lines().filter(|l| l.ends_with("node2")).count(), 8);
    }

    #[test]
    fn separate_world_24_cp4_ep6() {
        let s = show(args(24, 4, 6, None, EpLayout::Separate));
        assert!(s.contains("world 24 = tp 1 x cp 4 x ep 6 x dp 1 on dgx-h100-x3 (nodes 0-2)"), "{s}");
        // rank 13: cp 13 % 4 = 1, ep 13 / 4 = 3; node 1, GPU 5.
        assert!(s.contains("\n   13     1    5    0    1    3    0  node1\n"), "{s}");
        assert!(s.contains("groups inside one NVLink domain: tp 24/24, cp 6/6, ep 0/4, dp 24/24"), "{s}");
    }

    #[test]
    fn impossible_layouts_name_the_factors() {
        let err = |cmd| run(&cmd, &mut Vec::new()).unwrap_err().to_string();
        let e = err(args(24, 4, 8, None, EpLayout::Separate));
        assert_eq!(e, "layout: world size 24 is not a multiple of tp 1 x cp 4 x ep 8 = 32, so no dp fits");
        let e = err(args(24, 4, 8, Some(1), EpLayout::Separate));
        assert_eq!(e, "layout: world size 24 != tp 1 x cp 4 x ep 8 x dp 1 = 32");
        let e = err(args(24, 4, 16, None, EpLayout::Folded));
        assert_eq!(e, "layout: ep 16 must divide cp 4 x dp 6 = 24: folded EP groups are formed from those ranks");
    }
}
