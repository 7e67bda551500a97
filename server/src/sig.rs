//! Transaction signatures: Ed25519, or ML-DSA-65 (FIPS 204, resistant to
//! quantum computers), as the consortium's settings choose. A signature
//! covers the transaction's hash; ML-DSA signs it deterministically with
//! an empty context string.
//!
//! Private key files (`parledger keygen`): Ed25519 keys are PKCS#8 PEM
//! (`PRIVATE KEY`); ML-DSA-65 keys are their 32-byte seed (the form FIPS 204
//! prefers) in a PEM block labelled `PARLEDGER ML-DSA-65 SEED`.

use anyhow::Context as _;
use base64::Engine as _;
use domains::membership::SignatureScheme;
use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsa65};
use std::path::Path;

const MLDSA_LABEL: &str = "PARLEDGER ML-DSA-65 SEED";

/// Whether `sig` is a signature of `message` by the `scheme` key given in
/// hex. Anything malformed is simply not a valid signature.
pub fn verify(scheme: SignatureScheme, public_key_hex: &str, message: &[u8], sig: &[u8]) -> bool {
    let Ok(pk) = hex::decode(public_key_hex) else {
        return false;
    };
    match scheme {
        SignatureScheme::Ed25519 => {
            let (Ok(pk), Ok(sig)) = (<[u8; 32]>::try_from(pk), <[u8; 64]>::try_from(sig)) else {
                return false;
            };
            ed25519_key(&pk).is_some_and(|vk| {
                vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
                    .is_ok()
            })
        }
        SignatureScheme::MlDsa65 => {
            let (Ok(pk), Ok(sig)) = (
                EncodedVerifyingKey::<MlDsa65>::try_from(pk.as_slice()),
                EncodedSignature::<MlDsa65>::try_from(sig),
            ) else {
                return false;
            };
            let Some(sig) = ml_dsa::Signature::<MlDsa65>::decode(&sig) else {
                return false;
            };
            ml_dsa::VerifyingKey::<MlDsa65>::decode(&pk).verify_with_context(message, &[], &sig)
        }
    }
}

/// Ed25519 public keys most recently used, decompressed: decompressing a
/// point costs a field square root on every verification (pre-signed
/// batches measured 5-10% faster with the cache), and a consortium has few
/// keys that sign many transactions.
const ED25519_KEYS_CACHED_MAX: usize = 4096;

fn ed25519_key(pk: &[u8; 32]) -> Option<ed25519_dalek::VerifyingKey> {
    use std::collections::HashMap;
    use std::sync::{OnceLock, RwLock};
    static KEYS: OnceLock<RwLock<HashMap<[u8; 32], ed25519_dalek::VerifyingKey>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(vk) = keys.read().ok().and_then(|k| k.get(pk).copied()) {
        return Some(vk);
    }
    let vk = ed25519_dalek::VerifyingKey::from_bytes(pk).ok()?;
    if let Ok(mut k) = keys.write() {
        if k.len() >= ED25519_KEYS_CACHED_MAX {
            k.clear();
        }
        k.insert(*pk, vk);
    }
    Some(vk)
}

/// A private signing key of either scheme.
pub enum PrivateKey {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    MlDsa65(Box<ml_dsa::SigningKey<MlDsa65>>),
}

impl PrivateKey {
    pub fn scheme(&self) -> SignatureScheme {
        match self {
            PrivateKey::Ed25519(_) => SignatureScheme::Ed25519,
            PrivateKey::MlDsa65(_) => SignatureScheme::MlDsa65,
        }
    }

    pub fn public_key(&self) -> Vec<u8> {
        match self {
            PrivateKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            PrivateKey::MlDsa65(k) => k.expanded_key().verifying_key().encode().to_vec(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> anyhow::Result<Vec<u8>> {
        use ed25519_dalek::Signer;
        Ok(match self {
            PrivateKey::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
            PrivateKey::MlDsa65(k) => k
                .expanded_key()
                .sign_deterministic(message, &[])
                .map_err(|e| anyhow::anyhow!("ML-DSA signing failed: {e}"))?
                .encode()
                .to_vec(),
        })
    }

    /// Reads a key file of either scheme.
    pub fn load(path: &Path) -> anyhow::Result<PrivateKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading key {}", path.display()))?;
        if text.contains(&format!("BEGIN {MLDSA_LABEL}")) {
            let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            let seed = base64::engine::general_purpose::STANDARD
                .decode(body.trim())
                .ok()
                .and_then(|b| ml_dsa::Seed::try_from(b.as_slice()).ok())
                .with_context(|| format!("{}: not a 32-byte ML-DSA seed", path.display()))?;
            return Ok(PrivateKey::MlDsa65(Box::new(
                ml_dsa::SigningKey::<MlDsa65>::from_seed(&seed),
            )));
        }
        Ok(PrivateKey::Ed25519(Box::new(
            crate::api::auth::load_private_key(path)?,
        )))
    }

    /// Makes a new key of `scheme` and writes it to `path` (which must not
    /// exist; mode 0600).
    pub fn generate(scheme: SignatureScheme, path: &Path) -> anyhow::Result<PrivateKey> {
        match scheme {
            SignatureScheme::Ed25519 => Ok(PrivateKey::Ed25519(Box::new(
                crate::api::auth::create_private_key(path)?,
            ))),
            SignatureScheme::MlDsa65 => {
                use rand_core06::RngCore;
                let mut seed = [0u8; 32];
                rand_core06::OsRng.fill_bytes(&mut seed);
                let b64 = base64::engine::general_purpose::STANDARD.encode(seed);
                let pem =
                    format!("-----BEGIN {MLDSA_LABEL}-----\n{b64}\n-----END {MLDSA_LABEL}-----\n");
                crate::api::auth::write_secret(path, pem.as_bytes())?;
                let seed = ml_dsa::Seed::from(seed);
                Ok(PrivateKey::MlDsa65(Box::new(
                    ml_dsa::SigningKey::<MlDsa65>::from_seed(&seed),
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_verifies_its_own_signatures_only() {
        let dir = tempfile::tempdir().unwrap();
        let msg = b"the transaction's hash";
        for scheme in [SignatureScheme::Ed25519, SignatureScheme::MlDsa65] {
            let path = dir.path().join(scheme.as_str());
            let key = PrivateKey::generate(scheme, &path).unwrap();
            let again = PrivateKey::load(&path).unwrap();
            assert_eq!(again.scheme(), scheme);
            assert_eq!(again.public_key(), key.public_key());
            assert_eq!(key.public_key().len(), scheme.public_key_len());
            let pk = hex::encode(key.public_key());
            let sig = key.sign(msg).unwrap();
            assert!(verify(scheme, &pk, msg, &sig), "{scheme:?}");
            assert!(!verify(scheme, &pk, b"another message", &sig));
            let mut bad = sig.clone();
            bad[7] ^= 1;
            assert!(!verify(scheme, &pk, msg, &bad));
            assert!(!verify(scheme, &pk, msg, &sig[1..]));
            assert!(!verify(scheme, "zz", msg, &sig));
            // The other scheme never accepts it.
            let other = match scheme {
                SignatureScheme::Ed25519 => SignatureScheme::MlDsa65,
                SignatureScheme::MlDsa65 => SignatureScheme::Ed25519,
            };
            assert!(!verify(other, &pk, msg, &sig));
        }
    }
}
