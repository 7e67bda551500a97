//! Finance: double-entry accounts per organization and currency, transfers
//! within and across organizations, two-phase (pending) transfers and linked
//! transfers, on TigerBeetle's model.
//!
//! ## Keys, in partition `(org, finance)`
//! - `acct/{account}`: an [`Account`] (binary, see [`Account::encode`]): its
//!   currency, balance rule, flags and four running totals (debits and
//!   credits, pending and posted), in minor units.
//! - `pend/{transaction id}`: a [`PendingTransfer`] (JSON), in the partition
//!   of the account it debits. It stays after it is posted, voided or expired,
//!   as the transfer's status.
//!
//! ## Functions
//! - `open_account`, `close_account` (no further transfers; only when nothing
//!   is pending).
//! - `transfer`: debits an account of the caller's organization and credits
//!   any account, possibly in another organization: one transaction, two
//!   partitions, atomic. With `pending: true` it only reserves the amount
//!   (`debits_pending`/`credits_pending`) until `post_pending` (the debiting
//!   organization; the full amount or less, the rest is released),
//!   `void_pending` (either party) or `expire_pending` (anyone, once ledger
//!   time has reached the timeout; a node may submit these itself).
//! - `transfer_linked`: up to [`LINKED_LEN_MAX`] transfers that all commit or
//!   none does (e.g. a payment and its fee); the failing leg is named.
//!
//! Idempotency is the ledger's: a transaction id is applied at most once, and
//! a retry of the same id is answered with the first result.
//!
//! ## Rules, per account
//! - `debits_must_not_exceed_credits` (the default): `debits_pending +
//!   debits_posted <= credits_posted + credit_limit` after every transfer.
//! - `credits_must_not_exceed_debits`: `credits_pending + credits_posted <=
//!   debits_posted`.
//! - `none`: an issuer or clearing account, which may go either way; every
//!   unit in circulation is matched by some account's debit.
//!
//! Amounts are integers in minor units; every sum is checked. Both sides of a
//! transfer must hold its currency. Per currency, total debits equal total
//! credits (pending and posted alike) after any sequence of transactions.

use ledger::{
    codes, decode_args, Call, Chaincode, ChaincodeError, ChaincodeVersion, Code, DomainId,
    Footprint, OrgId, PartitionId, Prepared, State, Transaction, TxContext, TxId,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use smol_str::SmolStr;
use std::borrow::Cow;

pub const DOMAIN: &str = "finance";
pub const FINANCE: DomainId = DomainId::from_static(DOMAIN);

/// Most transfers in one `transfer_linked`.
pub const LINKED_LEN_MAX: usize = 8;
/// Longest client reference on a transfer.
pub const REFERENCE_LEN_MAX: usize = 64;

pub mod errors {
    use ledger::Code;
    pub const ACCOUNT_EXISTS: Code = Code::from_static("FINANCE:ACCOUNT_EXISTS");
    pub const ACCOUNT_NOT_FOUND: Code = Code::from_static("FINANCE:ACCOUNT_NOT_FOUND");
    pub const ACCOUNT_CLOSED: Code = Code::from_static("FINANCE:ACCOUNT_CLOSED");
    pub const CURRENCY_MISMATCH: Code = Code::from_static("FINANCE:CURRENCY_MISMATCH");
    /// The debit would take the account's debits beyond its credits (plus
    /// its credit limit).
    pub const INSUFFICIENT_FUNDS: Code = Code::from_static("FINANCE:INSUFFICIENT_FUNDS");
    /// The credit would take a `credits_must_not_exceed_debits` account's
    /// credits beyond its debits.
    pub const CREDITS_EXCEED_DEBITS: Code = Code::from_static("FINANCE:CREDITS_EXCEED_DEBITS");
    pub const NOT_OWNER: Code = Code::from_static("FINANCE:NOT_OWNER");
    pub const INVALID_AMOUNT: Code = Code::from_static("FINANCE:INVALID_AMOUNT");
    pub const SAME_ACCOUNT: Code = Code::from_static("FINANCE:SAME_ACCOUNT");
    pub const PENDING_OUTSTANDING: Code = Code::from_static("FINANCE:PENDING_OUTSTANDING");
    pub const PENDING_NOT_FOUND: Code = Code::from_static("FINANCE:PENDING_NOT_FOUND");
    /// The pending transfer was already posted, voided or expired.
    pub const PENDING_RESOLVED: Code = Code::from_static("FINANCE:PENDING_RESOLVED");
    pub const PENDING_EXPIRED: Code = Code::from_static("FINANCE:PENDING_EXPIRED");
    pub const PENDING_NOT_EXPIRED: Code = Code::from_static("FINANCE:PENDING_NOT_EXPIRED");
    /// The accounts named do not match the pending transfer's.
    pub const PENDING_MISMATCH: Code = Code::from_static("FINANCE:PENDING_MISMATCH");
    pub const POST_EXCEEDS_PENDING: Code = Code::from_static("FINANCE:POST_EXCEEDS_PENDING");
}

/// How an account's balance is bounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceLimit {
    /// Debits (pending and posted) may not exceed posted credits plus the
    /// credit limit: an ordinary account that cannot be overdrawn.
    #[default]
    DebitsMustNotExceedCredits,
    /// Credits (pending and posted) may not exceed posted debits: e.g. a
    /// loan account that can only be repaid up to what was drawn.
    CreditsMustNotExceedDebits,
    /// No bound: an issuer or clearing account.
    None,
}

impl BalanceLimit {
    fn to_bits(self) -> u8 {
        match self {
            BalanceLimit::DebitsMustNotExceedCredits => 0,
            BalanceLimit::CreditsMustNotExceedDebits => 1,
            BalanceLimit::None => 2,
        }
    }

    fn from_bits(b: u8) -> Option<Self> {
        match b {
            0 => Some(BalanceLimit::DebitsMustNotExceedCredits),
            1 => Some(BalanceLimit::CreditsMustNotExceedDebits),
            2 => Some(BalanceLimit::None),
            _ => None,
        }
    }
}

