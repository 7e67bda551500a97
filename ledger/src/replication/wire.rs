//! A guard in front of protobuf: raft-rs 0.7 decodes its messages with
//! `protobuf` 2.28, which recurses without bound when it skips an unknown
//! field of the *group* wire type (RUSTSEC-2024-0437): a few megabytes of
//! nested group tags would overflow the stack. Raft's messages have no
//! groups, so before anything reaches protobuf this walks the encoding
//! (iterating, and descending only into the submessage fields of the known
//! schema, at most four deep) and refuses any group, any unknown wire type
//! and any truncated field.

/// The messages the schema knows (`raft-proto`'s `eraftpb.proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Entry,
    Snapshot,
    SnapshotMetadata,
    ConfState,
    ConfChange,
    ConfChangeV2,
    ConfChangeSingle,
}

impl Kind {
    /// The message a length-delimited field holds, when it is one.
    fn submessage(self, field: u64) -> Option<Kind> {
        match (self, field) {
            (Kind::Message, 7) => Some(Kind::Entry),
            (Kind::Message, 9) => Some(Kind::Snapshot),
            (Kind::Snapshot, 2) => Some(Kind::SnapshotMetadata),
            (Kind::SnapshotMetadata, 1) => Some(Kind::ConfState),
            (Kind::ConfChangeV2, 2) => Some(Kind::ConfChangeSingle),
            _ => None,
        }
    }
}

/// A varint at the start of `buf`: its value and length.
fn varint(buf: &[u8]) -> Result<(u64, usize), String> {
    let mut value = 0u64;
    for (i, b) in buf.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err("a truncated or overlong varint".into())
}

/// Refuses what protobuf must not be given: groups, unknown wire types,
/// truncated fields.
pub fn check(buf: &[u8], kind: Kind) -> Result<(), String> {
    let mut i = 0;
    while i < buf.len() {
        let (tag, n) = varint(&buf[i..])?;
        i += n;
        let (field, wire) = (tag >> 3, tag & 7);
        let len = match wire {
            0 => varint(&buf[i..])?.1,
            1 => 8,
            5 => 4,
            2 => {
                let (len, n) = varint(&buf[i..])?;
                i += n;
                let len = usize::try_from(len).map_err(|_| "a field too long")?;
                let end = i.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or_else(|| format!("field {field} runs past the message"))?;
                if let Some(sub) = kind.submessage(field) {
                    check(&buf[i..end], sub)?;
                }
                len
            }
            3 | 4 => {
                return Err(format!(
                    "field {field} of {kind:?} is a group: Raft's messages have none"
                ))
            }
            w => return Err(format!("field {field} has wire type {w}")),
        };
        i = i
            .checked_add(len)
            .filter(|e| *e <= buf.len())
            .ok_or_else(|| format!("field {field} runs past the message"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message as _;
    use raft::eraftpb::{Entry, Message};

    #[test]
    fn real_messages_pass_and_nested_groups_are_refused_before_protobuf() {
        let e = Entry {
            data: vec![1, 2, 3].into(),
            ..Default::default()
        };
        let mut m = Message {
            term: 7,
            entries: vec![e].into(),
            ..Default::default()
        };
        m.mut_snapshot().mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        let bytes = m.write_to_bytes().unwrap();
        assert_eq!(check(&bytes, Kind::Message), Ok(()));
        // Nested start-group tags under an unknown field: protobuf 2.28
        // would recurse once per tag (RUSTSEC-2024-0437).
        let bomb: Vec<u8> = std::iter::repeat_n(0x9b_u8, 1 << 20)
            .flat_map(|b| [b, 0x06])
            .collect();
        assert!(check(&bomb, Kind::Message).unwrap_err().contains("group"));
        // Inside an entry too.
        let mut inner = vec![0x3a]; // field 7 (entries), length-delimited
        inner.extend([0x04, 0x9b, 0x06, 0x9c, 0x06]); // a group in the entry
        assert!(check(&inner, Kind::Message).is_err());
        // Truncated and overlong fields.
        assert!(check(&[0x3a, 0x09, 0x01], Kind::Message).is_err());
        assert!(check(&[0x08; 11], Kind::Message).is_err());
    }
}
