//! Reading and writing span attributes.
//!
//! The SDK does not deduplicate attribute keys, so a finished span can carry one key
//! several times: every read takes the last value. Every write replaces the key's
//! existing values instead of adding a second copy.

use opentelemetry::{Key, KeyValue, Value};

/// The value of `key` in `attributes` as the processor reads it: the SDK keeps a key
/// set twice twice, and the last value wins.
///
/// ```
/// use genai_audit::last_value;
/// use opentelemetry::{KeyValue, Value};
///
/// let attributes = [KeyValue::new("gen_ai.usage.input_tokens", "1"), KeyValue::new("gen_ai.usage.input_tokens", 2)];
/// assert_eq!(last_value(&attributes, "gen_ai.usage.input_tokens"), Some(&Value::I64(2)));
/// ```
pub fn last_value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .rev()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// A token or call count as an attribute value (the SDK's integers are i64; counts are
/// capped at 2^53 on the way in, and sums saturate far below i64::MAX in practice).
pub(crate) fn count_value(count: u64) -> Value {
    Value::I64(i64::try_from(count).unwrap_or(i64::MAX))
}

/// The first of `keys` whose last value is a non-blank string, trimmed.
pub(crate) fn first_string<'a>(attributes: &'a [KeyValue], keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|key| match last_value(attributes, key)? {
            Value::String(s) => Some(trimmed(s.as_str())).filter(|s| !s.is_empty()),
            _ => None,
        })
}

/// `s` without leading and trailing white space; most values have none, and are
/// returned after two byte tests.
fn trimmed(s: &str) -> &str {
    let clean = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
    if clean(s.as_bytes().first()) && clean(s.as_bytes().last()) {
        s
    } else {
        s.trim()
    }
}

/// The attributes the processor sets on one span, applied in one pass at the end.
#[derive(Debug, Default)]
pub(crate) struct AttributeWrites {
    writes: Vec<KeyValue>,
    /// Attributes the span already has: the writes' buffer keeps places for them at its
    /// front from its first write on, so that applying the writes builds the span's new
    /// attribute list in it (each attribute moved once into its place) instead of
    /// growing (reallocating) the span's own.
    existing: usize,
    /// A one-word filter of the keys written so far: a key whose bit is clear was not
    /// written, so most writes skip the search for an earlier value.
    written: u64,
    /// Some written key outside `genai_audit.` may already be on the span.
    foreign: bool,
}

/// The filter bit of a key: from its length and last byte, which tell most keys apart
/// (a shared bit only costs a search). Filters of a few keys are one word: the keys
/// written so far, or the token-count keys a span may carry.
#[inline]
pub(crate) const fn filter_bit(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let last = match bytes.last() {
        Some(&last) => last as usize,
        None => 0,
    };
    1 << ((bytes.len() ^ last << 1) & 63)
}

/// Writes a span gets at most, in practice: reserved at the first write. A generation
/// gets twelve (its role, four cost keys, seven cumulative totals), a step or an
/// invocation ten; with a handful of the span's own attributes the buffer stays under
/// 1 KiB, the size up to which common allocators (glibc's among them) serve a block
/// from a per-thread cache: a larger first reservation made every span's buffer take
/// the allocator's slow path (about 4 % of an agent turn).
const TYPICAL_WRITES: usize = 12;

/// The prefix of the keys the processor owns.
const OWN_PREFIX: &str = "genai_audit.";

/// Whether a key is one the processor owns (its first byte dismisses most others).
#[inline]
fn is_own(key: &str) -> bool {
    key.as_bytes().first() == Some(&b'g') && key.starts_with(OWN_PREFIX)
}

