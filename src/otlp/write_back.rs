//! A span's attributes between its text and the audit: what the audit reads (an
//! earlier audit's keys removed, the values an earlier `repair` replaced put back), and
//! how what it wrote goes back into the text, every other byte left as it was.
//!
//! Auditing enriched output again therefore reads exactly what the first audit read,
//! and writes the same bytes: keys an earlier audit wrote (`genai_audit.*`, and the
//! `gen_ai.usage.cost` it adds to a call priced by it) are not read, and a value under
//! `genai_audit.reported.K` is read as `K`'s.

use std::collections::HashMap;

use opentelemetry::{KeyValue, Value};
use serde_json::value::RawValue;

use super::json::{
    api_attribute, api_value, api_value_text, attribute_text, attribute_with_value_text, members,
    offset_in, value_text, AttributeHead,
};
use crate::hashing::BuildIdHasher;
use crate::keys::{self, read::gen_ai};

/// Where one attribute the audit reads came from.
struct FedItem<'a> {
    /// Its key (kept only when the list will be written back).
    key: Option<String>,
    /// Its place in the span's attribute list.
    position: usize,
    /// The text of the value an earlier `repair` replaced, read back in its place.
    restored: Option<&'a str>,
}

/// What the audit reads of a span's attributes, and how to write them back.
///
/// [`Fed::read`] hands the attributes over (the audit gets them by value): a value
/// the audit changes (a repair) always comes with its `genai_audit.reported.` key, so
/// the write-back needs no copy of what was read.
pub(crate) struct Fed<'a> {
    items: Vec<&'a RawValue>,
    fed: Vec<FedItem<'a>>,
    /// Some item of the list is not read (an earlier audit's key, or not an attribute).
    dropped: bool,
}

/// The attributes of a span that will not be written back, as the audit reads them,
/// keeping only the keys `keep` admits: the other values are never read (a prompt is
/// skipped, not unescaped or copied).
pub(crate) fn read_kept(
    heads: Vec<AttributeHead<'_>>,
    keep: &dyn Fn(&str) -> bool,
) -> Vec<KeyValue> {
    let mut texts: Vec<Option<&str>> = Vec::new();
    let parsed: Vec<Option<(String, Value)>> = heads
        .into_iter()
        .filter_map(|head| {
            let key = head.key?;
            if !keep(&key) {
                return None;
            }
            let value = match head.value {
                Some(raw) => api_value_text(raw)?,
                None => api_value(None, None),
            };
            texts.push(head.value.map(RawValue::get));
            Some(Some((key.into_owned(), value)))
        })
        .collect();
    undo_audit(parsed, |i| texts.get(i).copied().flatten(), false).2
}

impl<'a> Fed<'a> {
    /// Reads a span's attribute list (each item's text): what to write it back with
    /// (places only: keys are read again, and only for spans the audit changed), and
    /// the attributes as the audit reads them, in order.
    pub(crate) fn read(items: Vec<&'a RawValue>) -> (Fed<'a>, Vec<KeyValue>) {
        let parsed: Vec<Option<(String, Value)>> =
            items.iter().map(|raw| api_attribute(raw)).collect();
        let (fed, dropped, attributes) = undo_audit(
            parsed,
            |i| items.get(i).and_then(|raw| value_text(raw)),
            true,
        );
        (
            Fed {
                items,
                fed,
                dropped,
            },
            attributes,
        )
    }

    /// The attribute list written back, with what the audit exported (`audited`: the
    /// attributes [`read`](Self::read) gave, and the audit's writes); `None` when the
    /// list is unchanged.
    ///
    /// A value the audit replaced (it has a `genai_audit.reported.` key) takes its new
    /// value at the key's last place; a key it added is appended, the other keys first,
    /// then its own (`genai_audit.*`); a `genai_audit.reported.K` carries `K`'s value
    /// as it was written. Every other attribute keeps its text.
    pub(crate) fn write_back(&self, audited: &[KeyValue]) -> Option<String> {
        let mut text = Text {
            out: String::from("["),
            first: true,
        };
        if !self.write_items(audited, &mut text) {
            return None;
        }
        text.out.push(']');
        Some(text.out)
    }