/// An account's stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// At most 12 characters: stored inline, no allocation.
    pub currency: SmolStr,
    pub limit: BalanceLimit,
    /// Overdraft allowed under `DebitsMustNotExceedCredits`, minor units.
    pub credit_limit: u128,
    /// Application-defined type code (e.g. from a chart of accounts).
    pub code: u16,
    pub closed: bool,
    pub debits_pending: u128,
    pub debits_posted: u128,
    pub credits_pending: u128,
    pub credits_posted: u128,
}

const ACCOUNT_FORMAT: u8 = 2;
const ACCOUNT_FORMAT_1: u8 = 1;
const CLOSED_BIT: u8 = 0x80;

impl Account {
    pub fn new(currency: &str, limit: BalanceLimit) -> Self {
        Account {
            currency: SmolStr::new(currency),
            limit,
            credit_limit: 0,
            code: 0,
            closed: false,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
        }
    }

    /// Posted `credits - debits`, which may be negative.
    pub fn balance(&self) -> i128 {
        signed_difference(self.credits_posted, self.debits_posted)
    }

    /// What can still be debited now: posted credits plus the credit limit,
    /// less posted and pending debits (unbounded accounts report `None`).
    pub fn available(&self) -> Option<i128> {
        match self.limit {
            BalanceLimit::DebitsMustNotExceedCredits => Some(signed_difference(
                self.credits_posted.saturating_add(self.credit_limit),
                self.debits_posted.saturating_add(self.debits_pending),
            )),
            _ => None,
        }
    }

    /// Format 2: version byte, currency (length byte + ASCII), flags byte
    /// (balance limit in the low bits, closed in the top bit), code (u16),
    /// then credit limit, debits pending, debits posted, credits pending and
    /// credits posted as big-endian u128.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.currency.len() + 80);
        out.push(ACCOUNT_FORMAT);
        out.push(self.currency.len() as u8);
        out.extend_from_slice(self.currency.as_bytes());
        out.push(self.limit.to_bits() | if self.closed { CLOSED_BIT } else { 0 });
        out.extend_from_slice(&self.code.to_be_bytes());
        for v in [
            self.credit_limit,
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
        ] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Account> {
        let (&format, rest) = b.split_first()?;
        if format == ACCOUNT_FORMAT_1 {
            return Account::decode_format_1(rest);
        }
        if format != ACCOUNT_FORMAT {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if rest.len() != len + 3 + 80 {
            return None;
        }
        let currency = SmolStr::new(std::str::from_utf8(&rest[..len]).ok()?);
        let flags = rest[len];
        let code = u16::from_be_bytes(rest[len + 1..len + 3].try_into().ok()?);
        let mut n = [0u128; 5];
        for (i, v) in n.iter_mut().enumerate() {
            let at = len + 3 + 16 * i;
            *v = u128::from_be_bytes(rest[at..at + 16].try_into().ok()?);
        }
        Some(Account {
            currency,
            limit: BalanceLimit::from_bits(flags & !CLOSED_BIT)?,
            credit_limit: n[0],
            code,
            closed: flags & CLOSED_BIT != 0,
            debits_pending: n[1],
            debits_posted: n[2],
            credits_pending: n[3],
            credits_posted: n[4],
        })
    }

    /// Format 1 (before two-phase transfers and balance rules): currency,
    /// a flag byte (1: debits may exceed credits), posted debits and
    /// credits. Accounts written then still load; the next write stores
    /// them in format 2.
    fn decode_format_1(rest: &[u8]) -> Option<Account> {
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if rest.len() != len + 1 + 32 {
            return None;
        }
        let currency = std::str::from_utf8(&rest[..len]).ok()?;
        let limit = match rest[len] {
            0 => BalanceLimit::DebitsMustNotExceedCredits,
            1 => BalanceLimit::None,
            _ => return None,
        };
        let mut a = Account::new(currency, limit);
        a.debits_posted = u128::from_be_bytes(rest[len + 1..len + 17].try_into().ok()?);
        a.credits_posted = u128::from_be_bytes(rest[len + 17..len + 33].try_into().ok()?);
        Some(a)
    }

    /// Adds a debit (pending or posted) if the balance rule allows it; the
    /// account is unchanged when it does not (so an error shows the balance
    /// the transfer found).
    fn debit(&mut self, amount: u128, pending: bool) -> Result<(), RuleBroken> {
        let (mut d_pending, mut d_posted) = (self.debits_pending, self.debits_posted);
        let total = if pending {
            &mut d_pending
        } else {
            &mut d_posted
        };
        *total = total.checked_add(amount).ok_or(RuleBroken::Overflow)?;
        if self.limit == BalanceLimit::DebitsMustNotExceedCredits {
            let debits = d_pending
                .checked_add(d_posted)
                .ok_or(RuleBroken::Overflow)?;
            if debits > self.credits_posted.saturating_add(self.credit_limit) {
                return Err(RuleBroken::InsufficientFunds);
            }
        }
        (self.debits_pending, self.debits_posted) = (d_pending, d_posted);
        Ok(())
    }

    /// Adds a credit (pending or posted) if the balance rule allows it; the
    /// account is unchanged when it does not.
    fn credit(&mut self, amount: u128, pending: bool) -> Result<(), RuleBroken> {
        let (mut c_pending, mut c_posted) = (self.credits_pending, self.credits_posted);
        let total = if pending {
            &mut c_pending
        } else {
            &mut c_posted
        };
        *total = total.checked_add(amount).ok_or(RuleBroken::Overflow)?;
        if self.limit == BalanceLimit::CreditsMustNotExceedDebits {
            let credits = c_pending
                .checked_add(c_posted)
                .ok_or(RuleBroken::Overflow)?;
            if credits > self.debits_posted {
                return Err(RuleBroken::CreditsExceedDebits);
            }
        }
        (self.credits_pending, self.credits_posted) = (c_pending, c_posted);
        Ok(())
    }
}

/// Why a debit or credit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleBroken {
    InsufficientFunds,
    CreditsExceedDebits,
    Overflow,
}

