//! Leaks (DESIGN §6, §9): recognised children still open when their parent ends, and
//! spans evicted while open.
//!
//! At a parent's end, only its own open children are visited (O(open children)). Each
//! learns that its parent has ended, so that its real end, if it comes, is flagged
//! `late_end`. The recognised ones are reported on the parent (`unclosed_child`,
//! `genai_audit.leak.unclosed_children`, `genai_audit.leak.unclosed_names`), and under
//! the leak policy `close` each is exported at once, closed at the parent's end time
//! with status error and `closed_by_audit`, its own open children closed with it.
//!
//! Eviction (too old, over capacity, open at shutdown) is the finding `stale`. Under
//! `flag` it is counted when it happens, and written on the span if the span ends
//! later; under `close` the span is exported closed at the eviction time, with `stale`
//! and `closed_by_audit`, and its real end, if it comes, is only counted (`late_end`).

use std::time::SystemTime;

use opentelemetry::{StringValue, Value};

use crate::audit::{Audit, Synthetic};
use crate::findings::{self, FindingCode, SpanFindings};
use crate::keys::audit;
use crate::ledger::{Ended, Kept};
use crate::recognition::Role;
use crate::span_attributes::AttributeWrites;

/// Status description of a span closed because its parent ended.
pub const UNCLOSED_STATUS: &str = "unclosed when parent ended";
/// Status description of a span closed because it was evicted while open.
pub const STALE_STATUS: &str = "evicted while open (stale)";

/// How deep closing follows open descendants; deeper ones are left to eviction.
const MAX_CLOSE_DEPTH: usize = 64;

impl Audit {
    /// Reports the recognised children still open at a parent's end on the parent, and
    /// closes them under `close` (exports pushed to `out`, children first).
    pub(crate) fn open_children_at_end(
        &self,
        open: &[u64],
        end_time: SystemTime,
        parent: (&mut AttributeWrites, &mut SpanFindings, Role),
        out: &mut Vec<Synthetic>,
    ) {
        self.unclosed(open, end_time, parent, out, 0);
    }

    fn unclosed(
        &self,
        open: &[u64],
        end_time: SystemTime,
        (writes, findings, role): (&mut AttributeWrites, &mut SpanFindings, Role),
        out: &mut Vec<Synthetic>,
        depth: usize,
    ) {
        let mut names = Vec::new();
        let mut count: i64 = 0;
        for &child in open {
            let Some(c) = self.ledger.orphan(child) else {
                continue;
            };
            if !c.role.is_recognised() {
                continue;
            }
            count += 1;
            if let Some(name) = c.name {
                names.push(StringValue::from(name));
            }
            if self.close_policy() && depth < MAX_CLOSE_DEPTH {
                if let Some(closed) = self.ledger.close(c.id) {
                    self.synthesize(closed, end_time, UNCLOSED_STATUS, None, out, depth + 1);
                }
            }
        }
        if count > 0 {
            findings.record(FindingCode::UnclosedChild, role, false);
            writes.set(audit::LEAK_UNCLOSED_CHILDREN, count);
            writes.set(audit::LEAK_UNCLOSED_NAMES, Value::Array(names.into()));
        }
    }

    /// Reports a span evicted while open: counted under `flag`, exported closed under
    /// `close` (with its open children, closed as unclosed).
    pub(crate) fn evicted(&self, evicted: Ended, now: SystemTime, out: &mut Vec<Synthetic>) {
        if self.close_policy() {
            self.synthesize(evicted, now, STALE_STATUS, Some(FindingCode::Stale), out, 0);
        } else {
            findings::count_only(self.metrics.as_ref(), FindingCode::Stale, evicted.role);
        }
    }

    /// Builds the export of a span the audit closed, after those of its open children.
    fn synthesize(
        &self,
        closed: Ended,
        end_time: SystemTime,
        status: &'static str,
        reason: Option<FindingCode>,
        out: &mut Vec<Synthetic>,
        depth: usize,
    ) {
        let role = closed.role;
        let mut writes = AttributeWrites::default();
        let mut findings = SpanFindings::default();
        if role.is_recognised() {
            writes.set(audit::ROLE, role.as_str());
        }
        for code in closed.pending.iter() {
            findings.record(code, role, false);
        }
        if let Some(code) = reason {
            findings.record(code, role, false);
        }
        findings.record(FindingCode::ClosedByAudit, role, false);
        self.write_structure(role, &closed, &mut writes);
        if !closed.open_children.is_empty() {
            self.unclosed(
                &closed.open_children,
                end_time,
                (&mut writes, &mut findings, role),
                out,
                depth,
            );
        }
        findings.emit(&mut writes, self.metrics.as_ref());
        if let Kept::Snapshot(snapshot) = closed.kept {
            out.push(Synthetic {
                snapshot,
                end_time,
                status,
                writes,
            });
        }
    }
}
