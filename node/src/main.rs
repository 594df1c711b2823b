use std::process::ExitCode;

use clap::Parser;

use chorus_node::cli::{Cli, Command};

/// mimalloc instead of glibc malloc: the request path allocates small
/// buffers on every hop, and glibc's allocator was the largest single cost
/// in a profile of the node under load (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => chorus_node::server::serve(args),
        Command::Key { admin, action } => chorus_node::cli::admin::run_key(&admin, &action),
        Command::Team { admin, action } => chorus_node::cli::admin::run_team(&admin, &action),
        Command::Stats(args) => chorus_node::cli::stats::run(&args),
    }
}