fn signed_difference(plus: u128, minus: u128) -> i128 {
    // A difference beyond i128 would need more money than exists: saturate
    // rather than wrap.
    let p = i128::try_from(plus).unwrap_or(i128::MAX);
    let m = i128::try_from(minus).unwrap_or(i128::MAX);
    p.saturating_sub(m)
}

/// Where a pending transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// A two-phase transfer's record, stored at `pend/{id}` in the debited
/// account's partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTransfer {
    /// The transaction id that created it.
    pub id: String,
    pub from: AccountAddress,
    pub to: AccountAddress,
    /// Reserved amount, minor units.
    pub amount: u64,
    pub currency: String,
    /// Ledger time (ms) from which it can no longer be posted; `None`: never.
    pub expires_at_ms: Option<u64>,
    pub created_at_ms: u64,
    pub code: u16,
    pub reference: Option<String>,
    pub state: PendingState,
    /// The amount posted, once posted (at most `amount`).
    pub posted_amount: Option<u64>,
    /// Ledger time of the post, void or expiry.
    pub resolved_at_ms: Option<u64>,
    /// The transaction that posted, voided or expired it.
    pub resolved_by: Option<String>,
}

/// An account named by organization and name, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountAddress {
    pub org: String,
    pub account: String,
}

/// `acct/{account}`.
pub fn account_key(account: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + account.len());
    k.extend_from_slice(b"acct/");
    k.extend_from_slice(account.as_bytes());
    k
}

/// `pend/{transaction id}`.
pub fn pending_key(id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + id.len());
    k.extend_from_slice(b"pend/");
    k.extend_from_slice(id.as_bytes());
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

/// The chaincode version from which transfers may carry a memo.
pub const MEMO_VERSION: ChaincodeVersion = ChaincodeVersion(2);
/// Longest memo, in characters (ISO 20022's unstructured remittance line).
pub const MEMO_CHARS_MAX: usize = 140;

fn valid_memo(s: &str) -> bool {
    let n = s.chars().count();
    (1..=MEMO_CHARS_MAX).contains(&n) && !s.chars().any(char::is_control)
}

fn valid_reference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= REFERENCE_LEN_MAX
        && s.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

/// Arguments of `open_account`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountArgs {
    /// Account name, unique within the organization: 1-64 characters of
    /// `A-Z a-z 0-9 - _ .`.
    pub account: String,
    /// Currency or asset code: 1-12 characters of `A-Z 0-9` (e.g. `EUR`).
    pub currency: String,
    /// How the balance is bounded (default `debits_must_not_exceed_credits`).
    #[serde(default)]
    pub limit: BalanceLimit,
    /// Overdraft allowed, in minor units; only with
    /// `debits_must_not_exceed_credits` (default 0).
    #[serde(default)]
    pub credit_limit: u64,
    /// Application-defined account type code (default 0).
    #[serde(default)]
    pub code: u16,
}

/// Arguments of `close_account`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseAccountArgs {
    /// Name of an account of the caller's organization.
    pub account: String,
}

/// An account of some organization. Borrows from the transaction where the
/// JSON allows it (no escapes), which keeps the hot path free of allocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRef<'a> {
    /// The organization holding the account.
    pub org: OrgId,
    /// The account's name within that organization.
    #[serde(borrow)]
    pub account: Cow<'a, str>,
}

/// Arguments of `transfer` (and of each leg of `transfer_linked`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferArgs<'a> {
    /// The debited account: it must belong to the caller's organization.
    #[serde(borrow)]
    pub from: AccountRef<'a>,
    /// The credited account, in any organization.
    #[serde(borrow)]
    pub to: AccountRef<'a>,
    /// Amount in minor units (e.g. cents), at least 1.
    pub amount: u64,
    /// Currency of the amount; both accounts must hold it.
    #[serde(borrow)]
    pub currency: Cow<'a, str>,
    /// Only reserve the amount, to be posted or voided later (two-phase).
    #[serde(default)]
    pub pending: bool,
    /// With `pending`: milliseconds of ledger time after which the transfer
    /// can no longer be posted (0 or absent: no timeout).
    #[serde(default)]
    pub timeout_ms: u64,
    /// Application-defined transfer code (e.g. the kind of payment).
    #[serde(default)]
    pub code: u16,
    /// Client reference (invoice number and the like): 1-64 printable ASCII
    /// characters.
    #[serde(default, borrow)]
    pub reference: Option<Cow<'a, str>>,
    /// Remittance information for the payee (chaincode version 2 on): 1-140
    /// characters, no control characters. Under version 1 a transfer with a
    /// memo is refused (`LEDGER:INVALID_ARGUMENTS`).
    #[serde(default, borrow)]
    pub memo: Option<Cow<'a, str>>,
}

/// Arguments of `transfer_linked`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkedArgs<'a> {
    /// 1 to 8 posted transfers, applied in order, all or none.
    #[serde(borrow)]
    pub transfers: Vec<TransferArgs<'a>>,
}

