//! What the ledger keeps of a span: its entry (role, parent, invocation, what it
//! gathered from below, its open children), what it hands up as it ends, and what an
//! ended span leaves for the engine.

use crate::engine::span_findings::FindingSet;
use crate::recognition::Role;
use crate::usage::Totals;
use opentelemetry::trace::TraceId;
use std::borrow::Cow;
use std::sync::Arc;

/// What became of a tracked span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Started, not ended.
    Open,
    /// Ended (its entry is a tombstone while tracked children are open).
    Ended,
    /// The audit closed it (leak policy `close`); its real end is not exported.
    Closed,
    /// Evicted while open under leak policy `flag`; its real end, if it comes, is
    /// exported with `stale`.
    Evicted,
    /// Not seen starting (not tracked at its start): its entry only holds what its
    /// ended children handed up, until it ends.
    Pending,
}

/// A copy of a span as it started, kept under leak policy `close` to export the span
/// if the audit closes it. The processor's is the SDK's own span data; the engine only
/// needs its name.
pub(crate) trait StartCopy: Send + Sync + std::fmt::Debug + 'static {
    /// The span's name.
    fn name(&self) -> &str;
}

/// What the span kept from its start, besides its place in the tree.
#[derive(Debug, Default)]
pub(crate) enum Kept<S> {
    /// Nothing (spans not recognised at start).
    #[default]
    Nothing,
    /// Its name, for `genai_audit.leak.unclosed_names`.
    Name(Cow<'static, str>),
    /// The whole span as it started (leak policy `close`, to export it closed).
    Snapshot(Box<S>),
}

impl<S: StartCopy> Kept<S> {
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Kept::Nothing => None,
            Kept::Name(name) => Some(name),
            Kept::Snapshot(snapshot) => Some(snapshot.name()),
        }
    }
}

/// Hashes of an invocation's `gen_ai.conversation.id` and `gen_ai.agent.name` at its
/// start (0: not set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) conversation: u64,
    pub(crate) agent: u64,
}

/// Usage of the generations that are a span's own (up to the nearest invocation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OwnUsage {
    pub(crate) input: u64,
    pub(crate) output: u64,
    /// Own generations that reported input or output tokens.
    pub(crate) reporting: u32,
}

impl OwnUsage {
    pub(crate) fn add(&mut self, other: &OwnUsage) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.reporting = self.reporting.saturating_add(other.reporting);
    }
}

/// An invocation's last-ended own generation's response (kept under `repair` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastResponse {
    pub(crate) id: String,
    pub(crate) model: Option<String>,
}

/// What the ledger keeps for one tracked span.
#[derive(Debug)]
pub(crate) struct Entry<S> {
    /// The tracked parent, if the parent was tracked when this span started (0: none;
    /// span ids are never 0).
    pub(super) parent: u64,
    /// The nearest ancestor that was an invocation at this span's start (0: none).
    pub(super) invocation: u64,
    /// When the processor started tracking it, nanoseconds since the Unix epoch.
    pub(super) start_nanos: u64,
    /// What it kept from its start.
    pub(super) kept: Kept<S>,
    /// What only spans with descendants (or an identity) need, allocated on first use:
    /// most tracked spans are leaves (generations, tool calls) and never pay for it.
    pub(super) below: Option<Box<Below>>,
    /// This step's 1-based position among its invocation's steps (0: none).
    pub(super) step_index: u32,
    /// Findings made at start (`late_start`, `overlapping_step`), written at the end.
    pub(super) pending: FindingSet,
    /// The role at start.
    pub(super) role: Role,
    pub(super) fate: Fate,
    /// Set when the tracked parent ended while this span was open.
    pub(super) parent_ended: bool,
}

/// The ids of a span's tracked children still open: the first few in place (a parent
/// usually has few open at once), more in a list of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum OpenChildren {
    Few { ids: [u64; 3], len: u8 },
    Many(Vec<u64>),
}

impl Default for OpenChildren {
    fn default() -> Self {
        OpenChildren::Few {
            ids: [0; 3],
            len: 0,
        }
    }
}

