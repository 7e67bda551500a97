//! Finance: accounts per organization and currency, double-entry transfers
//! within and across organizations.
//!
//! Keys, in partition `(org, finance)`: `acct/{account}` holds an [`Account`].
//! A transfer debits an account of the caller's organization and credits any
//! account, possibly in another organization: one transaction, two
//! partitions, atomic. Balances are `credits_posted - debits_posted` in minor
//! units, with checked arithmetic; an account may go negative only with
//! `debits_may_exceed_credits` (an issuer account that mints into others, so
//! every unit in circulation is matched by an issuer's debit).

use ledger::model::InvalidId;
use ledger::{
    codes, decode_args, Call, Chaincode, ChaincodeError, Code, DomainId, Footprint, FunctionName,
    OrgId, PartitionId, Prepared, Transaction, TxContext, TxId, UserId,
};
use serde::Deserialize;
use serde_json::json;
use smol_str::SmolStr;
use std::borrow::Cow;

pub const DOMAIN: &str = "finance";
pub const FINANCE: DomainId = DomainId::from_static(DOMAIN);

pub mod errors {
    use ledger::Code;
    pub const ACCOUNT_EXISTS: Code = Code::from_static("FINANCE:ACCOUNT_EXISTS");
    pub const ACCOUNT_NOT_FOUND: Code = Code::from_static("FINANCE:ACCOUNT_NOT_FOUND");
    pub const CURRENCY_MISMATCH: Code = Code::from_static("FINANCE:CURRENCY_MISMATCH");
    pub const INSUFFICIENT_FUNDS: Code = Code::from_static("FINANCE:INSUFFICIENT_FUNDS");
    pub const NOT_OWNER: Code = Code::from_static("FINANCE:NOT_OWNER");
    pub const INVALID_AMOUNT: Code = Code::from_static("FINANCE:INVALID_AMOUNT");
    pub const SAME_ACCOUNT: Code = Code::from_static("FINANCE:SAME_ACCOUNT");
}

/// An account's stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// At most 12 characters: stored inline, no allocation.
    pub currency: SmolStr,
    pub debits_may_exceed_credits: bool,
    pub debits_posted: u128,
    pub credits_posted: u128,
}

const ACCOUNT_FORMAT: u8 = 1;

impl Account {
    /// `credits - debits`, which may be negative for an issuer.
    pub fn balance(&self) -> i128 {
        // Both sides are bounded by u128 but a difference beyond i128 would
        // need more money than exists; saturate rather than wrap.
        let c = i128::try_from(self.credits_posted).unwrap_or(i128::MAX);
        let d = i128::try_from(self.debits_posted).unwrap_or(i128::MAX);
        c.saturating_sub(d)
    }