/// Arguments of `post_pending`, `void_pending` and `expire_pending`. The
/// accounts are repeated so that the call can declare what it touches; they
/// must match the pending transfer's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveArgs<'a> {
    /// Id of the transaction that created the pending transfer.
    pub pending_id: TxId,
    /// The pending transfer's debited account.
    #[serde(borrow)]
    pub from: AccountRef<'a>,
    /// The pending transfer's credited account.
    #[serde(borrow)]
    pub to: AccountRef<'a>,
    /// `post_pending` only: the amount to post, at most the pending amount
    /// (default: all of it); the rest is released.
    #[serde(default)]
    pub amount: Option<u64>,
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

    fn side(&self, r: &AccountRef<'_>) -> Result<Side, ChaincodeError> {
        if !valid_name(&r.account) {
            return Err(ChaincodeError::invalid_arguments(
                "account names are 1-64 characters of A-Z a-z 0-9 - _ .",
            ));
        }
        Ok(Side {
            partition: self.partition(&r.org),
            key: account_key(&r.account),
        })
    }

    /// Validates one transfer's arguments for a caller of `org`.
    fn leg(
        &self,
        org: &OrgId,
        a: &TransferArgs<'_>,
        version: ChaincodeVersion,
    ) -> Result<Leg, ChaincodeError> {
        if a.from.org != *org {
            return Err(err(
                errors::NOT_OWNER,
                format!(
                    "organization {org} cannot debit an account of {}",
                    a.from.org
                ),
            ));
        }
        if a.amount == 0 {
            return Err(err(errors::INVALID_AMOUNT, "amount must be positive"));
        }
        if !valid_currency(&a.currency) {
            return Err(ChaincodeError::invalid_arguments(
                "currency must be 1-12 characters of A-Z 0-9",
            ));
        }
        if a.reference.as_deref().is_some_and(|r| !valid_reference(r)) {
            return Err(ChaincodeError::invalid_arguments(
                "reference must be 1-64 printable ASCII characters",
            ));
        }
        if let Some(memo) = a.memo.as_deref() {
            if version < MEMO_VERSION {
                return Err(ChaincodeError::invalid_arguments(format!(
                    "memo needs chaincode version {MEMO_VERSION}; this block runs version {version}"
                )));
            }
            if !valid_memo(memo) {
                return Err(ChaincodeError::invalid_arguments(
                    "memo must be 1-140 characters without control characters",
                ));
            }
        }
        if !a.pending && a.timeout_ms != 0 {
            return Err(ChaincodeError::invalid_arguments(
                "timeout_ms applies only to pending transfers",
            ));
        }
        let from = self.side(&a.from)?;
        let to = self.side(&a.to)?;
        if from == to {
            return Err(err(
                errors::SAME_ACCOUNT,
                "cannot transfer to the same account",
            ));
        }
        Ok(Leg {
            from,
            to,
            amount: a.amount,
            currency: SmolStr::new(&a.currency),
        })
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

struct CloseCall {
    side: Side,
}

impl Call for CloseCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let mut a = load(ctx, &self.side)?;
        if a.closed {
            return Err(err(
                errors::ACCOUNT_CLOSED,
                format!("account {} is already closed", self.side.name()),
            ));
        }
        if a.debits_pending != 0 || a.credits_pending != 0 {
            return Err(err(
                errors::PENDING_OUTSTANDING,
                format!(
                    "account {} has pending transfers; post or void them first",
                    self.side.name()
                ),
            ));
        }
        a.closed = true;
        ctx.put(&self.side.partition, &self.side.key, a.encode())?;
        ctx.emit(
            &self.side.partition,
            "account_closed",
            &json!({"account": self.side.name(), "balance": a.balance().to_string()}),
        )?;
        Ok(json!({"account": self.side.name(), "balance": a.balance().to_string()}))
    }
}

/// One side of a transfer: the account's partition and key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Side {
    partition: PartitionId,
    key: Vec<u8>,
}

impl Side {
    /// The account name, for messages (keys are `acct/{name}`, ASCII).
    fn name(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.key.get(5..).unwrap_or_default())
    }

    fn address(&self) -> AccountAddress {
        AccountAddress {
            org: self.partition.org.to_string(),
            account: self.name().into_owned(),
        }
    }
}

/// A validated transfer.
struct Leg {
    from: Side,
    to: Side,
    amount: u64,
    currency: SmolStr,
}

fn load(ctx: &mut TxContext<'_>, side: &Side) -> Result<Account, ChaincodeError> {
    // Names are formatted only on the error paths: this runs for every
    // transfer. Decoded from the stored bytes, without copying them.
    let decoded = ctx.get_with(&side.partition, &side.key, |raw| raw.map(Account::decode))?;
    let decoded = decoded.ok_or_else(|| {
        err(
            errors::ACCOUNT_NOT_FOUND,
            format!("no account {} in {}", side.name(), side.partition),
        )
    })?;
    decoded.ok_or_else(|| {
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

/// Loads both accounts of a new transfer and checks they can take it.
fn load_open_pair(
    ctx: &mut TxContext<'_>,
    leg: &Leg,
) -> Result<(Account, Account), ChaincodeError> {
    let from = load(ctx, &leg.from)?;
    let to = load(ctx, &leg.to)?;
    for (acct, side) in [(&from, &leg.from), (&to, &leg.to)] {
        if acct.currency != leg.currency {
            return Err(err(
                errors::CURRENCY_MISMATCH,
                format!(
                    "account {} in {} holds {}, not {}",
                    side.name(),
                    side.partition,
                    acct.currency,
                    leg.currency
                ),
            ));
        }
        if acct.closed {
            return Err(err(
                errors::ACCOUNT_CLOSED,
                format!("account {} in {} is closed", side.name(), side.partition),
            ));
        }
    }
    Ok((from, to))
}

/// Turns a balance-rule failure into an error naming the account.
fn rule_error(broken: RuleBroken, side: &Side, acct: &Account, leg: &Leg) -> ChaincodeError {
    match broken {
        RuleBroken::InsufficientFunds => err(
            errors::INSUFFICIENT_FUNDS,
            format!(
                "account {} in {} has {} {} available, {} needed",
                side.name(),
                side.partition,
                acct.available().unwrap_or_default(),
                leg.currency,
                leg.amount
            ),
        ),
        RuleBroken::CreditsExceedDebits => err(
            errors::CREDITS_EXCEED_DEBITS,
            format!(
                "account {} in {} may not be credited beyond its debits",
                side.name(),
                side.partition
            ),
        ),
        RuleBroken::Overflow => ChaincodeError::overflow("account totals"),
    }
}

/// Applies one transfer (posted, or reserved when `pending`) to the two
/// accounts and stores them.
fn apply_leg(ctx: &mut TxContext<'_>, leg: &Leg, pending: bool) -> Result<(), ChaincodeError> {
    let (mut from, mut to) = load_open_pair(ctx, leg)?;
    let amount = u128::from(leg.amount);
    from.debit(amount, pending)
        .map_err(|c| rule_error(c, &leg.from, &from, leg))?;
    to.credit(amount, pending)
        .map_err(|c| rule_error(c, &leg.to, &to, leg))?;
    ctx.put(&leg.from.partition, &leg.from.key, from.encode())?;
    ctx.put(&leg.to.partition, &leg.to.key, to.encode())?;
    Ok(())
}

struct TransferCall {
    leg: Leg,
}

impl Call for TransferCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        apply_leg(ctx, &self.leg, false)?;
        // Nothing to return: balances are queried, and a transfer on the hot
        // path should not pay for formatting them.
        Ok(serde_json::Value::Null)
    }
}

struct PendingCall {
    leg: Leg,
    timeout_ms: u64,
    code: u16,
    reference: Option<String>,
    record_key: Vec<u8>,
}

impl Call for PendingCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        apply_leg(ctx, &self.leg, true)?;
        let now = ctx.timestamp().0;
        let expires_at_ms = match self.timeout_ms {
            0 => None,
            t => Some(
                now.checked_add(t)
                    .ok_or_else(|| ChaincodeError::overflow("timeout"))?,
            ),
        };
        let record = PendingTransfer {
            id: ctx.tx().id.to_string(),
            from: self.leg.from.address(),
            to: self.leg.to.address(),
            amount: self.leg.amount,
            currency: self.leg.currency.to_string(),
            expires_at_ms,
            created_at_ms: now,
            code: self.code,
            reference: self.reference.clone(),
            state: PendingState::Pending,
            posted_amount: None,
            resolved_at_ms: None,
            resolved_by: None,
        };
        store_pending(ctx, &self.leg.from.partition, &self.record_key, &record)?;
        let event = json!({"id": record.id, "amount": record.amount, "currency": record.currency,
            "from": record.from, "to": record.to, "expires_at_ms": expires_at_ms});
        emit_both(ctx, &self.leg, "pending_created", &event)?;
        Ok(json!({"pending_id": record.id, "expires_at_ms": expires_at_ms}))
    }
}

