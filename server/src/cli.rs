//! Command-line interface.

use crate::{bench, node, tools};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Parledger: a permissioned ledger for consortia.
#[derive(Debug, Parser)]
#[command(name = "parledger", version, long_about = None)]
pub struct Cli {
    /// Log as JSON lines (for log collectors) instead of text.
    #[arg(long, global = true, env = "PARLEDGER_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. With no configuration: a single embedded node on a local
    /// SQLite data directory, ordering transactions with a local sequencer.
    Serve(Box<node::ServeArgs>),
    /// Recompute every hash and root of a data directory offline and name the
    /// first block, transaction or state row that does not match.
    Verify(VerifyArgs),
    /// Take a consistent backup of a node's ledger while it runs.
    ///
    /// Copies `state.db`, then `chain.db` (so the copied chain is never
    /// behind the copied state), each as one snapshot of the live database
    /// with SQLite's online backup API: the node keeps running and its lock
    /// is not taken. Verifies the copy (the chain from genesis, the state
    /// at its tip) and writes `backup.json` (height, tip hash, state root,
    /// each file's size and SHA-256). Not copied: `raft.db` (a node's Raft
    /// log and votes must never go back in time, so a restored node joins
    /// as a new member) and keys. Prints one line: height, tip hash and
    /// state root. Refuses a non-empty --out.
    Backup(BackupArgs),
    /// Make a new node's data directory from a backup.
    ///
    /// Checks each file's size and SHA-256 against `backup.json` while
    /// copying (nothing is restored if one differs), verifies the chain and
    /// state again, and prints the next steps: start the node with its own
    /// id and `--join`, remove the old node, `parledger cluster add` the
    /// new one; it then copies only the blocks after the backup's height
    /// from a peer. Refuses a data directory that holds `chain.db`,
    /// `state.db` or `raft.db` already.
    Restore(RestoreArgs),
    /// Print a transaction's receipt (transaction, result, block header and
    /// Merkle proof) as JSON, for offline verification.
    Receipt(ReceiptArgs),
    /// Check a receipt file offline: the header hashes to the block hash and
    /// the Merkle proof leads from the transaction to the header's root.
    VerifyReceipt(VerifyReceiptArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Create an Ed25519 key pair for signing transactions: writes the
    /// private key (PKCS#8 PEM, mode 0600) and prints the public key in hex,
    /// to register with `POST /v1/orgs/{org}/users/{name}/keys`.
    Keygen(KeygenArgs),
    /// Sign a transaction request (the JSON body of `POST /v1/transactions`,
    /// with its `id`) as USER of ORG: prints the body with `signature` added.
    Sign(SignArgs),
    /// Print the OpenAPI document of the REST API (the committed
    /// `openapi/openapi.json` is this output).
    Openapi,
    /// Cluster tools.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Configuration files for `parledger serve --config FILE`.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file: report every unknown key, value of the
    /// wrong kind and setting the node would refuse at start; print the
    /// settings with their sources when it is valid. Exit status 1 when not.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print a configuration file with every option of `parledger serve`,
    /// its help, default and environment variable (all commented out).
    Example,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Issue development certificates for the node-to-node transport: a new
    /// CA (`ca.pem`, `ca-key.pem` in --ca-out) and, in --out, `ca.pem` plus
    /// `node-{id}.pem` and `node-{id}-key.pem` for nodes 1..=N, each naming
    /// `node-{id}.parledger`. Refuses to overwrite files. For trying a
    /// cluster out: a consortium issues production certificates from its
    /// own PKI.
    Certs(CertsArgs),
    /// Show each node's role, term, leader, commit and applied index (from
    /// `/v1/cluster/status`; plain HTTP, as on a loopback cluster).
    Status(StatusArgs),
    /// Add a node to the cluster (start it with `--join` first): it joins
    /// as a learner, catches up, then becomes a voter (joint consensus).
    /// Prints the new configuration. Safe to repeat.
    Add(AddMemberArgs),
    /// Remove a node from the cluster (a leader hands over first), then
    /// stop it. Safe to repeat.
    Remove(RemoveMemberArgs),
}

/// Who asks, and where.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// A member node's API address (plain HTTP, as on a loopback cluster).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: std::net::SocketAddr,
    /// An admin, `name@org`.
    #[arg(long, env = "PARLEDGER_ADMIN")]
    pub user: String,
    /// The admin's password.
    #[arg(long, env = "PARLEDGER_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Seconds to wait for the change to be applied (at most 600).
    #[arg(long, default_value_t = 120)]
    pub wait_s: u64,
}

#[derive(Debug, Args)]
pub struct AddMemberArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The new node's id (its cluster certificate names `node-ID.parledger`).
    #[arg(long)]
    pub node_id: u64,
    /// Where the members reach its cluster listener, `HOST:PORT`.
    #[arg(long)]
    pub address: String,
}

