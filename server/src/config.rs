//! Configuration files for `parledger serve`.
//!
//! Every option of `parledger serve` can be given in three places; the
//! first that gives it wins:
//!
//! 1. the command line: `--batch-len-max 5000`;
//! 2. the environment: `PARLEDGER_BATCH_LEN_MAX=5000` (the option's name in
//!    upper case, `-` as `_`, after `PARLEDGER_`; a repeatable option takes
//!    a comma-separated list, a switch `true`/`false`/`1`/`0`);
//! 3. the file named by `--config FILE` (or `PARLEDGER_CONFIG`), TOML:
//!    `batch_len_max = 5000` (the option's name with `_`; a repeatable
//!    option takes an array, a switch a boolean).
//!
//! Otherwise the option's default applies. The options, their help, their
//! defaults and their variables come from the command-line definition
//! itself (clap), so the file, the environment, `--help` and
//! `parledger config example` never disagree. The file and the environment
//! are turned into command-line arguments placed before the real ones, and
//! clap parses and checks everything as usual.
//!
//! `parledger config check FILE` reports every problem of a file at once:
//! unknown keys (with the closest known one), values of the wrong kind,
//! values clap refuses, and what the node would refuse at start (missing
//! certificate files, plain HTTP on a public address, a cluster node
//! listed among its own peers, …).

use crate::cli::Cli;
use crate::node::ServeArgs;
use clap::{ArgAction, CommandFactory, FromArgMatches};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Options of `serve` that the file does not set.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// The variable naming the configuration file (like `--config`).
pub const CONFIG_ENV: &str = "PARLEDGER_CONFIG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A switch: present or not.
    Switch,
    /// One value.
    Value,
    /// Repeatable.
    List,
}

/// One option of `serve`, as the file and the environment name it.
#[derive(Debug, Clone)]
struct Opt {
    long: String,
    /// Its key in the file.
    key: String,
    /// Its environment variable.
    env: String,
    /// Whether clap reads that variable itself.
    clap_env: bool,
    kind: Kind,
    help: String,
    default: Option<String>,
}

fn options() -> Vec<Opt> {
    let cmd = Cli::command();
    let Some(serve) = cmd.find_subcommand("serve") else {
        return Vec::new();
    };
    serve
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            if NOT_IN_FILE.contains(&long.as_str()) || a.is_hide_set() {
                return None;
            }
            let kind = match a.get_action() {
                ArgAction::SetTrue | ArgAction::SetFalse => Kind::Switch,
                ArgAction::Append => Kind::List,
                _ => Kind::Value,
            };
            let key = long.replace('-', "_");
            let clap_env = a.get_env().and_then(|e| e.to_str()).map(str::to_string);
            let env = clap_env
                .clone()
                .unwrap_or_else(|| format!("PARLEDGER_{}", key.to_uppercase()));
            let default = a
                .get_default_values()
                .first()
                .and_then(|d| d.to_str())
                .map(str::to_string);
            Some(Opt {
                long,
                key,
                env,
                clap_env: clap_env.is_some(),
                kind,
                help: a
                    .get_long_help()
                    .or(a.get_help())
                    .map(|h| h.to_string())
                    .unwrap_or_default(),
                default,
            })
        })
        .collect()
}

/// What is wrong with a configuration, one line each.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// The closest known key, if any is close.
fn suggest(key: &str, opts: &[Opt]) -> Option<String> {
    opts.iter()
        .map(|o| (strsim::jaro_winkler(key, &o.key), &o.key))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.clone())
}

/// A TOML scalar as a command-line value.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads a configuration file into (key, value) pairs.
fn read_file(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))
}

