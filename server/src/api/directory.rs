//! The node's view of membership: organizations, users, roles, password
//! hashes, public keys, revoked tokens and consortium settings, projected
//! from the `system` partitions of the ledger. Loaded from the state at
//! start, then updated from every durable block (before its clients are
//! answered), so authentication never reads the engine.

use crate::node::Observer;
use domains::membership::{self, OrgRecord, RevokedToken, Settings, UserRecord};
use ledger::engine::AppliedBlock;
use ledger::{ChaincodeVersion, OrgId, PartitionId, State, TxStatus, VersionSchedule};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

#[derive(Debug, Default)]
pub struct Directory {
    pub orgs: BTreeMap<OrgId, OrgRecord>,
    pub users: BTreeMap<(OrgId, String), UserRecord>,
    /// Revoked token ids with their expiry (ms).
    pub revoked: HashMap<String, u64>,
    pub settings: Settings,
    pub founder: Option<OrgId>,
    /// The chaincode version schedule the consortium decided.
    pub schedule: VersionSchedule,
    /// The latest durable block's height.
    pub height: u64,
}

impl Directory {
    /// Everything the state's `system` partitions hold.
    pub fn load(state: &State, height: u64) -> Directory {
        let mut d = Directory {
            height,
            ..Directory::default()
        };
        for (pid, part) in state.partitions() {
            if pid.domain != membership::SYSTEM {
                continue;
            }
            for (key, entry) in part.entries.iter() {
                d.apply(pid, key, Some(&entry.value));
            }
        }
        d
    }

    /// One write to a `system` partition.
    fn apply(&mut self, pid: &PartitionId, key: &[u8], value: Option<&[u8]>) {
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        let org = &pid.org;
        if *org == membership::CONSORTIUM {
            match key {
                "settings" => {
                    self.settings = value
                        .and_then(|v| serde_json::from_slice(v).ok())
                        .unwrap_or_default();
                }
                "chaincode" => {
                    // A schedule that does not decode stops the engine
                    // before it executes another block; here it only
                    // means the pre-checks assume version 1.
                    self.schedule = VersionSchedule::decode(value).unwrap_or_default();
                }
                "genesis" => {
                    self.founder = value
                        .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                        .and_then(|g| g.get("org")?.as_str().and_then(|o| OrgId::new(o).ok()));
                }
                _ => {}
            }
            return;
        }
        if key == "org" {
            match value.and_then(|v| serde_json::from_slice::<OrgRecord>(v).ok()) {
                Some(r) => {
                    self.orgs.insert(org.clone(), r);
                }
                None => {
                    self.orgs.remove(org);
                }
            }
        } else if let Some(name) = key.strip_prefix("user/") {
            let id = (org.clone(), name.to_string());
            match value.and_then(|v| serde_json::from_slice::<UserRecord>(v).ok()) {
                Some(u) => {
                    self.users.insert(id, u);
                }
                None => {
                    self.users.remove(&id);
                }
            }
        } else if let Some(jti) = key.strip_prefix("revoked/") {
            match value.and_then(|v| serde_json::from_slice::<RevokedToken>(v).ok()) {
                Some(r) => {
                    self.revoked.insert(jti.to_string(), r.exp_ms);
                }
                None => {
                    self.revoked.remove(jti);
                }
            }
        }
    }

    pub fn user(&self, org: &OrgId, name: &str) -> Option<&UserRecord> {
        self.users.get(&(org.clone(), name.to_string()))
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains_key(jti)
    }

    /// Whether a vote removed `org` from the consortium.
    pub fn is_removed(&self, org: &OrgId) -> bool {
        self.orgs.get(org).is_some_and(OrgRecord::is_removed)
    }

    /// The chaincode version the next block runs under, as far as this node
    /// knows (the block's own version is decided when it executes).
    pub fn next_version(&self) -> ChaincodeVersion {
        self.schedule.version_at(self.height + 1)
    }

    /// Whether the consortium has been bootstrapped (someone can sign in).
    pub fn bootstrapped(&self) -> bool {
        self.founder.is_some()
    }
}

/// Keeps a shared [`Directory`] current with durable blocks.
#[derive(Debug)]
pub struct DirectoryObserver(pub std::sync::Arc<RwLock<Directory>>);

impl Observer for DirectoryObserver {
    fn durable(&self, block: &AppliedBlock) {
        if let Ok(mut d) = self.0.write() {
            d.height = block.header.height;
        }
        let touched = block.outcomes.iter().any(|o| {
            o.status == TxStatus::Committed
                && o.writes
                    .iter()
                    .any(|w| w.partition.domain == membership::SYSTEM)
        });
        if !touched {
            return;
        }
        let Ok(mut d) = self.0.write() else {
            return;
        };
        for o in &block.outcomes {
            if o.status != TxStatus::Committed {
                continue;
            }
            for w in &o.writes {
                if w.partition.domain == membership::SYSTEM {
                    d.apply(&w.partition, &w.key, w.value.as_deref());
                }
            }
        }
    }
}
