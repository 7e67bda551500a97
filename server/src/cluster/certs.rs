//! Development certificates for a cluster: a consortium CA and, per node, a
//! certificate that names the node's id the way the transport expects
//! (`transport::node_name`). A real consortium issues these from its own
//! PKI; these let an operator try a cluster out, and the tests build their
//! own CAs (including wrong ones) with the same code.

use super::transport::{node_name, NodeId};
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Nodes `parledger cluster certs` issues at most: a consortium is a
/// handful of organizations, and the bound keeps a typo from writing
/// thousands of files.
pub const NODES_MAX: u64 = 100;

/// A certificate authority that lives in memory for as long as it issues.
pub struct DevCa {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new self-signed CA (ECDSA P-256) whose subject is `common_name`.
    /// It may sign end-entity certificates only (path length 0): the
    /// transport expects node certificates straight under the CA.
    pub fn new(common_name: &str) -> Result<DevCa, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(DevCa {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate: the bundle every node trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key (whoever holds it can make node identities).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate of node `id`: its DNS name `node-{id}.parledger`,
    /// usable both to serve and to dial (a node is both).
    pub fn node(&self, id: NodeId) -> Result<Issued, rcgen::Error> {
        self.issue(vec![node_name(id)])
    }

    /// Node `id`'s certificate, expired long ago (valid in 2000 only): for
    /// tests that a node refuses it.
    #[cfg(test)]
    pub fn node_expired(&self, id: NodeId) -> Result<Issued, rcgen::Error> {
        self.issue_with(vec![node_name(id)], |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    /// A certificate for exactly these DNS names (the tests issue
    /// certificates naming no node, several nodes or a wildcard with it).
    pub fn issue(&self, dns_names: Vec<String>) -> Result<Issued, rcgen::Error> {
        self.issue_with(dns_names, |_| {})
    }

    /// [`Self::issue`], its parameters adjusted by `adjust` first.
    fn issue_with(
        &self,
        dns_names: Vec<String>,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(dns_names.clone())?;
        adjust(&mut params);
        if let Some(first) = dns_names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Where `write_dev_certs` put node `id`'s files, relative to `out`.
pub fn node_files(out: &Path, id: NodeId) -> (PathBuf, PathBuf) {
    (
        out.join(format!("node-{id}.pem")),
        out.join(format!("node-{id}-key.pem")),
    )
}

/// `parledger cluster certs`: a new CA in `ca_out` (`ca.pem`, `ca-key.pem`)
/// and nodes `1..=nodes` in `out` (`node-{id}.pem`, `node-{id}-key.pem`,
/// and `ca.pem`, the bundle each node needs). The CA key is written apart
/// from the node material because it is the one file that must not be
/// copied to nodes. Existing files are never overwritten; private keys are
/// mode 0600. Returns the files written.
pub fn write_dev_certs(ca_out: &Path, out: &Path, nodes: u64) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        (1..=NODES_MAX).contains(&nodes),
        "--nodes must be between 1 and {NODES_MAX}"
    );
    let ca = DevCa::new("parledger development CA")?;
    let mut files = vec![
        (ca_out.join("ca.pem"), ca.cert_pem().to_string(), false),
        (ca_out.join("ca-key.pem"), ca.key_pem().to_string(), true),
        (out.join("ca.pem"), ca.cert_pem().to_string(), false),
    ];
    for id in 1..=nodes {
        let issued = ca.node(id)?;
        let (cert, key) = node_files(out, id);
        files.push((cert, issued.cert_pem, false));
        files.push((key, issued.key_pem, true));
    }
    // The same directory for both is allowed: then `ca.pem` is written once.
    let mut seen = std::collections::BTreeSet::new();
    files.retain(|(path, _, _)| seen.insert(path.clone()));
    // Refuse before writing anything, so that a refusal leaves no half set.
    for (path, _, _) in &files {
        anyhow::ensure!(
            !path.exists(),
            "{} exists: not overwriting it",
            path.display()
        );
    }
    for (path, pem, private) in &files {
        write_new(path, pem, *private)?;
    }
    Ok(files.into_iter().map(|(p, _, _)| p).collect())
}

fn write_new(path: &Path, pem: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    opts.open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}