fn store_pending(
    ctx: &mut TxContext<'_>,
    partition: &PartitionId,
    key: &[u8],
    record: &PendingTransfer,
) -> Result<(), ChaincodeError> {
    let bytes = serde_json::to_vec(record).map_err(|e| {
        err(
            codes::CHAINCODE_FAULT,
            format!("encoding a pending transfer: {e}"),
        )
    })?;
    ctx.put(partition, key, bytes)
}

fn emit_both(
    ctx: &mut TxContext<'_>,
    leg: &Leg,
    name: &str,
    data: &serde_json::Value,
) -> Result<(), ChaincodeError> {
    ctx.emit(&leg.from.partition, name, data)?;
    if leg.to.partition != leg.from.partition {
        ctx.emit(&leg.to.partition, name, data)?;
    }
    Ok(())
}

struct LinkedCall {
    legs: Vec<Leg>,
}

impl Call for LinkedCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        // A failed leg fails the transaction, and a failed transaction's
        // writes are all discarded: all or none.
        for (i, leg) in self.legs.iter().enumerate() {
            apply_leg(ctx, leg, false).map_err(|e| {
                ChaincodeError::new(e.code, format!("transfer {i} of the chain: {}", e.message))
            })?;
        }
        Ok(json!({"transfers": self.legs.len()}))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Post,
    Void,
    Expire,
}

struct ResolveCall {
    how: Resolution,
    pending_id: TxId,
    record_key: Vec<u8>,
    from: Side,
    to: Side,
    amount: Option<u64>,
}

impl Call for ResolveCall {
    fn execute(&self, ctx: &mut TxContext<'_>) -> Result<serde_json::Value, ChaincodeError> {
        let raw = ctx
            .get(&self.from.partition, &self.record_key)?
            .ok_or_else(|| {
                err(
                    errors::PENDING_NOT_FOUND,
                    format!(
                        "no pending transfer {} debiting {} in {}",
                        self.pending_id,
                        self.from.name(),
                        self.from.partition
                    ),
                )
            })?;
        let mut record: PendingTransfer = serde_json::from_slice(&raw).map_err(|e| {
            err(
                codes::CHAINCODE_FAULT,
                format!("pending transfer {} is unreadable: {e}", self.pending_id),
            )
        })?;
        if record.from != self.from.address() || record.to != self.to.address() {
            return Err(err(
                errors::PENDING_MISMATCH,
                format!(
                    "pending transfer {} moves {}/{} to {}/{}",
                    record.id,
                    record.from.org,
                    record.from.account,
                    record.to.org,
                    record.to.account
                ),
            ));
        }
        if record.state != PendingState::Pending {
            return Err(err(
                errors::PENDING_RESOLVED,
                format!(
                    "pending transfer {} is already {:?}",
                    record.id, record.state
                )
                .to_lowercase(),
            ));
        }
        let now = ctx.timestamp().0;
        let expired = record.expires_at_ms.is_some_and(|at| now >= at);
        let posted = match self.how {
            Resolution::Post if expired => {
                return Err(err(
                    errors::PENDING_EXPIRED,
                    format!("pending transfer {} expired; void or expire it", record.id),
                ))
            }
            Resolution::Post => {
                let amount = self.amount.unwrap_or(record.amount);
                if amount == 0 {
                    return Err(err(errors::INVALID_AMOUNT, "amount must be positive"));
                }
                if amount > record.amount {
                    return Err(err(
                        errors::POST_EXCEEDS_PENDING,
                        format!("cannot post {amount}: {} is pending", record.amount),
                    ));
                }
                amount
            }
            Resolution::Expire if !expired => {
                return Err(err(
                    errors::PENDING_NOT_EXPIRED,
                    match record.expires_at_ms {
                        Some(at) => format!("pending transfer {} expires at {at}", record.id),
                        None => format!("pending transfer {} has no timeout", record.id),
                    },
                ))
            }
            Resolution::Void | Resolution::Expire => 0,
        };
        let mut from = load(ctx, &self.from)?;
        let mut to = load(ctx, &self.to)?;
        let reserved = u128::from(record.amount);
        let settled = u128::from(posted);
        from.debits_pending = from
            .debits_pending
            .checked_sub(reserved)
            .ok_or_else(|| err(codes::CHAINCODE_FAULT, "pending debits below a reservation"))?;
        to.credits_pending = to.credits_pending.checked_sub(reserved).ok_or_else(|| {
            err(
                codes::CHAINCODE_FAULT,
                "pending credits below a reservation",
            )
        })?;
        // Posting moves at most what was reserved, so neither balance rule
        // can newly fail; totals are still checked.
        from.debits_posted = from
            .debits_posted
            .checked_add(settled)
            .ok_or_else(|| ChaincodeError::overflow("debits"))?;
        to.credits_posted = to
            .credits_posted
            .checked_add(settled)
            .ok_or_else(|| ChaincodeError::overflow("credits"))?;
        ctx.put(&self.from.partition, &self.from.key, from.encode())?;
        ctx.put(&self.to.partition, &self.to.key, to.encode())?;
        record.state = match self.how {
            Resolution::Post => PendingState::Posted,
            Resolution::Void => PendingState::Voided,
            Resolution::Expire => PendingState::Expired,
        };
        record.posted_amount = (self.how == Resolution::Post).then_some(posted);
        record.resolved_at_ms = Some(now);
        record.resolved_by = Some(ctx.tx().id.to_string());
        store_pending(ctx, &self.from.partition, &self.record_key, &record)?;
        let name = match self.how {
            Resolution::Post => "pending_posted",
            Resolution::Void => "pending_voided",
            Resolution::Expire => "pending_expired",
        };
        let event =
            json!({"id": record.id, "state": record.state, "posted_amount": record.posted_amount});
        ctx.emit(&self.from.partition, name, &event)?;
        if self.to.partition != self.from.partition {
            ctx.emit(&self.to.partition, name, &event)?;
        }
        Ok(event)
    }
}

