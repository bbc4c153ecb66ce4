//! `rwm-dist topo ...` on its own, until the binary's CLI carries it:
//! `cargo run --example topo -- show --topology topology/dgx-h100-x3.toml --world 24 --cp 4 --ep 8`.

use clap::Parser;
use rwm_dist::app::topo::run;
use rwm_dist::cli::TopoCommand;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: TopoCommand,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args.cmd, &mut std::io::stdout().lock()) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}
