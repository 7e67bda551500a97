//! `parledger`: the single binary that runs a node and the operator tools.
//! A thin `main`: parse, run, map the result to an exit code.

// A command-line tool: its reports go to standard output by design.
#![allow(clippy::print_stdout)]

mod api;
mod backup;
mod bench;
mod bench_http;
mod bench_load;
mod bench_scale;
mod cli;
// Wired in by the Raft runtime (issue 6); until then only `parledger cluster
// certs` and the module's own tests use it.
#[allow(dead_code)]
mod cluster;
mod config;
mod demo;
mod disk;
mod node;
mod sig;
mod tools;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    keep_freed_memory();
    // A configuration file and the environment become arguments first.
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = cli::Cli::parse_from(argv);
    let node_id = match &cli.command {
        cli::Command::Serve(args) => args.cluster.node_id,
        _ => None,
    };
    init_tracing(cli.log_json, node_id);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to standard error: text, or JSON lines (`--log-json`) that carry
/// the node's id (`node_id`, for a cluster node) and the current span's
/// fields (a request's `request_id`).
fn init_tracing(json: bool, node_id: Option<u64>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if json {
        let format = tracing_subscriber::fmt::format()
            .json()
            .with_current_span(true)
            .with_span_list(false);
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(WithNode {
                inner: format,
                node_id,
            })
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
}

/// A JSON event format with `"node_id": N` first on every line.
struct WithNode<F> {
    inner: F,
    node_id: Option<u64>,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithNode<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        match (self.node_id, line.strip_prefix('{')) {
            (Some(id), Some(rest)) => write!(writer, "{{\"node_id\":{id},{rest}"),
            _ => writer.write_str(&line),
        }
    }
}

/// mimalloc: the executor allocates many small, short-lived buffers from
/// several threads, where glibc's allocator measured 40% of the time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the `v3` sources
/// that `libmimalloc-sys` 0.1.49 builds by default).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// By default mimalloc returns freed pages to the OS after 10 ms. A node
/// frees each block's buffers once it is committed and allocates the next
/// block's a few milliseconds later, so the pages came straight back through
/// page faults that zero them: ~10% of the CPU time of `bench exec`
/// (6,600 faults of 2 MiB pages for 400,000 transfers, 358 without purging).
/// Never purging, though, kept every peak resident for good (a hash table's
/// resize, a burst of large requests): a node's resident set grew past
/// 1 GiB under hours of load where ~0.6 GiB was live. Pages unused for a
/// second go back: block-to-block reuse keeps its pages, and one-off peaks
/// are returned. `MIMALLOC_PURGE_DELAY` in the environment still wins.
const PURGE_DELAY_MS: std::ffi::c_long = 1000;

#[allow(unsafe_code)]
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` stores an integer in mimalloc's option table
    // (any non-negative value is a valid delay in ms for this option). It
    // runs first thing in `main`, before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}