impl Chaincode for Finance {
    fn domain(&self) -> &DomainId {
        &self.domain
    }

    fn functions(&self) -> &'static [&'static str] {
        &[
            "open_account",
            "close_account",
            "transfer",
            "transfer_linked",
            "post_pending",
            "void_pending",
            "expire_pending",
        ]
    }

    /// Transfers decode and encode fixed-size binary accounts.
    fn light(&self) -> bool {
        true
    }

    fn prepare(&self, tx: &Transaction) -> Result<Prepared, ChaincodeError> {
        self.prepare_at(tx, ChaincodeVersion::FIRST)
    }

    /// Version 2 adds transfer memos; everything else is the same in both.
    fn prepare_at(
        &self,
        tx: &Transaction,
        version: ChaincodeVersion,
    ) -> Result<Prepared, ChaincodeError> {
        match tx.function.as_str() {
            "transfer" => {
                let a: TransferArgs<'_> = decode_args(tx)?;
                let leg = self.leg(&tx.org, &a, version)?;
                let footprint = Footprint::new()
                    .write(&leg.from.partition, leg.from.key.clone())
                    .write(&leg.to.partition, leg.to.key.clone());
                if !a.pending {
                    return Ok(Prepared {
                        footprint,
                        call: Box::new(TransferCall { leg }),
                    });
                }
                let record_key = pending_key(tx.id.as_str());
                Ok(Prepared {
                    footprint: footprint.write(&leg.from.partition, record_key.clone()),
                    call: Box::new(PendingCall {
                        timeout_ms: a.timeout_ms,
                        code: a.code,
                        reference: a.reference.map(Cow::into_owned),
                        record_key,
                        leg,
                    }),
                })
            }
            "transfer_linked" => {
                let a: LinkedArgs<'_> = decode_args(tx)?;
                if a.transfers.is_empty() || a.transfers.len() > LINKED_LEN_MAX {
                    return Err(ChaincodeError::invalid_arguments(format!(
                        "a linked chain has 1 to {LINKED_LEN_MAX} transfers"
                    )));
                }
                let mut footprint = Footprint::new();
                let mut legs = Vec::with_capacity(a.transfers.len());
                for (i, t) in a.transfers.iter().enumerate() {
                    if t.pending {
                        return Err(ChaincodeError::invalid_arguments(
                            "linked transfers are posted; use transfer for pending ones",
                        ));
                    }
                    let leg = self.leg(&tx.org, t, version).map_err(|e| {
                        ChaincodeError::new(
                            e.code,
                            format!("transfer {i} of the chain: {}", e.message),
                        )
                    })?;
                    footprint = footprint
                        .write(&leg.from.partition, leg.from.key.clone())
                        .write(&leg.to.partition, leg.to.key.clone());
                    legs.push(leg);
                }
                Ok(Prepared {
                    footprint,
                    call: Box::new(LinkedCall { legs }),
                })
            }
            f @ ("post_pending" | "void_pending" | "expire_pending") => {
                let a: ResolveArgs<'_> = decode_args(tx)?;
                let how = match f {
                    "post_pending" => Resolution::Post,
                    "void_pending" => Resolution::Void,
                    _ => Resolution::Expire,
                };
                let allowed = match how {
                    Resolution::Post => a.from.org == tx.org,
                    Resolution::Void => a.from.org == tx.org || a.to.org == tx.org,
                    Resolution::Expire => true,
                };
                if !allowed {
                    return Err(err(
                        errors::NOT_OWNER,
                        format!(
                            "organization {} cannot {} a transfer from {} to {}",
                            tx.org,
                            if how == Resolution::Post {
                                "post"
                            } else {
                                "void"
                            },
                            a.from.org,
                            a.to.org
                        ),
                    ));
                }
                if how != Resolution::Post && a.amount.is_some() {
                    return Err(ChaincodeError::invalid_arguments(
                        "amount applies only to post_pending",
                    ));
                }
                let from = self.side(&a.from)?;
                let to = self.side(&a.to)?;
                let record_key = pending_key(a.pending_id.as_str());
                Ok(Prepared {
                    footprint: Footprint::new()
                        .write(&from.partition, from.key.clone())
                        .write(&from.partition, record_key.clone())
                        .write(&to.partition, to.key.clone()),
                    call: Box::new(ResolveCall {
                        how,
                        pending_id: a.pending_id,
                        record_key,
                        from,
                        to,
                        amount: a.amount,
                    }),
                })
            }
            "open_account" => {
                let a: OpenAccountArgs = decode_args(tx)?;
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
                if a.credit_limit != 0 && a.limit != BalanceLimit::DebitsMustNotExceedCredits {
                    return Err(ChaincodeError::invalid_arguments(
                        "credit_limit applies only to debits_must_not_exceed_credits",
                    ));
                }
                let partition = self.partition(&tx.org);
                let key = account_key(&a.account);
                let mut account = Account::new(&a.currency, a.limit);
                account.credit_limit = u128::from(a.credit_limit);
                account.code = a.code;
                Ok(Prepared {
                    footprint: Footprint::new().write(&partition, key.clone()),
                    call: Box::new(OpenCall {
                        partition,
                        key,
                        account,
                        name: a.account,
                    }),
                })
            }
            "close_account" => {
                let a: CloseAccountArgs = decode_args(tx)?;
                let side = self.side(&AccountRef {
                    org: tx.org.clone(),
                    account: Cow::Borrowed(&a.account),
                })?;
                Ok(Prepared {
                    footprint: Footprint::new().write(&side.partition, side.key.clone()),
                    call: Box::new(CloseCall { side }),
                })
            }
            other => Err(ChaincodeError::unknown_function(&self.domain, other)),
        }
    }
}

