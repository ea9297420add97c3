//! The checkpoint key: Ed25519 (what C2SP signed notes use), dedicated to the audit log and
//! never used for tokens. Its 32-byte seed is a server secret sealed in the database, so every
//! replica signs with the same key; the public half is published as a C2SP verifier key so
//! anyone can check checkpoints without database access.

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use portcullis_domain::audit::{self, Hash, ParsedCheckpoint};

pub struct AuditSigner {
    key: Ed25519KeyPair,
    /// The key name in notes: `portcullis-audit-<8 hex digits of the key's SHA-256>`. Derived
    /// from the key alone, so every process (servers behind any issuer URL, the CLI) names it
    /// the same, and deployments' logs have distinct origins.
    name: String,
}

impl AuditSigner {
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, String> {
        use sha2::{Digest, Sha256};
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| "invalid audit key seed")?;
        let d = Sha256::digest(key.public_key().as_ref());
        let name =
            format!("portcullis-audit-{}", d[..4].iter().map(|b| format!("{b:02x}")).collect::<String>());
        Ok(Self { key, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// The C2SP verifier key (`name+keyid+base64`), to pin when verifying.
    pub fn verifier_key(&self) -> String {
        audit::verifier_key(&self.name, self.public_key())
    }

    /// The checkpoint origin of `log`.
    pub fn origin(&self, log: &str) -> String {
        format!("{}/{log}", self.name)
    }

    /// An Ed25519 signature over `msg` (export digests).
    pub fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        self.key.sign(msg).as_ref().to_vec()
    }

    /// A signed C2SP checkpoint note of `log` at `size` with Merkle `root`.
    pub fn sign_checkpoint(&self, log: &str, size: u64, root: &Hash) -> String {
        let body = audit::checkpoint_body(&self.origin(log), size, root);
        let sig = self.key.sign(body.as_bytes());
        audit::signed_note(&body, &self.name, audit::note_key_id(&self.name, self.public_key()), sig.as_ref())
    }
}

/// A verifier key parsed from its C2SP string form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub id: [u8; 4],
    pub public_key: Vec<u8>,
}

impl VerifierKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let bad = || format!("not a verifier key (name+keyid+base64): {s}");
        let mut parts = s.rsplitn(3, '+');
        let (Some(b64), Some(hex), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad())?;
        if raw.len() != 33 || raw[0] != 0x01 {
            return Err("only Ed25519 verifier keys are supported".into());
        }
        let public_key = raw[1..].to_vec();
        let id = audit::note_key_id(name, &public_key);
        let hex_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        if hex_id != hex {
            return Err("the verifier key's id does not match its name and key".into());
        }
        Ok(Self { name: name.to_owned(), id, public_key })
    }

    pub fn of(signer: &AuditSigner) -> Self {
        let public_key = signer.public_key().to_vec();
        Self { name: signer.name.clone(), id: audit::note_key_id(&signer.name, &public_key), public_key }
    }

    /// Whether `sig` is this key's signature of `msg`.
    pub fn verifies_bytes(&self, msg: &[u8], sig: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key).verify(msg, sig).is_ok()
    }

    /// Whether `note` carries a valid signature by this key.
    pub fn verifies(&self, note: &ParsedCheckpoint) -> bool {
        note.signatures.iter().any(|(name, id, sig)| {
            name == &self.name
                && id == &self.id
                && UnparsedPublicKey::new(&ED25519, &self.public_key)
                    .verify(note.body.as_bytes(), sig)
                    .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_verify_and_forgeries_do_not() {
        let signer = AuditSigner::from_seed(&[3; 32]).unwrap();
        assert!(signer.name().starts_with("portcullis-audit-") && signer.name().len() == 25);
        let note = signer.sign_checkpoint("ws_1", 10, &[5; 32]);
        let parsed = audit::parse_checkpoint(&note).unwrap();
        assert_eq!(parsed.origin, format!("{}/ws_1", signer.name()));
        let key = VerifierKey::parse(&signer.verifier_key()).unwrap();
        assert_eq!(key, VerifierKey::of(&signer));
        assert!(key.verifies(&parsed));
        let forged = audit::parse_checkpoint(&note.replace("\n10\n", "\n11\n")).unwrap();
        assert!(!key.verifies(&forged));
        let other = AuditSigner::from_seed(&[4; 32]).unwrap();
        assert!(!VerifierKey::of(&other).verifies(&parsed));
        assert!(VerifierKey::parse("nope").is_err());
    }
}
