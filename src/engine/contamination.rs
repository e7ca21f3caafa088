//! Cross-invocation contamination: the detectors that run when an
//! invocation, step or other recognised span ends, and the repairs of the policy
//! `repair`.
//!
//! They use only what the processor has: the ledger's sums of each span's own
//! generations (up to the nearest invocation, nested invocations excluded) and of all
//! its descendant generations, the step positions it assigns, the identity an invocation
//! had at its start, and a bounded map of recent generations' response ids to their
//! invocation, kept across traces ([`ResponseOwners`]). `overlapping_step` and
//! `late_start` are found at start, in the ledger.
//!
//! Each detector errs on the side of silence: a value that is absent on either side, an
//! agent without own generations that reported usage, or a response id that matches no
//! known generation (some frameworks put a message id there) is not a finding.

use opentelemetry::trace::TraceId;
use opentelemetry::{KeyValue, Value};

use super::bounded_memory::BoundedMemory;
use super::ledger::{Identity, LastResponse, OwnUsage};
use super::span_findings::{Finding, SpanFindings};
use crate::attributes::{count_value, last_value, AttributeWrites};
use crate::findings::FindingCode;
use crate::hashing::hash_str;
use crate::keys::read::gen_ai;
use crate::pricing::call as cost;
use crate::recognition::Role;
use crate::usage::{reported_input_output, token_count, Totals};

/// Response ids known to belong to generations of *other* traces, from an index of a
/// whole export (the `genai-audit` command builds one before it audits each trace on
/// its own). In process there is none: the bounded memory below sees across traces.
pub(crate) trait ForeignResponses: Send + Sync + std::fmt::Debug {
    /// Whether `response_id` is the response id of a generation in a trace other than
    /// `trace`.
    fn is_foreign(&self, trace: TraceId, response_id: &str) -> bool;
}

/// Which invocation each recent generation's response id belongs to, in bounded memory
/// (the oldest ids are forgotten first). Ids are kept as 64-bit hashes: a collision
/// could only make two different ids look the same.
///
/// In process the memory spans traces (concurrent invocations of one agent are usually
/// separate traces). With an index of [`ForeignResponses`] (the command), it is scoped
/// to each trace, so that what one trace's audit finds never depends on which traces
/// were audited before it, and the index answers for the other traces.
#[derive(Debug)]
pub(crate) struct ResponseOwners {
    owners: BoundedMemory<u64>,
    foreign: Option<std::sync::Arc<dyn ForeignResponses>>,
}

impl ResponseOwners {
    pub(crate) fn new(
        capacity: usize,
        foreign: Option<std::sync::Arc<dyn ForeignResponses>>,
    ) -> Self {
        ResponseOwners {
            owners: BoundedMemory::new(capacity),
            foreign,
        }
    }

    /// A generation's response id, if it has one: the id's hash and, with `keep`, the id
    /// with the model, to become its invocation's last response.
    pub(crate) fn response_of(
        attributes: &[KeyValue],
        keep: bool,
    ) -> Option<(u64, Option<Box<LastResponse>>)> {
        let id = non_empty(last_value(attributes, gen_ai::RESPONSE_ID)?)?;
        let hash = hash_str(&id);
        let last = keep.then(|| {
            Box::new(LastResponse {
                id: id.into_owned(),
                model: cost::model(attributes).map(str::to_owned),
            })
        });
        Some((hash, last))
    }

