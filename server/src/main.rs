//! `parledger`: the single binary that runs a node and the operator tools.
//! A thin `main`: parse, run, map the result to an exit code.

// A command-line tool: its reports go to standard output by design.
#![allow(clippy::print_stdout)]

mod bench;
mod cli;
mod demo;
mod http;
mod node;
mod tools;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.log_json);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// mimalloc: the executor allocates many small, short-lived buffers from
/// several threads, where glibc's allocator measured 40% of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
