//! Which Raft group orders which partition.
//!
//! Today one group orders every partition (`GroupMap::single`). The map
//! exists so that the code paths that will need it already ask it: the
//! runtime routes each submission through [`GroupMap::route`] and orders
//! only what its own group owns. Scale-out (several groups owning disjoint
//! sets of partitions, and atomic commit across two of them) is designed in
//! `ARCHITECTURE.md`, "Scale-out: several Raft groups".
//!
//! A partition is placed by its organization, then by (organization,
//! domain) where an organization's domains are split across groups: the
//! most specific rule wins, and everything unplaced goes to the default
//! group. Placement is data (it would be a consortium setting, changed by a
//! membership transaction), never a hash, so that moving a partition is an
//! explicit, audited step.

use crate::model::{DomainId, OrgId, PartitionId};
use std::collections::{BTreeMap, BTreeSet};

/// A Raft group's id.
pub type GroupId = u32;

/// Where a transaction is ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Every partition it touches is owned by this group.
    Single(GroupId),
    /// It spans these groups (sorted): a cross-group commit is needed.
    Cross(Vec<GroupId>),
}

/// Partition → group placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMap {
    default: GroupId,
    by_org: BTreeMap<OrgId, GroupId>,
    by_partition: BTreeMap<(OrgId, DomainId), GroupId>,
}

impl GroupMap {
    /// One group (0) orders everything: the only deployment today.
    pub fn single() -> GroupMap {
        GroupMap {
            default: 0,
            by_org: BTreeMap::new(),
            by_partition: BTreeMap::new(),
        }
    }

    /// Places every partition of `org` in `group`.
    pub fn place_org(&mut self, org: OrgId, group: GroupId) {
        self.by_org.insert(org, group);
    }

    /// Places one partition, overriding its organization's placement.
    pub fn place_partition(&mut self, org: OrgId, domain: DomainId, group: GroupId) {
        self.by_partition.insert((org, domain), group);
    }

    pub fn group_of(&self, p: &PartitionId) -> GroupId {
        self.by_partition
            .get(&(p.org.clone(), p.domain.clone()))
            .or_else(|| self.by_org.get(&p.org))
            .copied()
            .unwrap_or(self.default)
    }

    /// The groups that order the partitions a transaction touches (its
    /// footprint's partitions; its home partition when it declares none).
    pub fn route<'a>(&self, partitions: impl IntoIterator<Item = &'a PartitionId>) -> Route {
        let groups: BTreeSet<GroupId> = partitions.into_iter().map(|p| self.group_of(p)).collect();
        match groups.len() {
            0 => Route::Single(self.default),
            1 => Route::Single(groups.into_iter().next().unwrap_or(self.default)),
            _ => Route::Cross(groups.into_iter().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(org: &str, domain: &str) -> PartitionId {
        PartitionId {
            org: OrgId::new(org).unwrap(),
            domain: DomainId::new(domain).unwrap(),
        }
    }

    #[test]
    fn one_group_orders_everything() {
        let m = GroupMap::single();
        assert_eq!(
            m.route(&[p("a", "finance"), p("b", "finance")]),
            Route::Single(0)
        );
        assert_eq!(m.route(&[]), Route::Single(0));
    }

    #[test]
    fn the_most_specific_placement_wins_and_spans_are_found() {
        let mut m = GroupMap::single();
        m.place_org(OrgId::new("a").unwrap(), 1);
        m.place_partition(
            OrgId::new("a").unwrap(),
            DomainId::new("healthcare").unwrap(),
            2,
        );
        assert_eq!(m.group_of(&p("a", "finance")), 1);
        assert_eq!(m.group_of(&p("a", "healthcare")), 2);
        assert_eq!(m.group_of(&p("b", "finance")), 0);
        assert_eq!(
            m.route(&[p("a", "finance"), p("a", "supply_chain")]),
            Route::Single(1)
        );
        assert_eq!(
            m.route(&[p("a", "finance"), p("b", "finance"), p("a", "finance")]),
            Route::Cross(vec![0, 1])
        );
    }
}
