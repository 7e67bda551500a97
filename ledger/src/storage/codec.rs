//! Compact binary encoding of stored transaction chunks. Same primitives as
//! the canonical hash encoding: big-endian integers, `u32` length prefixes,
//! `0`/`1` for absent/present.

use crate::error::Code;
use crate::model::{
    DomainId, Event, FunctionName, InvalidId, OrgId, PartitionId, Transaction, TxId, TxOutcome,
    TxSignature, TxStatus, UserId, Write,
};
use smol_str::SmolStr;

#[derive(Debug, thiserror::Error)]
#[error("malformed stored blob: {0}")]
pub struct CodecError(pub String);

#[derive(Default)]
pub(crate) struct Enc(pub(crate) Vec<u8>);

impl Enc {
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        // Lengths are bounded by `Limits`, far below u32::MAX.
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn partition(&mut self, p: &PartitionId) {
        self.bytes(p.org.as_str().as_bytes());
        self.bytes(p.domain.as_str().as_bytes());
    }
}

pub(crate) struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Dec { buf }
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
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
    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, CodecError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|e| CodecError(e.to_string()))
    }
    fn partition(&mut self) -> Result<PartitionId, CodecError> {
        let org = OrgId::new(self.str()?).map_err(|e| CodecError(e.to_string()))?;
        let domain = DomainId::new(self.str()?).map_err(|e| CodecError(e.to_string()))?;
        Ok(PartitionId { org, domain })
    }
    pub(crate) fn end(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError(format!("{} trailing bytes", self.buf.len())))
        }
    }
}

fn put_events(e: &mut Enc, events: &[Event]) {
    e.u32(events.len() as u32);
    for ev in events {
        e.partition(&ev.partition);
        e.bytes(ev.name.as_bytes());
        e.bytes(&ev.data);
    }
}

fn get_events(d: &mut Dec<'_>) -> Result<Vec<Event>, CodecError> {
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
    Ok(out)
}

fn put_writes(e: &mut Enc, writes: &[Write]) {
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
}

fn get_writes(d: &mut Dec<'_>) -> Result<Vec<Write>, CodecError> {
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
    Ok(out)
}

fn id<T>(r: Result<T, InvalidId>) -> Result<T, CodecError> {
    r.map_err(|e| CodecError(e.to_string()))
}

/// A transaction's envelope (id, domain, function, args, submitter, org,
/// then `0`, or `1` and the signature's key id and bytes), without an
/// outcome: what a Raft entry carries.
pub(crate) fn put_tx(e: &mut Enc, tx: &Transaction) {
    e.bytes(tx.id.as_str().as_bytes());
    e.bytes(tx.domain.as_str().as_bytes());
    e.bytes(tx.function.as_str().as_bytes());
    e.bytes(&tx.args);
    e.bytes(tx.submitter.as_str().as_bytes());
    e.bytes(tx.org.as_str().as_bytes());
    match &tx.signature {
        None => e.0.push(0),
        Some(s) => {
            e.0.push(1);
            e.bytes(s.kid.as_bytes());
            e.bytes(&s.sig);
        }
    }
}

pub(crate) fn get_tx(d: &mut Dec<'_>) -> Result<Transaction, CodecError> {
    Ok(Transaction {
        id: id(TxId::new(d.str()?))?,
        domain: id(DomainId::new(d.str()?))?,
        function: id(FunctionName::new(d.str()?))?,
        args: d.bytes()?.to_vec(),
        submitter: id(UserId::new(d.str()?))?,
        org: id(OrgId::new(d.str()?))?,
        signature: match d.u8()? {
            0 => None,
            1 => Some(Box::new(TxSignature {
                kid: d.str()?.to_string(),
                sig: d.bytes()?.to_vec(),
            })),
            t => return Err(CodecError(format!("bad option tag {t}"))),
        },
    })
}