    /// Format: version byte, currency (length byte + ASCII), flags byte,
    /// debits and credits as big-endian u128.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.currency.len() + 32);
        out.push(ACCOUNT_FORMAT);
        out.push(self.currency.len() as u8);
        out.extend_from_slice(self.currency.as_bytes());
        out.push(u8::from(self.debits_may_exceed_credits));
        out.extend_from_slice(&self.debits_posted.to_be_bytes());
        out.extend_from_slice(&self.credits_posted.to_be_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<Account> {
        let (&format, rest) = b.split_first()?;
        if format != ACCOUNT_FORMAT {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if rest.len() != len + 1 + 32 {
            return None;
        }
        let currency = SmolStr::new(std::str::from_utf8(&rest[..len]).ok()?);
        let flags = rest[len];
        let debits = u128::from_be_bytes(rest[len + 1..len + 17].try_into().ok()?);
        let credits = u128::from_be_bytes(rest[len + 17..len + 33].try_into().ok()?);
        Some(Account {
            currency,
            debits_may_exceed_credits: flags & 1 == 1,
            debits_posted: debits,
            credits_posted: credits,
        })
    }
}

/// A finance transaction from `submitter` of `org`, with `args` as JSON.
/// Fails only when an identifier is malformed.
pub fn transaction(
    id: &str,
    org: &str,
    submitter: &str,
    function: &str,
    args: &serde_json::Value,
) -> Result<Transaction, InvalidId> {
    Ok(Transaction::new(
        TxId::new(id)?,
        FINANCE,
        FunctionName::new(function)?,
        args,
        UserId::new(submitter)?,
        OrgId::new(org)?,
    ))
}

/// `acct/{account}`.
pub fn account_key(account: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + account.len());
    k.extend_from_slice(b"acct/");
    k.extend_from_slice(account.as_bytes());
    k
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_currency(s: &str) -> bool {
    (1..=12).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenAccount {
    account: String,
    currency: String,
    #[serde(default)]
    debits_may_exceed_credits: bool,
}

/// Arguments borrow from the transaction where JSON allows it (no escapes),
/// which keeps decoding on the hot path free of allocations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountRef<'a> {
    org: OrgId,
    #[serde(borrow)]
    account: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferArgs<'a> {
    #[serde(borrow)]
    from: AccountRef<'a>,
    #[serde(borrow)]
    to: AccountRef<'a>,
    amount: u64,
    #[serde(borrow)]
    currency: Cow<'a, str>,
}

/// The finance chaincode.
#[derive(Debug, Clone)]
pub struct Finance {
    domain: DomainId,
}

impl Default for Finance {
    fn default() -> Self {
        Finance::new()
    }
}

impl Finance {
    pub fn new() -> Self {
        Finance { domain: FINANCE }
    }

    fn partition(&self, org: &OrgId) -> PartitionId {
        PartitionId::new(org.clone(), self.domain.clone())
    }
}

fn err(code: Code, message: impl Into<String>) -> ChaincodeError {
    ChaincodeError::new(code, message)
}

struct OpenCall {
    partition: PartitionId,
    key: Vec<u8>,
    account: Account,
    name: String,
}

impl Call for OpenCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        if ctx.get(&self.partition, &self.key)?.is_some() {
            return Err(err(
                errors::ACCOUNT_EXISTS,
                format!("account {} already exists in {}", self.name, self.partition),
            ));
        }
        ctx.put(&self.partition, &self.key, self.account.encode())?;
        ctx.emit(
            &self.partition,
            "account_opened",
            &json!({"account": self.name, "currency": self.account.currency}),
        )?;
        Ok(json!({"account": self.name}))
    }
}

/// One side of a transfer: the account's partition and key.
struct Side {
    partition: PartitionId,
    key: Vec<u8>,
}

impl Side {
    /// The account name, for messages (keys are `acct/{name}`, ASCII).
    fn name(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.key.get(5..).unwrap_or_default())
    }
}

struct TransferCall {
    from: Side,
    to: Side,
    amount: u64,
    currency: SmolStr,
}

fn load(ctx: &mut TxContext<'_>, side: &Side) -> Result<Account, ChaincodeError> {
    // Names are formatted only on the error paths: this runs for every
    // transfer.
    let raw = ctx.get(&side.partition, &side.key)?.ok_or_else(|| {
        err(
            errors::ACCOUNT_NOT_FOUND,
            format!("no account {} in {}", side.name(), side.partition),
        )
    })?;
    Account::decode(&raw).ok_or_else(|| {
        err(
            codes::CHAINCODE_FAULT,
            format!(
                "account {} in {} is not in a known format",
                side.name(),
                side.partition
            ),
        )
    })
}