/// The arguments a file's table stands for, skipping the options `skip`
/// says are given elsewhere; problems for keys that are unknown or of the
/// wrong kind.
fn file_args(
    table: &toml::Table,
    opts: &[Opt],
    skip: &dyn Fn(&Opt) -> bool,
) -> (Vec<OsString>, Problems) {
    let mut args = Vec::new();
    let mut problems = Problems::default();
    for (key, value) in table {
        let Some(opt) = opts.iter().find(|o| &o.key == key) else {
            problems.0.push(match suggest(key, opts) {
                Some(s) => format!("`{key}` is not an option (did you mean `{s}`?)"),
                None => {
                    format!("`{key}` is not an option (`parledger config example` lists them all)")
                }
            });
            continue;
        };
        if skip(opt) {
            continue;
        }
        match (opt.kind, value) {
            (Kind::Switch, toml::Value::Boolean(b)) => {
                if *b {
                    args.push(format!("--{}", opt.long).into());
                }
            }
            (Kind::Switch, other) => problems.0.push(format!(
                "`{key}` is a switch: true or false, not {}",
                other.type_str()
            )),
            (Kind::List, toml::Value::Array(items)) => {
                for item in items {
                    match scalar(item) {
                        Some(v) => args.push(format!("--{}={v}", opt.long).into()),
                        None => problems.0.push(format!(
                            "`{key}` takes a list of values, not a list holding {}",
                            item.type_str()
                        )),
                    }
                }
            }
            (Kind::List, other) => problems.0.push(format!(
                "`{key}` is repeatable: give an array (`{key} = [...]`), not {}",
                other.type_str()
            )),
            (Kind::Value, v) => match scalar(v) {
                Some(s) => args.push(format!("--{}={s}", opt.long).into()),
                None => problems
                    .0
                    .push(format!("`{key}` takes one value, not {}", v.type_str())),
            },
        }
    }
    (args, problems)
}

/// The arguments the environment stands for (for options clap does not
/// read from the environment itself).
fn env_args(opts: &[Opt], skip: &dyn Fn(&Opt) -> bool) -> Result<Vec<OsString>, Problems> {
    let mut args = Vec::new();
    let mut problems = Problems::default();
    for opt in opts.iter().filter(|o| !o.clap_env && !skip(o)) {
        let Ok(value) = std::env::var(&opt.env) else {
            continue;
        };
        match opt.kind {
            Kind::Switch => match value.as_str() {
                "1" | "true" | "yes" | "on" => args.push(format!("--{}", opt.long).into()),
                "0" | "false" | "no" | "off" | "" => {}
                other => problems
                    .0
                    .push(format!("{}={other}: a switch takes true or false", opt.env)),
            },
            Kind::List => {
                for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    args.push(format!("--{}={v}", opt.long).into());
                }
            }
            Kind::Value => args.push(format!("--{}={value}", opt.long).into()),
        }
    }
    if problems.0.is_empty() {
        Ok(args)
    } else {
        Err(problems)
    }
}

/// Whether `args` (the command line after `serve`) gives `long`.
fn given(args: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with_value = format!("--{long}=");
    args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with_value))
    })
}

/// Expands the command line of `parledger serve`: the environment's and
/// the configuration file's settings become arguments placed before the
/// real ones (which win: an option they give is not taken from the file or
/// the environment). Any other command line is returned as it is.
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    // `serve` is the first argument that is not a global switch.
    let Some(at) = argv
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
        .map(|p| p + 1)
        .filter(|&p| argv[p] == "serve")
    else {
        return Ok(argv);
    };
    let rest = &argv[at + 1..];
    let file = config_path(rest);
    let opts = options();
    let on_command_line = |o: &Opt| given(rest, &o.long);
    let mut extra =
        env_args(&opts, &on_command_line).map_err(|p| format!("invalid environment:\n{p}"))?;
    if let Some(path) = file {
        let table = read_file(&path)?;
        // The environment wins over the file.
        let elsewhere = |o: &Opt| on_command_line(o) || std::env::var_os(&o.env).is_some();
        let (args, problems) = file_args(&table, &opts, &elsewhere);
        if !problems.0.is_empty() {
            return Err(format!(
                "{} has problems (`parledger config check {}` explains them all):\n{problems}",
                path.display(),
                path.display()
            ));
        }
        extra.extend(args);
    }
    let mut out: Vec<OsString> = argv[..=at].to_vec();
    out.extend(extra);
    out.extend(rest.iter().cloned());
    Ok(out)
}