impl OpenChildren {
    #[inline]
    pub(super) fn as_slice(&self) -> &[u64] {
        match self {
            OpenChildren::Few { ids, len } => &ids[..usize::from(*len).min(ids.len())],
            OpenChildren::Many(ids) => ids,
        }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    #[inline]
    pub(super) fn push(&mut self, child: u64) {
        match self {
            OpenChildren::Few { ids, len } if usize::from(*len) < ids.len() => {
                ids[usize::from(*len)] = child;
                *len += 1;
            }
            OpenChildren::Few { ids, .. } => {
                let mut many = ids.to_vec();
                many.push(child);
                *self = OpenChildren::Many(many);
            }
            OpenChildren::Many(ids) => ids.push(child),
        }
    }

    /// Removes `child` (the order of the others may change).
    #[inline]
    pub(super) fn remove(&mut self, child: u64) {
        match self {
            OpenChildren::Few { ids, len } => {
                let n = usize::from(*len).min(ids.len());
                if let Some(pos) = ids[..n].iter().position(|c| *c == child) {
                    ids[pos] = ids[n - 1];
                    *len -= 1;
                }
            }
            OpenChildren::Many(ids) => {
                if let Some(pos) = ids.iter().position(|c| *c == child) {
                    ids.swap_remove(pos);
                }
            }
        }
    }
}

/// The part of an entry about a span's descendants.
#[derive(Debug, Default)]
pub(super) struct Below {
    /// Tracked children still open.
    pub(super) open_children: OpenChildren,
    /// Contributions of ended descendant generations and tool calls.
    pub(super) totals: Totals,
    /// Usage of ended own generations.
    pub(super) own: OwnUsage,
    /// Steps started under this invocation.
    pub(super) steps: u32,
    /// Steps of this invocation open now.
    pub(super) open_steps: u32,
    /// The invocation's identity at its start.
    pub(super) identity: Identity,
    pub(super) last_response: Option<Box<LastResponse>>,
    /// Hashes of the response ids of the latest own generations (at most
    /// [`OWN_RESPONSES`]).
    pub(super) own_responses: Vec<u64>,
    /// The invocation's `gen_ai.agent.name` at its start (kept when metrics or budgets
    /// need it).
    pub(super) agent_name: Option<Arc<str>>,
    /// The invocation passed its budget (reported once).
    pub(super) budget_exceeded: bool,
    /// Generations counted below it with no recognised span in between, and how many
    /// of them reported usage: what a generation wraps (one model call seen twice).
    /// Spans not recognised at their start keep them too (their role may come at end).
    pub(super) wrapped: Wrapped,
}

/// Generations counted with no recognised span between them and a span, and how many
/// of them reported usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wrapped {
    pub(crate) generations: u32,
    pub(crate) with_usage: u32,
}

impl Wrapped {
    pub(crate) fn add(&mut self, other: Wrapped) {
        self.generations = self.generations.saturating_add(other.generations);
        self.with_usage = self.with_usage.saturating_add(other.with_usage);
    }
}

/// How many own response ids a span remembers for `foreign_response` (an invocation's
/// response id is its last generation's).
pub(super) const OWN_RESPONSES: usize = 16;

impl Below {
    #[inline]
    pub(super) fn absorb(&mut self, c: &mut Contribution) {
        self.totals.add(&c.totals);
        self.own.add(&c.own);
        self.steps = self.steps.saturating_add(c.steps);
        self.wrapped.add(c.wrapped);
        if let Some(response) = c.response.take() {
            self.last_response = Some(response);
        }
        for hash in c.own_responses.drain(..) {
            if self.own_responses.len() >= OWN_RESPONSES {
                self.own_responses.remove(0);
            }
            self.own_responses.push(hash);
        }
    }
}

impl<S> Entry<S> {
    pub(super) fn parent(&self) -> Option<u64> {
        unpack(self.parent)
    }

    pub(super) fn invocation(&self) -> Option<u64> {
        unpack(self.invocation)
    }

    pub(super) fn below(&mut self) -> &mut Below {
        self.below.get_or_insert_with(Box::default)
    }

    pub(super) fn has_open_children(&self) -> bool {
        self.below
            .as_ref()
            .is_some_and(|b| !b.open_children.is_empty())
    }

    /// Whether this is the entry queued with start `start` and eviction may take it
    /// (open, closed by the audit, or pending; not a tombstone).
    pub(super) fn evictable_from(&self, start: u64) -> bool {
        self.start_nanos == start && matches!(self.fate, Fate::Open | Fate::Closed | Fate::Pending)
    }
}

#[inline]
pub(super) fn pack(id: Option<u64>) -> u64 {
    id.unwrap_or(0)
}