impl AttributeWrites {
    /// Sets `key`, one of the processor's own `genai_audit.` keys (a later set of the
    /// same key replaces an earlier one, and any value of it on the span is replaced
    /// when the writes are applied).
    #[inline]
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        debug_assert!(is_own(key), "{key} is not the processor's");
        self.put(key, value);
    }

    /// Sets each of `counts`, token or call counts under the processor's own keys (as
    /// integers, saturating at `i64::MAX`), in order. Keys not written before are
    /// appended in one pass that builds each attribute in place.
    pub(crate) fn set_counts<const N: usize>(&mut self, counts: [(&'static str, u64); N]) {
        let mask = counts
            .iter()
            .fold(0, |mask, (key, _)| mask | filter_bit(key));
        if self.written & mask != 0 {
            for (key, count) in counts {
                self.set(key, count_value(count));
            }
            return;
        }
        debug_assert!(counts.iter().all(|(key, _)| is_own(key)));
        self.written |= mask;
        if self.writes.capacity() - self.writes.len() < N {
            self.grow();
        }
        self.writes.extend(
            counts
                .into_iter()
                .map(|(key, count)| KeyValue::new(Key::from_static_str(key), count_value(count))),
        );
    }

    /// Repairs `key`, a key the processor does not own: sets `value`, and keeps
    /// `original` (the value before the repair, when the span had one) under
    /// `genai_audit.reported.<key>`.
    pub(crate) fn repair(&mut self, key: &'static str, original: Option<Value>, value: Value) {
        if let Some(original) = original {
            self.set_reported(key, original);
        }
        self.foreign = true;
        self.put(key, value);
    }

    /// Sets a key the caller knows is not on the span (it checked), so that applying
    /// the writes need not look for it.
    #[inline]
    pub(crate) fn set_absent(&mut self, key: &'static str, value: impl Into<Value>) {
        self.put(key, value);
    }

    #[inline(always)]
    fn put(&mut self, key: &'static str, value: impl Into<Value>) {
        let bit = filter_bit(key);
        if self.written & bit != 0 {
            if let Some(existing) = self.writes.iter_mut().find(|kv| kv.key.as_str() == key) {
                existing.value = value.into();
                return;
            }
        }
        self.written |= bit;
        if self.writes.len() >= self.writes.capacity() {
            self.grow();
        }
        // Built where it is stored: pushing a value built beforehand copies it through
        // the stack, a copy that stalls on store forwarding.
        self.writes.extend(std::iter::once_with(move || {
            KeyValue::new(Key::from_static_str(key), value.into())
        }));
    }

    /// Room for the writes a span gets, in practice, and its existing attributes. The
    /// first time, the span's attributes get their places at the front.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        self.writes
            .reserve(TYPICAL_WRITES.max(self.writes.len()) + self.existing);
        if self.writes.is_empty() {
            self.writes.extend(
                std::iter::repeat_with(|| KeyValue::new(Key::from_static_str(""), false))
                    .take(self.existing),
            );
        }
    }

    /// Keeps `original`, the value of `key` before a repair, under
    /// `genai_audit.reported.<key>`.
    fn set_reported(&mut self, key: &str, original: Value) {
        let key = Key::from(format!("{}{key}", crate::keys::REPORTED_PREFIX));
        let bit = filter_bit(key.as_str());
        if self.written & bit != 0 {
            if let Some(existing) = self.writes.iter_mut().find(|kv| kv.key == key) {
                existing.value = original;
                return;
            }
        }
        self.written |= bit;
        if self.writes.len() >= self.writes.capacity() {
            self.grow();
        }
        self.writes.push(KeyValue::new(key, original));
    }

    /// Applies the writes: every existing value of a written key is removed, then the
    /// new values are appended in the order they were first set. Attributes the
    /// processor does not write keep their order.
    pub(crate) fn apply(self, attributes: &mut Vec<KeyValue>) {
        if self.writes.is_empty() {
            return;
        }
        // Every write went through `grow` first: the places lead the buffer.
        let (mut writes, foreign, places) = (self.writes, self.foreign, self.existing);
        // Only keys the processor owns can clash, unless it repaired a reported value:
        // a prefix test spares comparing every attribute with every write, and a span
        // without such keys (the usual case) is not rewritten at all.
        if foreign || attributes.iter().any(|kv| is_own(kv.key.as_str())) {
            let written = writes.get(places..).unwrap_or_default();
            attributes.retain(|kv| {
                (!foreign && !is_own(kv.key.as_str())) || !written.iter().any(|w| w.key == kv.key)
            });
        }
        if places == attributes.len() {
            // The usual case: each attribute moves once, into its place.
            for (place, kv) in writes.iter_mut().zip(attributes.drain(..)) {
                *place = kv;
            }
            *attributes = writes;
            return;
        }
        // Fewer attributes than places (some were replaced): the places go.
        writes.drain(..places.min(writes.len()));
        if writes.capacity() - writes.len() >= attributes.len() {
            // The span's attributes, then the writes, in the writes' buffer: no
            // reallocation of the span's list.
            let kept = attributes.len();
            writes.append(attributes);
            writes.rotate_right(kept);
            *attributes = writes;
        } else {
            attributes.extend(writes);
        }
    }

    /// The writes, in order (after the places kept for the span's own attributes).
    pub(crate) fn written(&self) -> &[KeyValue] {
        self.writes.get(self.existing..).unwrap_or_default()
    }

    /// Writes for a span that has `existing` attributes already.
    pub(crate) fn for_span(existing: usize) -> Self {
        AttributeWrites {
            existing,
            ..AttributeWrites::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming() {
        for (s, t) in [
            ("gpt-4o", "gpt-4o"),
            (" gpt-4o\t", "gpt-4o"),
            ("", ""),
            ("  ", ""),
            ("\u{a0}é\u{a0}", "é"),
            ("a b", "a b"),
        ] {
            assert_eq!(trimmed(s), t, "{s:?}");
        }
    }

    /// Counts set in one pass replace a key written before them (the slow path when
    /// the filter says a key may be there), and never add a second copy.
    #[test]
    fn counts_replace_earlier_writes() {
        let mut attrs = vec![KeyValue::new("genai_audit.total.input_tokens", 1)];
        let mut w = AttributeWrites::default();
        w.set_counts([
            ("genai_audit.total.input_tokens", 2),
            ("genai_audit.steps", 3),
        ]);
        w.set_counts([("genai_audit.steps", 4)]);
        w.apply(&mut attrs);
        assert_eq!(
            attrs,
            vec![
                KeyValue::new("genai_audit.total.input_tokens", 2),
                KeyValue::new("genai_audit.steps", 4),
            ]
        );
        let mut w = AttributeWrites::default();
        w.set_counts([("genai_audit.steps", u64::MAX)]);
        let mut attrs = Vec::new();
        w.apply(&mut attrs);
        assert_eq!(attrs, vec![KeyValue::new("genai_audit.steps", i64::MAX)]);
    }

    /// A span's attributes keep their order ahead of the writes, whether they fill the
    /// places kept for them (the usual case), some are replaced by writes, or a repair
    /// replaces a key the processor does not own; an attribute with an empty key is an
    /// attribute like any other.
    #[test]
    fn the_span_attributes_come_first_in_every_path() {
        let many: Vec<(&'static str, u64)> = (0..2 * TYPICAL_WRITES)
            .map(|i| &*Box::leak(format!("genai_audit.test.{i}").into_boxed_str()))
            .zip(0..)
            .collect();
        // The usual case, with more writes than the first room holds.
        let mut attrs = vec![KeyValue::new("a", 1), KeyValue::new("", 2)];
        let mut w = AttributeWrites::for_span(attrs.len());
        w.set(crate::keys::ROLE, "generation");
        for &(key, n) in &many {
            w.set(key, count_value(n));
        }
        w.apply(&mut attrs);
        assert_eq!(attrs.len(), 3 + many.len());
        assert_eq!(
            attrs[..3],
            [
                KeyValue::new("a", 1),
                KeyValue::new("", 2),
                KeyValue::new(crate::keys::ROLE, "generation"),
            ]
        );
        assert!(attrs[3..]
            .iter()
            .zip(&many)
            .all(|(kv, (key, n))| kv.key.as_str() == *key && kv.value == Value::I64(*n as i64)));
        // An earlier value of a written key goes.
        let mut attrs = vec![
            KeyValue::new(crate::keys::ROLE, "old"),
            KeyValue::new("a", 1),
        ];
        let mut w = AttributeWrites::for_span(attrs.len());
        w.set(crate::keys::ROLE, "tool");
        w.apply(&mut attrs);
        assert_eq!(
            attrs,
            [
                KeyValue::new("a", 1),
                KeyValue::new(crate::keys::ROLE, "tool")
            ]
        );
        // A repair replaces a key of another convention, and keeps the original.
        let mut attrs = vec![
            KeyValue::new("gen_ai.usage.input_tokens", 9),
            KeyValue::new("", 2),
        ];
        let mut w = AttributeWrites::for_span(attrs.len());
        w.set(crate::keys::ROLE, "step");
        w.repair(
            "gen_ai.usage.input_tokens",
            Some(Value::I64(9)),
            Value::I64(5),
        );
        w.apply(&mut attrs);
        assert_eq!(
            attrs,
            [
                KeyValue::new("", 2),
                KeyValue::new(crate::keys::ROLE, "step"),
                KeyValue::new("genai_audit.reported.gen_ai.usage.input_tokens", 9),
                KeyValue::new("gen_ai.usage.input_tokens", 5),
            ]
        );
    }

    #[test]
    fn last_wins_on_read() {
        let attrs = [
            KeyValue::new("a", 1),
            KeyValue::new("b", 2),
            KeyValue::new("a", 3),
        ];
        assert_eq!(last_value(&attrs, "a"), Some(&Value::I64(3)));
        assert_eq!(last_value(&attrs, "c"), None);
    }

    #[test]
    fn writes_replace_every_copy() {
        let mut attrs = vec![
            KeyValue::new("genai_audit.role", "old"),
            KeyValue::new("x", 1),
            KeyValue::new("genai_audit.role", "older"),
        ];
        let mut w = AttributeWrites::default();
        w.set("genai_audit.role", "generation");
        w.set("genai_audit.cost_usd", 0.5);
        w.set("genai_audit.role", "tool");
        w.apply(&mut attrs);
        assert_eq!(
            attrs,
            vec![
                KeyValue::new("x", 1),
                KeyValue::new("genai_audit.role", "tool"),
                KeyValue::new("genai_audit.cost_usd", 0.5),
            ]
        );
    }
}