impl Call for TransferCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let mut from = load(ctx, &self.from)?;
        let mut to = load(ctx, &self.to)?;
        for (acct, side) in [(&from, &self.from), (&to, &self.to)] {
            if acct.currency != self.currency {
                return Err(err(
                    errors::CURRENCY_MISMATCH,
                    format!(
                        "account {} in {} holds {}, not {}",
                        side.name(),
                        side.partition,
                        acct.currency,
                        self.currency
                    ),
                ));
            }
        }
        let amount = u128::from(self.amount);
        from.debits_posted = from
            .debits_posted
            .checked_add(amount)
            .ok_or_else(|| ChaincodeError::overflow("debits"))?;
        if !from.debits_may_exceed_credits && from.debits_posted > from.credits_posted {
            return Err(err(
                errors::INSUFFICIENT_FUNDS,
                format!(
                    "account {} in {} has {} {}, {} needed",
                    self.from.name(),
                    self.from.partition,
                    from.balance(),
                    self.currency,
                    self.amount
                ),
            ));
        }
        to.credits_posted = to
            .credits_posted
            .checked_add(amount)
            .ok_or_else(|| ChaincodeError::overflow("credits"))?;
        ctx.put(&self.from.partition, &self.from.key, from.encode())?;
        ctx.put(&self.to.partition, &self.to.key, to.encode())?;
        // Nothing to return: balances are queried, and a transfer on the hot
        // path should not pay for formatting them.
        Ok(serde_json::Value::Null)
    }
}

impl Chaincode for Finance {
    fn domain(&self) -> &DomainId {
        &self.domain
    }

    fn prepare(&self, tx: &Transaction) -> Result<Prepared, ChaincodeError> {
        match tx.function.as_str() {
            "open_account" => {
                let a: OpenAccount = decode_args(tx)?;
                if !valid_name(&a.account) {
                    return Err(ChaincodeError::invalid_arguments(
                        "account must be 1-64 characters of A-Z a-z 0-9 - _ .",
                    ));
                }
                if !valid_currency(&a.currency) {
                    return Err(ChaincodeError::invalid_arguments(
                        "currency must be 1-12 characters of A-Z 0-9",
                    ));
                }
                let partition = self.partition(&tx.org);
                let key = account_key(&a.account);
                Ok(Prepared {
                    footprint: Footprint::new().write(&partition, key.clone()),
                    call: Box::new(OpenCall {
                        partition,
                        key,
                        account: Account {
                            currency: SmolStr::new(&a.currency),
                            debits_may_exceed_credits: a.debits_may_exceed_credits,
                            debits_posted: 0,
                            credits_posted: 0,
                        },
                        name: a.account,
                    }),
                })
            }
            "transfer" => {
                let a: TransferArgs<'_> = decode_args(tx)?;
                if a.from.org != tx.org {
                    return Err(err(
                        errors::NOT_OWNER,
                        format!(
                            "organization {} cannot debit an account of {}",
                            tx.org, a.from.org
                        ),
                    ));
                }
                if a.amount == 0 {
                    return Err(err(errors::INVALID_AMOUNT, "amount must be positive"));
                }
                if !valid_name(&a.from.account) || !valid_name(&a.to.account) {
                    return Err(ChaincodeError::invalid_arguments("bad account name"));
                }
                if a.from.org == a.to.org && a.from.account == a.to.account {
                    return Err(err(
                        errors::SAME_ACCOUNT,
                        "cannot transfer to the same account",
                    ));
                }
                let from_p = self.partition(&a.from.org);
                let to_p = self.partition(&a.to.org);
                let from_k = account_key(&a.from.account);
                let to_k = account_key(&a.to.account);
                Ok(Prepared {
                    footprint: Footprint::new()
                        .write(&from_p, from_k.clone())
                        .write(&to_p, to_k.clone()),
                    call: Box::new(TransferCall {
                        from: Side {
                            partition: from_p,
                            key: from_k,
                        },
                        to: Side {
                            partition: to_p,
                            key: to_k,
                        },
                        amount: a.amount,
                        currency: SmolStr::new(&a.currency),
                    }),
                })
            }
            other => Err(ChaincodeError::unknown_function(&self.domain, other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_encoding_round_trips_and_rejects_garbage() {
        let a = Account {
            currency: "EUR".into(),
            debits_may_exceed_credits: true,
            debits_posted: 5,
            credits_posted: u128::MAX,
        };
        assert_eq!(Account::decode(&a.encode()), Some(a.clone()));
        let enc = a.encode();
        assert_eq!(Account::decode(&enc[..enc.len() - 1]), None);
        assert_eq!(Account::decode(&[9]), None);
        assert_eq!(Account::decode(&[]), None);
    }
}