    /// The key an id's hash is kept under: the hash itself, or mixed with the trace
    /// when the memory is scoped to traces.
    fn key(&self, trace: TraceId, hash: u64) -> u64 {
        match self.foreign {
            None => hash,
            Some(_) => {
                let trace = u128::from_be_bytes(trace.to_bytes());
                hash ^ ((trace as u64) ^ ((trace >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            }
        }
    }

    /// Remembers that the response id of hash `hash` (from [`Self::response_of`]), of a
    /// generation of `trace`, belongs to `invocation` (0: not known when the
    /// generation ended).
    pub(crate) fn remember(&self, trace: TraceId, hash: u64, invocation: u64) {
        self.owners.insert(self.key(trace, hash), invocation);
    }

    fn owner(&self, trace: TraceId, response_id: &str) -> Option<u64> {
        self.owners.get(self.key(trace, hash_str(response_id)))
    }

    fn foreign_elsewhere(&self, trace: TraceId, response_id: &str) -> bool {
        self.foreign
            .as_ref()
            .is_some_and(|f| f.is_foreign(trace, response_id))
    }
}

fn non_empty(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    let s = value.as_str();
    (!s.trim().is_empty()).then_some(s)
}

/// The identity an invocation shows on its start attributes, or a descendant on its
/// final ones: hashes of `gen_ai.conversation.id` and `gen_ai.agent.name` (0: absent).
pub(crate) fn identity_of(attributes: &[KeyValue]) -> Identity {
    let hash = |key| {
        last_value(attributes, key)
            .and_then(non_empty)
            .map_or(0, |s| hash_str(&s))
    };
    Identity {
        conversation: hash(gen_ai::CONVERSATION_ID),
        agent: hash(gen_ai::AGENT_NAME),
    }
}

/// The detectors, on one ending span.
pub(crate) struct Check<'a, 'w> {
    pub(crate) attributes: &'a [KeyValue],
    pub(crate) role: Role,
    pub(crate) repair: bool,
    pub(crate) writes: &'w mut AttributeWrites,
    pub(crate) findings: &'w mut SpanFindings,
}

impl Check<'_, '_> {
    /// `usage_mismatch` (invocation, step): with at least one own generation that
    /// reported usage, a reported input or output count that equals neither the own
    /// sum nor the sum over all descendant generations. Repair: the own sum.
    pub(crate) fn usage(&mut self, own: &OwnUsage, totals: &Totals) {
        if own.reporting == 0 {
            return;
        }
        let mut found = false;
        let [input, output] = reported_input_output(self.attributes);
        for (reported, own_sum, all_sum) in [
            (input, own.input, totals.input),
            (output, own.output, totals.output),
        ] {
            let Some((key, value, Some(reported))) = reported else {
                continue;
            };
            if reported == own_sum || reported == all_sum {
                continue;
            }
            found = true;
            if self.repair {
                self.writes
                    .repair(key, Some(value.clone()), count_value(own_sum));
            }
        }
        if found {
            self.findings
                .add(Finding::new(FindingCode::UsageMismatch, self.role).repaired(self.repair));
        }
    }

    /// `foreign_response` (invocation): its `gen_ai.response.id` belongs to a
    /// generation of another invocation (of this trace, or, by the memory or the
    /// [`ForeignResponses`] index, of another trace). A generation whose invocation was not known
    /// when it ended (recognised only at end) is this invocation's when its id came up
    /// with its totals (`own_responses`). Repair: the id and model of its last-ended own
    /// generation, when it has one.
    pub(crate) fn response(
        &mut self,
        trace: TraceId,
        invocation: u64,
        owners: &ResponseOwners,
        last_own: Option<&LastResponse>,
        own_responses: &[u64],
    ) {
        let Some(value) = last_value(self.attributes, gen_ai::RESPONSE_ID) else {
            return;
        };
        let Some(id) = non_empty(value) else { return };
        let own = || own_responses.contains(&hash_str(&id));
        match owners.owner(trace, &id) {
            Some(0) if !own() => {}
            Some(owner) if owner != 0 && owner != invocation => {}
            None if !own() && owners.foreign_elsewhere(trace, &id) => {}
            _ => return,
        }
        let repaired = match last_own {
            Some(own) if self.repair => {
                self.writes.repair(
                    gen_ai::RESPONSE_ID,
                    Some(value.clone()),
                    own.id.clone().into(),
                );
                if let Some(model) = &own.model {
                    let original = last_value(self.attributes, gen_ai::RESPONSE_MODEL);
                    self.writes.repair(
                        gen_ai::RESPONSE_MODEL,
                        original.cloned(),
                        model.clone().into(),
                    );
                }
                true
            }
            _ => false,
        };
        self.findings
            .add(Finding::new(FindingCode::ForeignResponse, self.role).repaired(repaired));
    }

    /// `round_mismatch` (step): its `gen_ai.react.round` differs from its position.
    /// Repair: the round becomes the position.
    pub(crate) fn round(&mut self, index: u32) {
        let Some(value) = last_value(self.attributes, gen_ai::REACT_ROUND) else {
            return;
        };
        if token_count(value) == Some(u64::from(index)) {
            return;
        }
        if self.repair {
            self.writes.repair(
                gen_ai::REACT_ROUND,
                Some(value.clone()),
                i64::from(index).into(),
            );
        }
        self.findings
            .add(Finding::new(FindingCode::RoundMismatch, self.role).repaired(self.repair));
    }

    /// `identity_mismatch` (recognised descendant): its conversation id or agent name
    /// differs from its invocation's, both being set. The invocation's identity is
    /// looked up only when the span carries one of its own.
    pub(crate) fn identity(&mut self, invocation: impl FnOnce() -> Option<Identity>) {
        let mine = identity_of(self.attributes);
        if mine == Identity::default() {
            return;
        }
        let Some(invocation) = invocation() else {
            return;
        };
        let differs = |a: u64, b: u64| a != 0 && b != 0 && a != b;
        if differs(mine.conversation, invocation.conversation)
            || differs(mine.agent, invocation.agent)
        {
            self.findings
                .add(Finding::new(FindingCode::IdentityMismatch, self.role).repaired(false));
        }
    }
}