/// An account's balances, as queries return them. Amounts are decimal
/// strings of minor units (they may exceed what JSON numbers carry exactly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    pub org: String,
    pub account: String,
    pub currency: String,
    pub limit: BalanceLimit,
    pub credit_limit: String,
    pub code: u16,
    pub closed: bool,
    pub debits_pending: String,
    pub debits_posted: String,
    pub credits_pending: String,
    pub credits_posted: String,
    /// Posted credits minus posted debits.
    pub balance: String,
    /// What can still be debited (absent for unbounded accounts).
    pub available: Option<String>,
}

impl AccountView {
    fn new(org: &OrgId, name: &str, a: &Account) -> Self {
        AccountView {
            org: org.to_string(),
            account: name.to_string(),
            currency: a.currency.to_string(),
            limit: a.limit,
            credit_limit: a.credit_limit.to_string(),
            code: a.code,
            closed: a.closed,
            debits_pending: a.debits_pending.to_string(),
            debits_posted: a.debits_posted.to_string(),
            credits_pending: a.credits_pending.to_string(),
            credits_posted: a.credits_posted.to_string(),
            balance: a.balance().to_string(),
            available: a.available().map(|v| v.to_string()),
        }
    }
}

/// One account of `org`, if it exists.
pub fn account(state: &State, org: &OrgId, name: &str) -> Option<AccountView> {
    let pid = PartitionId::new(org.clone(), FINANCE);
    let entry = state.get(&pid, &account_key(name))?;
    Some(AccountView::new(org, name, &Account::decode(&entry.value)?))
}

/// `org`'s accounts in name order, after `after` (exclusive), at most `limit`.
pub fn accounts(state: &State, org: &OrgId, after: Option<&str>, limit: usize) -> Vec<AccountView> {
    let pid = PartitionId::new(org.clone(), FINANCE);
    let Some(part) = state.partition(&pid) else {
        return Vec::new();
    };
    // The page starts at its cursor in the ordered key set (no rescan of
    // the pages before it).
    let after = after.map(account_key);
    part.entries
        .scan_after(b"acct/", after.as_deref())
        .filter_map(|(k, e)| {
            let name = std::str::from_utf8(k.get(5..)?).ok()?;
            Some(AccountView::new(org, name, &Account::decode(&e.value)?))
        })
        .take(limit)
        .collect()
}

/// A pending transfer debiting an account of `org`, by the id of the
/// transaction that created it.
pub fn pending_transfer(state: &State, org: &OrgId, id: &str) -> Option<PendingTransfer> {
    let pid = PartitionId::new(org.clone(), FINANCE);
    serde_json::from_slice(&state.get(&pid, &pending_key(id))?.value).ok()
}

/// `org`'s two-phase transfers (any state) in id order, after `after`, at
/// most `limit`.
pub fn pending_transfers(
    state: &State,
    org: &OrgId,
    after: Option<&str>,
    limit: usize,
) -> Vec<PendingTransfer> {
    let pid = PartitionId::new(org.clone(), FINANCE);
    let Some(part) = state.partition(&pid) else {
        return Vec::new();
    };
    let after = after.map(pending_key);
    part.entries
        .scan_after(b"pend/", after.as_deref())
        .filter_map(|(_, e)| serde_json::from_slice(&e.value).ok())
        .take(limit)
        .collect()
}

/// One change of an account, as its history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHistoryEntry {
    /// Block height and index of the transaction in it: the paging cursor.
    pub height: u64,
    pub index: u32,
    /// The block's ledger time, ms since the epoch.
    pub timestamp_ms: u64,
    pub tx_id: String,
    /// The finance function that changed the account.
    pub function: String,
    /// The counterparty (for transfers and their resolutions).
    pub counterparty: Option<AccountAddress>,
    /// Signed change of the posted balance (credits minus debits), minor
    /// units.
    pub posted_change: String,
    /// Signed change of pending debits plus pending credits.
    pub pending_change: String,
    /// The account after the change.
    pub account: AccountView,
}

