//! Leaks: recognised children still open when their parent ends, and
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

use super::audit::{Audit, Caller, Synthetic};
use super::ledger::{Ended, Kept, StartCopy, TraceKey};
use super::span_findings::{Finding, SpanFindings};
use crate::attributes::AttributeWrites;
use crate::findings::FindingCode;
use crate::keys::{self, STALE_STATUS, UNCLOSED_STATUS};
use crate::recognition::Role;

/// How the audit closes a span: when, with which status message, and why (besides
/// `closed_by_audit`).
struct Closing {
    end_time: SystemTime,
    status: &'static str,
    reason: Option<FindingCode>,
}

/// How deep closing follows open descendants; deeper ones are left to eviction.
const MAX_CLOSE_DEPTH: usize = 64;

impl<S: StartCopy> Audit<S> {
    /// Reports the recognised children still open at a parent's end on the parent, and
    /// closes them under `close` (exports pushed to `out`, children first).
    pub(crate) fn open_children_at_end(
        &self,
        (trace, open, end_time): (TraceKey, &[u64], SystemTime),
        parent: (&mut AttributeWrites, &mut SpanFindings, Role),
        caller: Caller<'_>,
        out: &mut Vec<Synthetic<S>>,
    ) {
        self.unclosed((trace, open, end_time), parent, caller, out, 0);
    }

    /// The open children `open` of a span of `trace` that ended at `end_time`.
    fn unclosed(
        &self,
        (trace, open, end_time): (TraceKey, &[u64], SystemTime),
        (writes, findings, role): (&mut AttributeWrites, &mut SpanFindings, Role),
        caller: Caller<'_>,
        out: &mut Vec<Synthetic<S>>,
        depth: usize,
    ) {
        let mut names = Vec::new();
        let mut count: i64 = 0;
        for &child in open {
            let Some(c) = self.ledger().orphan(trace, child) else {
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
                if let Some(closed) = self.ledger().close(trace, c.id) {
                    let closing = Closing {
                        end_time,
                        status: UNCLOSED_STATUS,
                        reason: None,
                    };
                    self.synthesize(closed, closing, caller, out, depth + 1);
                }
            }
        }
        if count > 0 {
            findings.add(Finding::new(FindingCode::UnclosedChild, role));
            writes.set(keys::LEAK_UNCLOSED_CHILDREN, count);
            writes.set(keys::LEAK_UNCLOSED_NAMES, Value::Array(names.into()));
        }
    }

    /// Reports a span evicted while open: counted under `flag`, exported closed under
    /// `close` (with its open children, closed as unclosed).
    pub(crate) fn evicted(
        &self,
        evicted: Ended<S>,
        now: SystemTime,
        caller: Caller<'_>,
        out: &mut Vec<Synthetic<S>>,
    ) {
        if self.close_policy() && evicted.role.is_recognised() {
            let closing = Closing {
                end_time: now,
                status: STALE_STATUS,
                reason: Some(FindingCode::Stale),
            };
            self.synthesize(evicted, closing, caller, out, 0);
        } else {
            Finding::new(FindingCode::Stale, evicted.role).count_only(caller.sink);
        }
    }

    /// Builds the export of a span the audit closed, after those of its open children.
    fn synthesize(
        &self,
        closed: Ended<S>,
        Closing {
            end_time,
            status,
            reason,
        }: Closing,
        caller: Caller<'_>,
        out: &mut Vec<Synthetic<S>>,
        depth: usize,
    ) {
        let role = closed.role;
        let mut writes = AttributeWrites::default();
        let mut findings = SpanFindings::default();
        if role.is_recognised() {
            writes.set(keys::ROLE, role.as_str());
        }
        for code in closed.pending.iter() {
            findings.add(Finding::new(code, role));
        }
        if let Some(code) = reason {
            findings.add(Finding::new(code, role));
        }
        findings.add(Finding::new(FindingCode::ClosedByAudit, role));
        self.write_structure(closed.trace, role, Some(&closed), None, &mut writes, caller);
        if !closed.open_children.is_empty() {
            self.unclosed(
                (closed.trace, &closed.open_children, end_time),
                (&mut writes, &mut findings, role),
                caller,
                out,
                depth,
            );
        }
        findings.emit(&mut writes, caller.sink);
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
