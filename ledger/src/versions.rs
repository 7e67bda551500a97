//! Chaincode versions: which rules the installed chaincode applies to a
//! block. A version is a consortium-wide number (1 at genesis) that the
//! consortium switches by a governance decision naming a future height, so
//! that every replica changes rules at the same block. The decision is
//! stored in the state (the schedule, [`SCHEDULE_KEY`] of the consortium's
//! `system` partition); the engine reads it before executing each block and
//! refuses to execute a block under a version its binary cannot run
//! ([`crate::LedgerError::UnsupportedChaincodeVersion`]) rather than
//! compute a block that differs from the other replicas'.

use crate::model::{DomainId, OrgId, PartitionId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A chaincode version: 1, 2, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChaincodeVersion(pub u32);

impl ChaincodeVersion {
    /// The rules a ledger starts with.
    pub const FIRST: ChaincodeVersion = ChaincodeVersion(1);
}

impl fmt::Display for ChaincodeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The organization whose `system` partition holds consortium-wide records
/// (`domains::membership::CONSORTIUM` is the same id).
pub const CONSORTIUM_ORG: &str = "_consortium";
/// The domain of membership and governance records.
pub const SYSTEM_DOMAIN: &str = "system";
/// The schedule's key in the consortium's `system` partition.
pub const SCHEDULE_KEY: &[u8] = b"chaincode";

/// The partition that holds the schedule.
pub fn schedule_partition() -> PartitionId {
    PartitionId::new(
        OrgId::from_static(CONSORTIUM_ORG),
        DomainId::from_static(SYSTEM_DOMAIN),
    )
}

/// One decision: `version` applies from block `height` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub version: ChaincodeVersion,
    pub height: u64,
}

/// Every activation decided so far, in increasing height and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSchedule {
    pub activations: Vec<Activation>,
}

/// A stored schedule that does not decode: the state is corrupt.
#[derive(Debug, thiserror::Error)]
#[error("the chaincode version schedule does not decode: {0}")]
pub struct BadSchedule(pub String);

impl VersionSchedule {
    /// The schedule as stored (absent: nothing decided, version 1 throughout).
    pub fn decode(bytes: Option<&[u8]>) -> Result<VersionSchedule, BadSchedule> {
        match bytes {
            None => Ok(VersionSchedule::default()),
            Some(b) => serde_json::from_slice(b).map_err(|e| BadSchedule(e.to_string())),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // A struct of integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The version that applies to block `height`.
    pub fn version_at(&self, height: u64) -> ChaincodeVersion {
        self.activations
            .iter()
            .rev()
            .find(|a| a.height <= height)
            .map_or(ChaincodeVersion::FIRST, |a| a.version)
    }

    /// The last version decided (active or still to come).
    pub fn latest(&self) -> ChaincodeVersion {
        self.activations
            .last()
            .map_or(ChaincodeVersion::FIRST, |a| a.version)
    }

    /// Adds a decision; it must come after every earlier one, in version
    /// and in height.
    pub fn schedule(&mut self, a: Activation) -> Result<(), String> {
        if let Some(last) = self.activations.last() {
            if a.version <= last.version || a.height <= last.height {
                return Err(format!(
                    "version {} from height {} must come after version {} from height {}",
                    a.version, a.height, last.version, last.height
                ));
            }
        } else if a.version <= ChaincodeVersion::FIRST {
            return Err(format!(
                "version {} must be above {}",
                a.version,
                ChaincodeVersion::FIRST
            ));
        }
        self.activations.push(a);
        Ok(())
    }
}

/// The versions a binary's chaincode can run: `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supported {
    pub min: ChaincodeVersion,
    pub max: ChaincodeVersion,
}

impl Supported {
    pub const FIRST_ONLY: Supported = Supported {
        min: ChaincodeVersion::FIRST,
        max: ChaincodeVersion::FIRST,
    };

    pub fn contains(&self, v: ChaincodeVersion) -> bool {
        self.min <= v && v <= self.max
    }
}

impl fmt::Display for Supported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{} to {}", self.min, self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_at_a_height_is_the_last_activation_at_or_below_it() {
        let mut s = VersionSchedule::default();
        assert_eq!(s.version_at(1_000), ChaincodeVersion::FIRST);
        s.schedule(Activation {
            version: ChaincodeVersion(2),
            height: 10,
        })
        .unwrap();
        s.schedule(Activation {
            version: ChaincodeVersion(3),
            height: 20,
        })
        .unwrap();
        assert_eq!(
            [9, 10, 19, 20, 21].map(|h| s.version_at(h).0),
            [1, 2, 2, 3, 3]
        );
        assert_eq!(s.latest(), ChaincodeVersion(3));
        // Not after the last decision, in version or in height.
        for (v, h) in [(3, 30), (4, 20), (1, 40)] {
            assert!(s
                .schedule(Activation {
                    version: ChaincodeVersion(v),
                    height: h
                })
                .is_err());
        }
        let back = VersionSchedule::decode(Some(&s.encode())).unwrap();
        assert_eq!(back, s);
        assert!(VersionSchedule::decode(Some(b"nonsense")).is_err());
    }
}