/// An account's changes in ledger order (which is time order), after
/// `after` = `(height, index)`, at most `limit`: every transfer, pending
/// reservation, post, void or expiry that touched it, with the balances that
/// followed. Read from the chain through the engine's key history.
pub fn account_history(
    engine: &mut ledger::engine::Engine,
    org: &OrgId,
    account: &str,
    after: Option<(u64, u32)>,
    limit: usize,
) -> Result<Vec<AccountHistoryEntry>, ledger::LedgerError> {
    let pid = PartitionId::new(org.clone(), FINANCE);
    let key = account_key(account);
    let after = after.map(|(height, index)| ledger::Version { height, index });
    // The version before the page's first, for the first change's delta.
    let mut previous: Option<Account> = match after {
        Some(v) => engine
            .key_version_at(&pid, &key, v)?
            .and_then(|kv| Account::decode(kv.value.as_deref()?)),
        None => None,
    };
    let mut out = Vec::new();
    for kv in engine.key_history(&pid, &key, after, limit)? {
        let Some(now) = kv.value.as_deref().and_then(Account::decode) else {
            continue;
        };
        let before = previous.as_ref();
        let posted_change = now
            .balance()
            .saturating_sub(before.map_or(0, Account::balance));
        let pending =
            |a: &Account| signed_difference(a.debits_pending.saturating_add(a.credits_pending), 0);
        let pending_change = pending(&now).saturating_sub(before.map_or(0, pending));
        out.push(AccountHistoryEntry {
            height: kv.version.height,
            index: kv.version.index,
            timestamp_ms: kv.timestamp.0,
            tx_id: kv.tx.id.to_string(),
            function: kv.tx.function.to_string(),
            counterparty: counterparty(&kv.tx, org, account),
            posted_change: posted_change.to_string(),
            pending_change: pending_change.to_string(),
            account: AccountView::new(org, account, &now),
        });
        previous = Some(now);
    }
    Ok(out)
}

/// The other account of a transfer-like transaction, seen from
/// `org`/`account` (for a linked chain, that of its first leg touching the
/// account).
fn counterparty(tx: &Transaction, org: &OrgId, account: &str) -> Option<AccountAddress> {
    let v: serde_json::Value = serde_json::from_slice(&tx.args).ok()?;
    let legs: Vec<&serde_json::Value> = match tx.function.as_str() {
        "transfer" | "post_pending" | "void_pending" | "expire_pending" => vec![&v],
        "transfer_linked" => v.get("transfers")?.as_array()?.iter().collect(),
        _ => return None,
    };
    let side = |leg: &serde_json::Value, name: &str| -> Option<AccountAddress> {
        serde_json::from_value(leg.get(name)?.clone()).ok()
    };
    legs.into_iter().find_map(|leg| {
        let (from, to) = (side(leg, "from")?, side(leg, "to")?);
        let is_me = |a: &AccountAddress| a.org == org.as_str() && a.account == account;
        if is_me(&from) {
            Some(to)
        } else if is_me(&to) {
            Some(from)
        } else {
            None
        }
    })
}

/// Per-currency totals over every account in `state`: (debits pending,
/// debits posted, credits pending, credits posted). Double entry means the
/// debit and credit sides are equal for every currency.
pub fn totals(state: &State) -> std::collections::BTreeMap<String, [u128; 4]> {
    let mut out: std::collections::BTreeMap<String, [u128; 4]> = Default::default();
    for (pid, _) in state.partitions() {
        if pid.domain != FINANCE {
            continue;
        }
        for (_, e) in state.scan(pid, b"acct/") {
            if let Some(a) = Account::decode(&e.value) {
                let t = out.entry(a.currency.to_string()).or_default();
                for (slot, v) in t.iter_mut().zip([
                    a.debits_pending,
                    a.debits_posted,
                    a.credits_pending,
                    a.credits_posted,
                ]) {
                    *slot = slot.saturating_add(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_encoding_round_trips_and_rejects_garbage() {
        let a = Account {
            currency: "EUR".into(),
            limit: BalanceLimit::CreditsMustNotExceedDebits,
            credit_limit: 7,
            code: 513,
            closed: true,
            debits_pending: 1,
            debits_posted: 5,
            credits_pending: 3,
            credits_posted: u128::MAX,
        };
        assert_eq!(Account::decode(&a.encode()), Some(a.clone()));
        let enc = a.encode();
        assert_eq!(Account::decode(&enc[..enc.len() - 1]), None);
        let mut bad_flags = enc.clone();
        bad_flags[5] = 3;
        assert_eq!(Account::decode(&bad_flags), None);
        assert_eq!(Account::decode(&[9]), None);
        assert_eq!(Account::decode(&[]), None);
    }

    #[test]
    fn accounts_stored_in_format_1_still_load() {
        // Format 1: version, currency length and bytes, flags, debits and
        // credits posted (big-endian u128).
        let mut v1 = vec![1, 3];
        v1.extend_from_slice(b"EUR");
        v1.push(1);
        v1.extend_from_slice(&7u128.to_be_bytes());
        v1.extend_from_slice(&9u128.to_be_bytes());
        let a = Account::decode(&v1).unwrap();
        assert_eq!(a.limit, BalanceLimit::None);
        assert_eq!((a.debits_posted, a.credits_posted, a.balance()), (7, 9, 2));
        assert_eq!(Account::decode(&a.encode()), Some(a));
        v1[5] = 2;
        assert_eq!(Account::decode(&v1), None);
        assert_eq!(Account::decode(&v1[..10]), None);
    }

    #[test]
    fn balance_rules_bound_debits_and_credits() {
        let mut a = Account::new("EUR", BalanceLimit::DebitsMustNotExceedCredits);
        a.credits_posted = 10;
        a.credit_limit = 5;
        assert_eq!(a.clone().debit(15, false), Ok(()));
        assert_eq!(
            a.clone().debit(16, true),
            Err(RuleBroken::InsufficientFunds)
        );
        let mut l = Account::new("EUR", BalanceLimit::CreditsMustNotExceedDebits);
        l.debits_posted = 10;
        assert_eq!(l.clone().credit(10, true), Ok(()));
        assert_eq!(
            l.clone().credit(11, false),
            Err(RuleBroken::CreditsExceedDebits)
        );
        let mut issuer = Account::new("EUR", BalanceLimit::None);
        assert_eq!(issuer.debit(u128::MAX, false), Ok(()));
        assert_eq!(issuer.debit(1, false), Err(RuleBroken::Overflow));
    }
}
