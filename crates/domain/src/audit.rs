//! The audit log's tamper evidence: a hash chain whose links are the leaves of an RFC 9162
//! Merkle tree, and C2SP signed-note checkpoints of that tree.
//!
//! Every entry's hash is the RFC 9162 leaf hash of (previous entry's hash ‖ canonical entry
//! bytes), so each entry commits to the one before it (editing, deleting, inserting or reordering
//! breaks the chain at that entry) and the same hashes are the Merkle leaves, so a signed
//! checkpoint (tree size + root) commits to every entry up to that size. A verifier that holds the
//! checkpoint key can tell that the log was only appended to, even against someone who rewrote
//! the rows and recomputed every hash.
//!
//! Written by hand rather than with a Merkle crate: the log is appended to by several processes
//! and pruned from the front, so only the tree's right edge (the [`Frontier`], at most 64 hashes)
//! is ever held or stored; the crates we looked at (`ct-merkle`, `rs_merkle`) keep every leaf in
//! memory or use a different odd-node rule than RFC 9162.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The "previous hash" of a log's first entry.
pub const GENESIS: Hash = [0u8; 32];

/// RFC 9162 §2.1.1 leaf hash of an entry linked to its predecessor.
pub fn entry_hash(prev: &Hash, canonical: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// RFC 9162 §2.1.1 interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The right edge of a Merkle tree: the roots of its perfect subtrees, largest first (one per
/// set bit of `size`). Enough to append leaves and to compute the root at any later size.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

/// A stored frontier whose hash count does not match its size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a Merkle frontier of size {size} needs {expected} hashes, found {found} bytes")]
pub struct BadFrontier {
    pub size: u64,
    pub expected: u32,
    pub found: usize,
}

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the next leaf.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Each trailing 1 bit of the old size is a subtree of the same height as `node`: merge.
        let mut bits = self.size;
        while bits & 1 == 1 {
            let left = self.nodes.pop().expect("one node per set bit");
            node = node_hash(&left, &node);
            bits >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// RFC 9162 §2.1.1 Merkle tree hash of the leaves pushed so far (SHA-256 of nothing when
    /// empty). Folding from the right reproduces the RFC's split at the largest power of two.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return Sha256::digest([]).into();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Concatenated hashes, for storage next to the size.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<Self, BadFrontier> {
        let expected = size.count_ones();
        if bytes.len() != expected as usize * 32 {
            return Err(BadFrontier { size, expected, found: bytes.len() });
        }
        let nodes = bytes.chunks_exact(32).map(|c| c.try_into().expect("32-byte chunk")).collect();
        Ok(Self { size, nodes })
    }
}

/// The body of a C2SP `tlog-checkpoint`: origin line, tree size, base64 root hash.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// C2SP signed-note key hash: the first four bytes of SHA-256(name ‖ `\n` ‖ 0x01 ‖ public key)
/// for an Ed25519 key.
pub fn note_key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([0x01]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A signed note: `body`, a blank line, then `— <name> <base64(key id ‖ signature)>`.
pub fn signed_note(body: &str, name: &str, key_id: [u8; 4], signature: &[u8]) -> String {
    let mut sig = key_id.to_vec();
    sig.extend_from_slice(signature);
    format!("{body}\n\u{2014} {name} {}\n", B64.encode(sig))
}

/// The verifier key string of C2SP signed notes: `<name>+<hex key id>+<base64(0x01 ‖ key)>`.
pub fn verifier_key(name: &str, public_key: &[u8]) -> String {
    let id = note_key_id(name, public_key);
    let mut k = vec![0x01];
    k.extend_from_slice(public_key);
    format!("{name}+{}+{}", id.iter().map(|b| format!("{b:02x}")).collect::<String>(), B64.encode(k))
}

/// A parsed checkpoint note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedCheckpoint {
    /// The signed text (everything before the blank line, with its final newline).
    pub body: String,
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// (key name, key id, signature) per signature line.
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

/// Parses a signed checkpoint note; `None` if it is not well formed.
pub fn parse_checkpoint(note: &str) -> Option<ParsedCheckpoint> {
    let (body, sigs) = note.split_once("\n\n")?;
    let body = format!("{body}\n");
    let mut lines = body.lines();
    let origin = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    let root: Hash = B64.decode(lines.next()?).ok()?.try_into().ok()?;
    let mut signatures = Vec::new();
    for line in sigs.lines() {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (name, sig) = rest.rsplit_once(' ')?;
        let raw = B64.decode(sig).ok()?;
        if raw.len() < 5 {
            return None;
        }
        signatures.push((name.to_owned(), raw[..4].try_into().ok()?, raw[4..].to_vec()));
    }
    Some(ParsedCheckpoint { body, origin, size, root, signatures })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9162 §2.1.1 MTH, computed recursively as the RFC writes it.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - (n - 1).leading_zeros() - 1);
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn frontier_root_matches_the_rfc_definition_at_every_size() {
        let mut f = Frontier::default();
        let mut leaves = Vec::new();
        assert_eq!(f.root(), mth(&leaves));
        for i in 0u32..70 {
            let leaf = entry_hash(leaves.last().unwrap_or(&GENESIS), &i.to_be_bytes());
            leaves.push(leaf);
            f.push(leaf);
            assert_eq!(f.root(), mth(&leaves), "size {}", i + 1);
            let back = Frontier::from_bytes(f.size(), &f.to_bytes()).unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn frontier_rejects_wrong_hash_count() {
        assert!(Frontier::from_bytes(3, &[0u8; 32]).is_err());
        assert!(Frontier::from_bytes(4, &[0u8; 32]).is_ok());
    }

    #[test]
    fn changing_any_leaf_changes_the_root() {
        let leaves: Vec<Hash> = (0u8..9).map(|i| entry_hash(&GENESIS, &[i])).collect();
        let root = mth(&leaves);
        for i in 0..leaves.len() {
            let mut edited = leaves.clone();
            edited[i][0] ^= 1;
            assert_ne!(mth(&edited), root);
        }
    }

    #[test]
    fn signed_notes_round_trip() {
        let body = checkpoint_body("example.com/audit/ws_1", 42, &[7u8; 32]);
        assert_eq!(body, format!("example.com/audit/ws_1\n42\n{}\n", B64.encode([7u8; 32])));
        let id = note_key_id("example.com/audit", &[9u8; 32]);
        let note = signed_note(&body, "example.com/audit", id, &[1u8; 64]);
        let p = parse_checkpoint(&note).unwrap();
        assert_eq!((p.origin.as_str(), p.size, p.root), ("example.com/audit/ws_1", 42, [7u8; 32]));
        assert_eq!(p.body, body);
        assert_eq!(p.signatures, vec![("example.com/audit".to_owned(), id, vec![1u8; 64])]);
        assert!(verifier_key("example.com/audit", &[9u8; 32]).starts_with("example.com/audit+"));
        assert!(parse_checkpoint("no blank line").is_none());
    }
}