/// A chunk of consecutive transactions of one block with their outcomes:
/// `count`, then per transaction its envelope (id, domain, function, args,
/// submitter, org) and outcome (status, code?, message, output, events,
/// writes).
pub fn encode_chunk(txs: &[Transaction], outcomes: &[TxOutcome]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u32(txs.len().min(outcomes.len()) as u32);
    for (tx, o) in txs.iter().zip(outcomes) {
        e.bytes(tx.id.as_str().as_bytes());
        e.bytes(tx.domain.as_str().as_bytes());
        e.bytes(tx.function.as_str().as_bytes());
        e.bytes(&tx.args);
        e.bytes(tx.submitter.as_str().as_bytes());
        e.bytes(tx.org.as_str().as_bytes());
        // The high bit of the status byte says a signature follows the
        // writes (chunks written before signatures existed have none).
        let signed = if tx.signature.is_some() { SIGNED } else { 0 };
        e.0.push(
            signed
                | match o.status {
                    TxStatus::Committed => 0,
                    TxStatus::Rejected => 1,
                },
        );
        match &o.code {
            None => e.0.push(0),
            Some(c) => {
                e.0.push(1);
                e.bytes(c.as_str().as_bytes());
            }
        }
        e.bytes(o.message.as_bytes());
        e.bytes(&o.output);
        put_events(&mut e, &o.events);
        put_writes(&mut e, &o.writes);
        if let Some(s) = &tx.signature {
            e.bytes(s.kid.as_bytes());
            e.bytes(&s.sig);
        }
    }
    e.0
}

/// Status-byte flag: the transaction carries a signature.
const SIGNED: u8 = 0x80;

pub fn decode_chunk(buf: &[u8]) -> Result<Vec<(Transaction, TxOutcome)>, CodecError> {
    let mut d = Dec { buf };
    let n = d.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let mut tx = Transaction {
            id: id(TxId::new(d.str()?))?,
            domain: id(DomainId::new(d.str()?))?,
            function: id(FunctionName::new(d.str()?))?,
            args: d.bytes()?.to_vec(),
            submitter: id(UserId::new(d.str()?))?,
            org: id(OrgId::new(d.str()?))?,
            signature: None,
        };
        let status_byte = d.u8()?;
        let signed = status_byte & SIGNED != 0;
        let status = match status_byte & !SIGNED {
            0 => TxStatus::Committed,
            1 => TxStatus::Rejected,
            t => return Err(CodecError(format!("bad status {t}"))),
        };
        let code = match d.u8()? {
            0 => None,
            1 => {
                let c = d.str()?;
                Some(Code::new(c).ok_or_else(|| CodecError(format!("bad code {c:?}")))?)
            }
            t => return Err(CodecError(format!("bad option tag {t}"))),
        };
        let outcome = TxOutcome {
            status,
            code,
            message: d.str()?.to_string(),
            output: d.bytes()?.to_vec(),
            events: get_events(&mut d)?,
            writes: get_writes(&mut d)?,
        };
        if signed {
            tx.signature = Some(Box::new(TxSignature {
                kid: d.str()?.to_string(),
                sig: d.bytes()?.to_vec(),
            }));
        }
        out.push((tx, outcome));
    }
    d.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_reject_garbage() {
        let p = PartitionId::parse("acme/finance").unwrap();
        let tx = Transaction::new(
            TxId::new("t-1").unwrap(),
            DomainId::new("finance").unwrap(),
            FunctionName::new("transfer").unwrap(),
            &serde_json::json!({"amount": 5}),
            UserId::new("alice@acme").unwrap(),
            OrgId::new("acme").unwrap(),
        );
        let ok = TxOutcome {
            status: TxStatus::Committed,
            code: None,
            message: String::new(),
            output: b"null".to_vec(),
            events: vec![Event {
                partition: p.clone(),
                name: "moved".into(),
                data: b"{}".to_vec(),
            }],
            writes: vec![
                Write {
                    partition: p.clone(),
                    key: b"a".to_vec(),
                    value: Some(b"1".to_vec()),
                },
                Write {
                    partition: p,
                    key: b"b".to_vec(),
                    value: None,
                },
            ],
        };
        let rejected = TxOutcome::rejected(Code::from_static("FINANCE:NOPE"), "no");
        let mut signed = tx.clone();
        signed.signature = Some(Box::new(TxSignature {
            kid: "k1".into(),
            sig: vec![7; 64],
        }));
        let records = vec![
            (tx.clone(), ok.clone()),
            (signed.clone(), rejected.clone()),
            (tx.clone(), rejected.clone()),
        ];
        let enc = encode_chunk(&[tx.clone(), signed, tx], &[ok, rejected.clone(), rejected]);
        assert_eq!(decode_chunk(&enc).unwrap(), records);
        assert!(decode_chunk(&enc[..enc.len() - 1]).is_err());
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode_chunk(&longer).is_err());
        assert!(decode_chunk(&[]).is_err());
    }
}