#[derive(Debug, Args)]
pub struct RemoveMemberArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// The node to remove.
    #[arg(long)]
    pub node_id: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A node's API address (`127.0.0.1:8080`). Repeatable; every node
    /// named is asked.
    #[arg(long = "addr", default_value = "127.0.0.1:8080")]
    pub addrs: Vec<std::net::SocketAddr>,
    /// Print the nodes' answers as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory for the CA certificate and key (keep the key off the nodes).
    #[arg(long)]
    pub ca_out: PathBuf,
    /// Directory for the nodes' certificates and keys and the CA bundle.
    #[arg(long)]
    pub out: PathBuf,
    /// Nodes to issue, numbered from 1.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The node's data directory.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The node's data directory (the node may be running on it).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Where to write the backup: a new or empty directory.
    #[arg(long)]
    pub out: PathBuf,
    /// The node's id in its cluster, recorded in `backup.json` so the
    /// restore can name the member to remove.
    #[arg(long)]
    pub node_id: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup directory (as written by `parledger backup`).
    #[arg(long)]
    pub from: PathBuf,
    /// The new node's data directory: created if missing; must not hold
    /// `chain.db`, `state.db` or `raft.db`.
    #[arg(long)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReceiptArgs {
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// The transaction id.
    #[arg(long)]
    pub tx: String,
}

#[derive(Debug, Args)]
pub struct VerifyReceiptArgs {
    /// A receipt as printed by `parledger receipt` (`-` for standard input).
    pub file: PathBuf,
    /// The block hash you trust (e.g. from `parledger verify` or another
    /// node); when given, the receipt must name exactly this block.
    #[arg(long)]
    pub block_hash: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key (must not exist).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the public key as PEM here (must not exist): for a
    /// node's `--jwt-trust-key` or `--jwt-trust-dir` (name it `*.pub.pem`).
    /// Ed25519 only.
    #[arg(long)]
    pub public_out: Option<PathBuf>,
    /// `ed25519`, or `ml-dsa-65` for a quantum-resistant transaction
    /// signing key (FIPS 204; register it with `"scheme": "ml-dsa-65"`).
    #[arg(long, default_value = "ed25519", value_parser = ["ed25519", "ml-dsa-65"])]
    pub scheme: String,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key from `parledger keygen`.
    #[arg(long)]
    pub key: PathBuf,
    /// The key id it is registered under.
    #[arg(long)]
    pub kid: String,
    /// The submitting organization.
    #[arg(long)]
    pub org: String,
    /// The submitting user (its name within the organization).
    #[arg(long)]
    pub user: String,
    /// The request body (`-` for standard input).
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Execute a generated finance workload sequentially and in parallel,
    /// check both give the same state root, and print one JSON object.
    Exec(bench::ExecArgs),
    /// Drive nodes over HTTP with a domain workload (closed or open loop,
    /// single transactions or batches, optionally signed), verify a sample
    /// of receipts, and print one JSON object with committed transactions
    /// per second and latency percentiles. Starts its own node (or
    /// cluster) unless --url is given.
    Load(crate::bench_load::LoadArgs),
    /// Puts per second and put latency of an etcd cluster (through its
    /// JSON gateway, `/v3/kv/put`), closed loop: each client keeps one put
    /// outstanding. For comparing Parledger with etcd on one machine
    /// (`deploy/bench-vs-etcd`). Prints one JSON object.
    Etcd(crate::bench_http::EtcdArgs),
    /// A seeded discrete-event model of several Raft groups on several
    /// machines (two-phase commit across groups, slow replicas, hot
    /// groups), calibrated on this machine's measurements; `--sweep` prints
    /// the scaling table of ARCHITECTURE.md. Prints JSON.
    Scale(crate::bench_scale::ScaleArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => node::serve(*args).map(|()| ExitCode::SUCCESS),
        Command::Config(ConfigCommand::Check { file }) => {
            let (ok, report) = crate::config::check(&file);
            print!("{report}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", crate::config::example());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => tools::verify(&args.data_dir, args.json),
        Command::Backup(args) => tools::backup(&args),
        Command::Restore(args) => tools::restore(&args),
        Command::Receipt(args) => tools::receipt(&args.data_dir, &args.tx),
        Command::VerifyReceipt(args) => {
            tools::verify_receipt(&args.file, args.block_hash.as_deref())
        }
        Command::Bench(BenchCommand::Exec(args)) => bench::exec(args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Etcd(args)) => {
            crate::bench_http::etcd(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Scale(args)) => {
            crate::bench_scale::scale(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench(BenchCommand::Load(args)) => {
            crate::bench_load::load(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Keygen(args) => tools::keygen(&args.out, args.public_out.as_deref(), &args.scheme),
        Command::Sign(args) => tools::sign(&args),
        Command::Openapi => {
            use std::io::Write as _;
            // A reader that stops early (`| head`, `| diff -q`) is not an
            // error worth a panic.
            match std::io::stdout().write_all(crate::api::openapi_json().as_bytes()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Cluster(ClusterCommand::Status(args)) => crate::tools::cluster_status(&args),
        Command::Cluster(ClusterCommand::Add(args)) => crate::tools::cluster_change(
            &args.admin,
            "POST",
            "/v1/cluster/members".into(),
            Some(serde_json::json!({
                "node_id": args.node_id,
                "address": args.address,
                "wait_s": args.admin.wait_s,
            })),
        ),
        Command::Cluster(ClusterCommand::Remove(args)) => crate::tools::cluster_change(
            &args.admin,
            "DELETE",
            format!(
                "/v1/cluster/members/{}?wait_s={}",
                args.node_id, args.admin.wait_s
            ),
            None,
        ),
        Command::Cluster(ClusterCommand::Certs(args)) => {
            for path in crate::cluster::certs::write_dev_certs(&args.ca_out, &args.out, args.nodes)?
            {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