#[inline]
pub(super) fn unpack(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

/// What `Ledger::start` needs to know about a new span.
#[derive(Debug)]
pub(crate) struct NewSpan {
    pub(crate) id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) role: Role,
    pub(crate) identity: Identity,
    /// An invocation's agent name, when metrics or budgets need it.
    pub(crate) agent_name: Option<Arc<str>>,
}

/// What `Ledger::start` did with a span.
#[derive(Debug)]
pub(crate) enum Start {
    /// Tracked; `due` when some span may be due for eviction (the oldest may be older
    /// than the maximum age, or the ledger holds more than its capacity).
    Tracked { due: bool },
    /// The fast path: not recognised, and no tracked parent.
    Untracked,
    /// It would be tracked, but the ledger is full.
    Full(NewSpan),
}

/// What an ended (or closed, or evicted) span's entry held.
#[derive(Debug)]
pub(crate) struct Ended<S> {
    /// The trace it belongs to.
    pub(crate) trace: TraceKey,
    pub(crate) parent: Option<u64>,
    pub(crate) invocation: Option<u64>,
    pub(crate) role: Role,
    pub(crate) parent_ended: bool,
    pub(crate) step_index: u32,
    pub(crate) pending: FindingSet,
    /// What was below it (sums, own usage, steps, responses, the agent name, the
    /// budget), when it had anything: moved out of the entry when the entry goes.
    pub(super) below: Option<Box<Below>>,
    /// Tracked children still open at the end.
    pub(crate) open_children: Vec<u64>,
    /// Tracked since its start (false: its entry only held what its children handed up).
    pub(crate) tracked_at_start: bool,
    /// What it kept from its start (moved out when the audit closes or evicts it).
    pub(crate) kept: Kept<S>,
}

impl<S> Ended<S> {
    /// Contributions of its ended descendant generations and tool calls.
    pub(crate) fn totals(&self) -> Totals {
        self.below
            .as_ref()
            .map_or_else(Totals::default, |b| b.totals)
    }

    /// Usage of its ended own generations.
    pub(crate) fn own(&self) -> OwnUsage {
        self.below
            .as_ref()
            .map_or_else(OwnUsage::default, |b| b.own)
    }

    /// Steps counted under it.
    pub(crate) fn steps(&self) -> u32 {
        self.below.as_ref().map_or(0, |b| b.steps)
    }

    /// An invocation's last-ended own generation's response (under `repair`).
    pub(crate) fn last_response(&self) -> Option<&LastResponse> {
        self.below.as_ref()?.last_response.as_deref()
    }

    /// Hashes of the response ids of the latest own generations.
    pub(crate) fn own_responses(&self) -> &[u64] {
        self.below.as_ref().map_or(&[], |b| &b.own_responses)
    }

    /// An invocation's agent name at its start, when kept.
    pub(crate) fn agent_name(&self) -> Option<&Arc<str>> {
        self.below.as_ref()?.agent_name.as_ref()
    }

    /// Generations counted below it with no recognised span in between.
    pub(crate) fn wrapped(&self) -> Wrapped {
        self.below
            .as_ref()
            .map_or_else(Wrapped::default, |b| b.wrapped)
    }

    /// The invocation passed its budget before it ended.
    pub(crate) fn budget_exceeded(&self) -> bool {
        self.below.as_ref().is_some_and(|b| b.budget_exceeded)
    }
}

/// What the ledger knows about a span that is ending.
// Returned by value once per tracked span; boxing the large variant would cost an
// allocation per span.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Ending<S> {
    /// It was tracked and open: here is its entry.
    Tracked(Ended<S>),
    /// The audit already closed it (leak policy `close`).
    Closed(Role),
    /// It was evicted while open (leak policy `flag`).
    Evicted(Role),
    /// Not tracked (fast path, over capacity, ended twice, or forgotten).
    Untracked,
}

/// An open child found at its parent's end.
#[derive(Debug)]
pub(crate) struct OpenChild {
    pub(crate) id: u64,
    pub(crate) role: Role,
    pub(crate) name: Option<String>,
}