    /// The attribute list written back, as [`write_back`](Self::write_back) writes
    /// it: each item either an attribute read, by its place, or a new one.
    pub(crate) fn write_back_list(&self, audited: &[KeyValue]) -> Option<List> {
        let mut list = List::default();
        self.write_items(audited, &mut list).then_some(list)
    }

    /// Hands the written-back list to `items`, item by item; `false` (and nothing
    /// handed) when the list is unchanged.
    fn write_items(&self, audited: &[KeyValue], items: &mut dyn Items) -> bool {
        let changed = audited.len() != self.fed.len()
            || self.dropped
            || self.fed.iter().any(|f| f.restored.is_some());
        if !changed {
            return false;
        }
        let keys: Vec<Option<&str>> = self.fed.iter().map(|f| f.key.as_deref()).collect();
        let mut last_fed: HashMap<&str, usize, BuildIdHasher> =
            HashMap::with_capacity_and_hasher(keys.len(), BuildIdHasher::default());
        for (i, key) in keys.iter().enumerate() {
            if let Some(key) = key {
                last_fed.insert(key, i);
            }
        }
        let mut last: HashMap<&str, usize, BuildIdHasher> =
            HashMap::with_capacity_and_hasher(audited.len(), BuildIdHasher::default());
        // The keys a repair replaced.
        let mut repaired: Vec<&str> = Vec::new();
        for (i, kv) in audited.iter().enumerate() {
            last.insert(kv.key.as_str(), i);
            if let Some(original) = kv.key.as_str().strip_prefix(keys::REPORTED_PREFIX) {
                repaired.push(original);
            }
        }
        for (i, item) in self.fed.iter().enumerate() {
            let key = keys[i].unwrap_or("");
            let replaced =
                !repaired.is_empty() && repaired.contains(&key) && last_fed.get(key) == Some(&i);
            match (replaced.then(|| last.get(key)).flatten(), item.restored) {
                (Some(&new), _) => items.written(&audited[new]),
                (None, Some(value)) => {
                    items.text(&|out| attribute_with_value_text(key, value, out))
                }
                (None, None) => {
                    if let Some(raw) = self.items.get(item.position) {
                        items.original(raw, item.position);
                    }
                }
            }
        }
        for own in [false, true] {
            for (i, kv) in audited.iter().enumerate() {
                let key = kv.key.as_str();
                if last.get(key) != Some(&i)
                    || key.starts_with("genai_audit.") != own
                    || last_fed.contains_key(key)
                {
                    continue;
                }
                let original = key
                    .strip_prefix(keys::REPORTED_PREFIX)
                    .and_then(|k| last_fed.get(k))
                    .and_then(|&f| self.original_text(f));
                match original {
                    Some(text) => items.text(&|out| attribute_with_value_text(key, text, out)),
                    None => items.written(kv),
                }
            }
        }
        true
    }

    /// How to write the span's text (`span`, whose attribute list was read) back
    /// with its attribute list written back (see [`write_back`](Self::write_back));
    /// `None` when unchanged.
    pub(crate) fn write_back_span(&self, span: &str, audited: &[KeyValue]) -> Option<Splice> {
        let list = self.write_back(audited)?;
        // The list's place: from the `[` before its first item to the `]` after its
        // last (only white space lies between), else found by reading the span.
        let place = match (self.items.first(), self.items.last()) {
            (Some(first), Some(last)) => {
                let start = offset_in(span, first.get());
                let end = offset_in(span, last.get()) + last.get().len();
                let open = span.get(..start).and_then(|s| s.rfind('['));
                let close = span
                    .get(end..)
                    .and_then(|s| s.find(']'))
                    .map(|c| end + c + 1);
                open.zip(close)
            }
            _ => None,
        };
        Some(match place {
            Some((from, to)) => Splice {
                from,
                to,
                text: list,
            },
            None => with_attributes(span, list),
        })
    }

