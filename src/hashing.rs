//! Cheap hashing for the processor's maps.
//!
//! Span ids are already random 64-bit numbers, so the live-span ledger keys its maps by
//! the id itself and only mixes the bits once (a multiply), instead of paying SipHash
//! for every span. Custom id generators that hand out sequential ids still spread well
//! after the multiply. The pricing memo hashes (provider, model) pairs the same way,
//! without allocating a key.

use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// A hasher for `u64` keys that are already well spread (span ids).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(SEED);
    }
}

/// Builds [`IdHasher`]s.
pub(crate) type BuildIdHasher = BuildHasherDefault<IdHasher>;

/// A 64-bit hash of a pair of strings (FxHash-style; not for untrusted collision
/// resistance, only for a bounded memo whose buckets are compared in full).
pub(crate) fn hash_str_pair(a: &str, b: &str) -> u64 {
    let mut h = IdHasher::default();
    h.write(a.as_bytes());
    h.write_u64(0xff);
    h.write(b.as_bytes());
    h.write_u64((a.len() as u64) << 32 | b.len() as u64);
    h.finish()
}

/// A 64-bit hash of a string (see [`hash_str_pair`]); never 0, so 0 can mean "absent".
pub(crate) fn hash_str(s: &str) -> u64 {
    hash_str_pair(s, "").max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_distinguished() {
        assert_ne!(hash_str_pair("ab", "c"), hash_str_pair("a", "bc"));
        assert_eq!(
            hash_str_pair("openai", "gpt-4o"),
            hash_str_pair("openai", "gpt-4o")
        );
    }
}
