//! Compact binary encoding of the blobs stored with each transaction (events
//! and write sets). Same primitives as the canonical hash encoding: big-endian
//! integers, `u32` length prefixes, `0`/`1` for absent/present.

use crate::model::{DomainId, Event, OrgId, PartitionId, Write};
use smol_str::SmolStr;

#[derive(Debug, thiserror::Error)]
#[error("malformed stored blob: {0}")]
pub struct CodecError(pub String);

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        // Lengths are bounded by `Limits`, far below u32::MAX.
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn partition(&mut self, p: &PartitionId) {
        self.bytes(p.org.as_str().as_bytes());
        self.bytes(p.domain.as_str().as_bytes());
    }
}

struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError(format!(
                "needed {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| CodecError(e.to_string()))
    }
    fn partition(&mut self) -> Result<PartitionId, CodecError> {
        let org = OrgId::new(self.str()?).map_err(|e| CodecError(e.to_string()))?;
        let domain = DomainId::new(self.str()?).map_err(|e| CodecError(e.to_string()))?;
        Ok(PartitionId { org, domain })
    }
    fn end(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError(format!("{} trailing bytes", self.buf.len())))
        }
    }
}

pub fn encode_writes(writes: &[Write]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u32(writes.len() as u32);
    for w in writes {
        e.partition(&w.partition);
        e.bytes(&w.key);
        match &w.value {
            None => e.0.push(0),
            Some(v) => {
                e.0.push(1);
                e.bytes(v);
            }
        }
    }
    e.0
}

pub fn decode_writes(buf: &[u8]) -> Result<Vec<Write>, CodecError> {
    let mut d = Dec { buf };
    let n = d.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let partition = d.partition()?;
        let key = d.bytes()?.to_vec();
        let value = match d.u8()? {
            0 => None,
            1 => Some(d.bytes()?.to_vec()),
            t => return Err(CodecError(format!("bad option tag {t}"))),
        };
        out.push(Write {
            partition,
            key,
            value,
        });
    }
    d.end()?;
    Ok(out)
}

pub fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u32(events.len() as u32);
    for ev in events {
        e.partition(&ev.partition);
        e.bytes(ev.name.as_bytes());
        e.bytes(&ev.data);
    }
    e.0
}

pub fn decode_events(buf: &[u8]) -> Result<Vec<Event>, CodecError> {
    let mut d = Dec { buf };
    let n = d.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let partition = d.partition()?;
        let name = SmolStr::new(d.str()?);
        let data = d.bytes()?.to_vec();
        out.push(Event {
            partition,
            name,
            data,
        });
    }
    d.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_events_round_trip_and_reject_garbage() {
        let p = PartitionId::parse("acme/finance").unwrap();
        let writes = vec![
            Write {
                partition: p.clone(),
                key: b"a".to_vec(),
                value: Some(b"1".to_vec()),
            },
            Write {
                partition: p.clone(),
                key: b"b".to_vec(),
                value: None,
            },
        ];
        let enc = encode_writes(&writes);
        assert_eq!(decode_writes(&enc).unwrap(), writes);
        assert!(decode_writes(&enc[..enc.len() - 1]).is_err());
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode_writes(&longer).is_err());
        let events = vec![Event {
            partition: p,
            name: "moved".into(),
            data: b"{}".to_vec(),
        }];
        assert_eq!(decode_events(&encode_events(&events)).unwrap(), events);
    }
}