    /// The text of the value the span carried for the attribute read `i`-th.
    fn original_text(&self, i: usize) -> Option<&'a str> {
        let item = self.fed.get(i)?;
        item.restored.or_else(|| {
            self.items
                .get(item.position)
                .and_then(|raw| value_text(raw))
        })
    }
}

/// What the audit reads of an attribute list (`parsed`: each item read, `None` when it
/// is not an attribute): an earlier audit's keys left out, and the values an earlier
/// `repair` replaced read back in their place (`value_text` gives an item's value
/// text, kept to write it back). Returns where each attribute read came from, whether
/// some item is left out, and the attributes.
fn undo_audit<'a>(
    mut parsed: Vec<Option<(String, Value)>>,
    value_text: impl Fn(usize) -> Option<&'a str>,
    keep_keys: bool,
) -> (Vec<FedItem<'a>>, bool, Vec<KeyValue>) {
    let is_audit = |key: &str| key.starts_with("genai_audit.");
    let computed = parsed
        .iter()
        .rev()
        .flatten()
        .find(|(k, _)| k == keys::COST_SOURCE)
        .is_some_and(|(_, v)| matches!(v, Value::String(s) if s.as_str() == "computed"));
    // The values an earlier repair replaced, by key (the last of each).
    let mut reported: HashMap<String, usize> = HashMap::new();
    for (i, item) in parsed.iter().enumerate() {
        if let Some((key, _)) = item {
            if let Some(original) = key.strip_prefix(keys::REPORTED_PREFIX) {
                reported.insert(original.to_owned(), i);
            }
        }
    }
    // A repair of `foreign_response` replaces the response id and sets the model: a
    // model without its value under `genai_audit.reported.` was added by it.
    let model_added = reported.contains_key(gen_ai::RESPONSE_ID)
        && !reported.contains_key(gen_ai::RESPONSE_MODEL);
    let mut restored_text: HashMap<usize, &'a str> = HashMap::new();
    if !reported.is_empty() {
        let mut last_of: HashMap<&str, usize> = HashMap::new();
        for (i, item) in parsed.iter().enumerate() {
            if let Some((key, _)) = item {
                if !is_audit(key) {
                    last_of.insert(key.as_str(), i);
                }
            }
        }
        let restore: Vec<(usize, usize)> = reported
            .iter()
            .filter_map(|(key, &from)| last_of.get(key.as_str()).map(|&to| (to, from)))
            .collect();
        for (to, from) in restore {
            let text = value_text(from);
            let value = parsed[from].as_ref().map(|(_, v)| v.clone());
            if let (Some(text), Some(value), Some(Some((_, slot)))) =
                (text, value, parsed.get_mut(to))
            {
                *slot = value;
                restored_text.insert(to, text);
            }
        }
    }
    // Written by an earlier audit: its own keys, the cost it added to a call it
    // priced, and a model its repair added.
    let written = |key: &str| {
        is_audit(key)
            || (computed && key == keys::GEN_AI_USAGE_COST)
            || (model_added && key == gen_ai::RESPONSE_MODEL)
    };
    let mut dropped = false;
    let mut fed = Vec::with_capacity(parsed.len());
    let mut attributes = Vec::with_capacity(parsed.len());
    for (position, item) in parsed.into_iter().enumerate() {
        match item {
            Some((key, value)) if !written(&key) => {
                fed.push(FedItem {
                    key: keep_keys.then(|| key.clone()),
                    position,
                    restored: restored_text.get(&position).copied(),
                });
                attributes.push(KeyValue::new(key, value));
            }
            _ => dropped = true,
        }
    }
    (fed, dropped, attributes)
}

/// Where a written-back attribute list goes, item by item.
trait Items {
    /// The attribute read at `place` (its text `raw`), unchanged.
    fn original(&mut self, raw: &RawValue, place: usize);
    /// A new item, written as text.
    fn text(&mut self, write: &dyn Fn(&mut String));
    /// A new item the audit wrote.
    fn written(&mut self, kv: &KeyValue);
}

/// A list written as OTLP JSON text.
struct Text {
    out: String,
    first: bool,
}

impl Text {
    fn separate(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
    }
}

