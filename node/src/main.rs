use std::process::ExitCode;

use clap::Parser;

use chorus_node::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => chorus_node::server::serve(args),
    }
}