/// `--config FILE`, `--config=FILE` or `PARLEDGER_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = s.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// `parledger config check FILE`: every problem of the file (alone: the
/// environment is not consulted), or the settings it makes with their
/// sources. Returns whether the file is valid.
pub fn check(path: &Path) -> (bool, String) {
    let mut out = String::new();
    let table = match read_file(path) {
        Ok(t) => t,
        Err(e) => return (false, format!("error: {e}\n")),
    };
    let opts = options();
    let (args, mut problems) = file_args(&table, &opts, &|_| false);
    let mut argv: Vec<OsString> = vec!["parledger".into(), "serve".into()];
    argv.extend(args);
    // clap's own checks (types, ranges, options that need each other),
    // without the process environment: the file alone is being checked.
    let mut cmd = Cli::command();
    for o in opts.iter().filter(|o| o.clap_env) {
        if std::env::var_os(&o.env).is_some() {
            let _ = writeln!(
                out,
                "note: {} is set in this environment; it would override `{}`",
                o.env, o.key
            );
        }
    }
    cmd = cmd.mut_subcommand("serve", |s| {
        let ids: Vec<String> = s.get_arguments().map(|a| a.get_id().to_string()).collect();
        ids.into_iter()
            .fold(s, |s, id| s.mut_arg(id, |a| a.env(None::<&str>)))
    });
    let parsed = cmd
        .try_get_matches_from(&argv)
        .map_err(|e| e.to_string())
        .and_then(|m| Cli::from_arg_matches(&m).map_err(|e| e.to_string()));
    match parsed {
        Ok(cli) => {
            if let crate::cli::Command::Serve(args) = cli.command {
                problems.0.extend(startup_problems(&args));
            }
        }
        Err(e) => {
            // clap names flags; the file names keys.
            let mut line = e
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("the options do not parse")
                .trim_start_matches("error: ")
                .to_string();
            for o in &opts {
                line = line.replace(&format!("--{}", o.long), &o.key);
            }
            problems.0.push(line);
        }
    }
    if problems.0.is_empty() {
        let _ = writeln!(out, "{}: OK", path.display());
        for o in &opts {
            let (value, source) = match table.get(&o.key) {
                Some(v) => (v.to_string(), "file"),
                None => match &o.default {
                    Some(d) => (format!("{d:?}"), "default"),
                    None => ("(unset)".to_string(), "default"),
                },
            };
            let _ = writeln!(out, "  {:<24} = {value:<30} # {source}", o.key);
        }
        (true, out)
    } else {
        let _ = writeln!(
            out,
            "{}: {} problem{}",
            path.display(),
            problems.0.len(),
            if problems.0.len() == 1 { "" } else { "s" }
        );
        out.push_str(&problems.to_string());
        (false, out)
    }
}

/// What `serve` would refuse at start, beyond what clap checks.
pub fn startup_problems(a: &ServeArgs) -> Vec<String> {
    let mut p = Vec::new();
    let file = |p: &mut Vec<String>, key: &str, path: &Option<PathBuf>| {
        if let Some(f) = path {
            if !f.is_file() {
                p.push(format!("`{key}`: no file at {}", f.display()));
            }
        }
    };
    file(&mut p, "tls_cert", &a.tls_cert);
    file(&mut p, "tls_key", &a.tls_key);
    file(&mut p, "idp_jwks", &a.idp_jwks);
    for k in &a.jwt_trust_keys {
        file(&mut p, "jwt_trust_key", &Some(k.clone()));
    }
    if let Some(d) = &a.jwt_trust_dir {
        if !d.is_dir() {
            p.push(format!("`jwt_trust_dir`: no directory at {}", d.display()));
        }
    }
    if let Some(k) = &a.jwt_key {
        if !k.is_file()
            && !k
                .parent()
                .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir())
        {
            p.push(format!(
                "`jwt_key`: {} does not exist and its directory does not either",
                k.display()
            ));
        }
    }
    if a.tls_cert.is_none() && !a.listen.ip().is_loopback() && !a.allow_plain_http {
        p.push(format!(
            "`listen` = {} is not loopback and no `tls_cert`/`tls_key` is given: plain HTTP is \
             refused there unless `allow_plain_http = true` (behind a TLS-terminating proxy)",
            a.listen
        ));
    }
    if a.batch_len_max == 0 {
        p.push("`batch_len_max` must be at least 1".into());
    }
    let c = &a.cluster;
    if let Some(id) = c.node_id {
        file(&mut p, "cluster_cert", &c.cluster_cert);
        file(&mut p, "cluster_key", &c.cluster_key);
        file(&mut p, "cluster_ca", &c.cluster_ca);
        if id == 0 {
            p.push("`node_id` 0 is reserved; node ids start at 1".into());
        }
        let mut seen = BTreeMap::new();
        for (peer, addr) in &c.peers {
            if *peer == id {
                p.push(format!("`peer` lists this node ({id}) itself"));
            }
            if seen.insert(*peer, addr).is_some() {
                p.push(format!("`peer` lists node {peer} twice"));
            }
        }
        if c.heartbeat_ticks == 0 || c.heartbeat_ticks >= c.election_ticks {
            p.push(format!(
                "`heartbeat_ticks` ({}) must be at least 1 and below `election_ticks` ({})",
                c.heartbeat_ticks, c.election_ticks
            ));
        }
        if c.peers.is_empty() && c.join {
            p.push("`join` needs `peer` entries for the current members".into());
        }
    } else if c.join || !c.peers.is_empty() {
        p.push("`join` and `peer` need `node_id` (a cluster node)".into());
    }
    p
}