impl Items for Text {
    fn original(&mut self, raw: &RawValue, _place: usize) {
        self.separate();
        self.out.push_str(raw.get());
    }

    fn text(&mut self, write: &dyn Fn(&mut String)) {
        self.separate();
        write(&mut self.out);
    }

    fn written(&mut self, kv: &KeyValue) {
        self.separate();
        attribute_text(kv, &mut self.out);
    }
}

impl Items for List {
    fn original(&mut self, _raw: &RawValue, place: usize) {
        self.pieces.push(Piece::Original(place));
    }

    fn text(&mut self, write: &dyn Fn(&mut String)) {
        let from = self.texts.len();
        write(&mut self.texts);
        self.pieces.push(Piece::Text(from..self.texts.len()));
    }

    fn written(&mut self, kv: &KeyValue) {
        self.pieces.push(Piece::New(kv.clone()));
    }
}

/// An attribute list written back: its items in order, each an attribute as read
/// (by its place in the list read) or a new text (a range of `texts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct List {
    pub(crate) pieces: Vec<Piece>,
    pub(crate) texts: String,
}

/// One item of a [`List`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// The attribute read at this place, unchanged.
    Original(usize),
    /// A new item, an OTLP JSON key-value: this range of the list's texts.
    Text(std::ops::Range<usize>),
    /// A new item the audit wrote.
    New(KeyValue),
}

/// A change to a span's text: `text` in place of the bytes `from..to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Splice {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) text: String,
}

impl Splice {
    /// The span's text with the change made.
    #[cfg(test)]
    fn apply(&self, span: &str) -> String {
        format!("{}{}{}", &span[..self.from], self.text, &span[self.to..])
    }
}

/// How to give a span's text the attribute list `attributes` (added when it has none);
/// every other member keeps its text and place.
fn with_attributes(span: &str, attributes: String) -> Splice {
    if let Some(found) = members(span).and_then(|m| {
        m.into_iter()
            .rev()
            .find(|(k, _)| k == "attributes")
            .map(|(_, v)| v.get())
    }) {
        let from = offset_in(span, found);
        return Splice {
            from,
            to: from + found.len(),
            text: attributes,
        };
    }
    let body = span.trim_end();
    let Some(inner) = body.strip_suffix('}') else {
        return Splice {
            from: span.len(),
            to: span.len(),
            text: String::new(),
        };
    };
    let empty = inner.trim_end().ends_with('{');
    let mut text = String::with_capacity(attributes.len() + 16);
    if !empty {
        text.push(',');
    }
    text.push_str("\"attributes\":");
    text.push_str(&attributes);
    Splice {
        from: inner.len(),
        to: inner.len(),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<Box<RawValue>> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn an_earlier_audit_is_undone_before_reading() {
        let list = items(
            r#"[{"key":"a","value":{"intValue":"9"}},{"key":"genai_audit.role","value":{"stringValue":"step"}},
               {"key":"genai_audit.reported.a","value":{"intValue":3}}]"#,
        );
        let refs: Vec<&RawValue> = list.iter().map(|b| &**b).collect();
        let (fed, read) = Fed::read(refs);
        assert_eq!(read, vec![KeyValue::new("a", 3)]);
        // Nothing audited: the list is written back as it was before the first audit.
        let back = fed.write_back(&read).unwrap();
        assert_eq!(back, r#"[{"key":"a","value":{"intValue":3}}]"#);
    }

    #[test]
    fn attributes_go_where_they_were() {
        assert_eq!(
            with_attributes(r#"{"a":1,"attributes":[],"b":2}"#, "[1]".into())
                .apply(r#"{"a":1,"attributes":[],"b":2}"#),
            r#"{"a":1,"attributes":[1],"b":2}"#
        );
        assert_eq!(
            with_attributes(r#"{"a":1}"#, "[1]".into()).apply(r#"{"a":1}"#),
            r#"{"a":1,"attributes":[1]}"#
        );
        assert_eq!(
            with_attributes(r#"{ }"#, "[1]".into()).apply(r#"{ }"#),
            r#"{ "attributes":[1]}"#
        );
    }
}