/// What an ended span hands to its parent: its own call (a generation or tool call)
/// and what its descendants handed it.
#[derive(Debug, Default)]
pub(crate) struct Contribution {
    pub(crate) totals: Totals,
    pub(crate) own: OwnUsage,
    /// Steps counted at their end under a span that is not an invocation.
    pub(crate) steps: u32,
    /// Becomes the invocation's last response (under `repair`).
    pub(crate) response: Option<Box<LastResponse>>,
    /// Hashes of own generations' response ids.
    pub(crate) own_responses: Vec<u64>,
    /// Generations in it with no recognised span between them and the receiver.
    pub(crate) wrapped: Wrapped,
}

impl Contribution {
    /// Whether there is anything to hand up.
    pub(crate) fn is_empty(&self) -> bool {
        !self.totals.has_calls()
            && !self.totals.partial
            && self.own.reporting == 0
            && self.steps == 0
            && self.response.is_none()
            && self.own_responses.is_empty()
            && self.wrapped.generations == 0
    }
}

/// A generation's or tool call's contribution, given to `Ledger::end` with its span.
#[derive(Debug, Default)]
pub(crate) enum Call {
    /// The span is no call.
    #[default]
    None,
    /// Not handed on (yet): the caller hands it up with the rest of the span.
    Pending(Contribution),
    /// Handed to the span's tracked ancestors; its invocation's totals after it, when
    /// the ancestors reached the invocation.
    Taken(Option<Totals>),
}

/// What `Ledger::forward` did.
#[derive(Debug)]
pub(crate) enum Forward {
    /// Handed up (or dropped at the root).
    Done,
    /// The parent needs a new entry and the ledger is full: the contribution back, to
    /// make room and try again.
    Full(u64, Contribution),
}

/// Counts one more open step of an invocation: its 1-based index, and whether another
/// step was open.
#[inline]
pub(super) fn count_step(inv: &mut Below) -> (u32, bool) {
    inv.steps = inv.steps.saturating_add(1);
    let overlapping = inv.open_steps > 0;
    inv.open_steps = inv.open_steps.saturating_add(1);
    (inv.steps, overlapping)
}

/// What an entry held, for a span that is no longer open. When the entry `stays` (a
/// tombstone with open children, or a span the audit closed), it keeps what is below
/// it, and the record gets a copy; otherwise that part moves into the record whole.
pub(super) fn take_ended<S>(entry: &mut Entry<S>, trace: TraceKey, stays: bool) -> Ended<S> {
    let open_children = entry
        .below
        .as_ref()
        .map_or_else(Vec::new, |b| b.open_children.as_slice().to_vec());
    let below = match entry.below.as_mut() {
        Some(b) if stays => Some(Box::new(Below {
            totals: b.totals,
            own: b.own,
            steps: b.steps,
            last_response: b.last_response.take(),
            own_responses: std::mem::take(&mut b.own_responses),
            agent_name: b.agent_name.clone(),
            budget_exceeded: b.budget_exceeded,
            wrapped: b.wrapped,
            ..Below::default()
        })),
        _ => entry.below.take(),
    };
    Ended {
        trace,
        parent: entry.parent(),
        invocation: entry.invocation(),
        role: entry.role,
        parent_ended: entry.parent_ended,
        step_index: entry.step_index,
        pending: entry.pending,
        below,
        open_children,
        tracked_at_start: entry.fate != Fate::Pending,
        kept: std::mem::take(&mut entry.kept),
    }
}

/// Removes `child` from `entry`'s open children; true when `entry` has ended and has no
/// open children left.
pub(super) fn remove_child<S>(entry: &mut Entry<S>, child: u64) -> bool {
    if let Some(below) = entry.below.as_mut() {
        below.open_children.remove(child);
    }
    entry.fate == Fate::Ended && !entry.has_open_children()
}

/// Where the ledger keeps a trace's spans: all spans of a trace are kept behind one
/// lock, so that what a span event reads and writes (the span, its parent and
/// ancestors, its invocation) takes that lock once, and events of other traces are
/// rarely held up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceKey(pub(super) usize);

/// How many locks the span map is split into (by trace): a power of two.
pub(super) const SHARDS: usize = 64;

impl TraceKey {
    /// The key of the trace `trace_id`.
    pub(crate) fn of(trace_id: TraceId) -> Self {
        let bits = u128::from_be_bytes(trace_id.to_bytes());
        // Both halves: trace ids are random, but some generators leave one half zero.
        let folded = (bits as u64 ^ (bits >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let index = folded >> (64 - SHARDS.trailing_zeros());
        TraceKey(usize::try_from(index).unwrap_or(0) % SHARDS)
    }
}