/// `parledger config example`: every option of `serve`, commented out,
/// with its help, default and environment variable.
pub fn example() -> String {
    let mut out = String::from(
        "# Parledger node configuration (`parledger serve --config FILE`).\n\
         #\n\
         # Every option of `parledger serve`, with its default. Each can also be set\n\
         # by its environment variable, which wins over this file; a command-line\n\
         # flag wins over both. Check a file with `parledger config check FILE`.\n\
         # Generated by `parledger config example`.\n",
    );
    for o in options() {
        out.push('\n');
        for line in wrap(&o.help, 76) {
            let _ = writeln!(out, "#{}{line}", if line.is_empty() { "" } else { " " });
        }
        let _ = writeln!(out, "# env: {}", o.env);
        let value = match (o.kind, &o.default) {
            (Kind::Switch, _) => "false".to_string(),
            (Kind::List, _) => "[]".to_string(),
            (Kind::Value, Some(d)) if d.parse::<f64>().is_ok() => d.clone(),
            (Kind::Value, Some(d)) => format!("{d:?}"),
            (Kind::Value, None) => {
                let _ = writeln!(out, "# (no default)");
                "\"\"".to_string()
            }
        };
        let _ = writeln!(out, "# {} = {value}", o.key);
    }
    out
}

/// `text`'s paragraphs as lines of at most `width` characters (a longer
/// word stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split("\n\n") {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_file_becomes_arguments_the_command_line_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(
            &f,
            "batch_len_max = 500\nlisten = \"127.0.0.1:9999\"\ndemo = true\njwt_trust_key = [\"a.pem\", \"b.pem\"]\n",
        )
        .unwrap();
        let cfg = f.to_str().unwrap();
        let out = expand(argv(&[
            "parledger",
            "serve",
            "--config",
            cfg,
            "--listen",
            "127.0.0.1:1",
        ]))
        .unwrap();
        let out: Vec<String> = out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(out.contains(&"--batch-len-max=500".to_string()), "{out:?}");
        assert!(out.contains(&"--demo".to_string()), "{out:?}");
        assert!(
            out.contains(&"--jwt-trust-key=b.pem".to_string()),
            "{out:?}"
        );
        assert!(
            !out.contains(&"--listen=127.0.0.1:9999".to_string()),
            "the command line wins: {out:?}"
        );
        // Other commands are left alone.
        let v = argv(&["parledger", "verify", "--config", "x"]);
        assert_eq!(expand(v.clone()).unwrap(), v);
    }

    #[test]
    fn check_explains_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.toml");
        std::fs::write(
            &f,
            "batch_len_mx = 5\ndemo = \"yes\"\npeer = \"2=a:1\"\nlisten = \"0.0.0.0:8080\"\ntls_cert = \"/nope.pem\"\ntls_key = \"/nope-key.pem\"\n",
        )
        .unwrap();
        let (ok, report) = check(&f);
        assert!(!ok);
        for needle in [
            "did you mean `batch_len_max`",
            "`demo` is a switch",
            "`peer` is repeatable",
        ] {
            assert!(report.contains(needle), "{needle}: {report}");
        }
        std::fs::write(
            &f,
            "listen = \"0.0.0.0:8080\"\ntls_cert = \"/nope.pem\"\ntls_key = \"/nope-key.pem\"\n",
        )
        .unwrap();
        let (ok, report) = check(&f);
        assert!(!ok);
        assert!(
            report.contains("`tls_cert`: no file at /nope.pem"),
            "{report}"
        );
        std::fs::write(&f, "listen = \"0.0.0.0:8080\"\n").unwrap();
        let (ok, report) = check(&f);
        assert!(!ok && report.contains("allow_plain_http"), "{report}");
        std::fs::write(&f, "listen = \"nowhere\"\n").unwrap();
        let (ok, report) = check(&f);
        assert!(!ok && report.contains("listen"), "{report}");
        std::fs::write(&f, "batch_len_max = 500\n").unwrap();
        let (ok, report) = check(&f);
        assert!(ok, "{report}");
        assert!(report.contains("batch_len_max"), "{report}");
    }

    #[test]
    fn the_example_is_a_valid_file_naming_every_option() {
        let text = example();
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .filter(|l| !l.contains("\"\""))
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().unwrap();
        for o in options() {
            assert!(text.contains(&format!("# env: {}", o.env)), "{}", o.key);
            let _ = table.get(&o.key);
        }
        assert!(table.contains_key("batch_len_max"));
    }
}
