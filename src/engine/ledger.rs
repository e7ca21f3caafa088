//! The live-span ledger: what the processor remembers about spans that have started
//! and not yet ended, and, in bounded memory, about spans that ended recently.
//!
//! A span is tracked from `on_start` when it is recognised there (by its name or start
//! attributes) or when its parent is tracked; everything else takes the fast path and
//! leaves no state. Each entry knows its tracked parent and its invocation (the nearest
//! ancestor that was an invocation at its start), so rollups and invocation lookup see
//! through non-recognised spans in between.
//!
//! Spans not tracked from their start hand their totals up one hop as they end: what
//! they and their descendants contribute (generations, tool calls, `partial`, own
//! usage, steps counted at end) goes to their parent, keyed by the parent's span id,
//! which the SDK gives every ended span. A tracked parent takes it like a tracked
//! child's contribution; a parent never seen before gets a *pending* entry that holds it
//! until the parent ends, so a span recognised only at its end (or never) still passes
//! its descendants' totals up. Totals are therefore ready when a span ends, whatever
//! was known at its start. A
//! generation's usage counts as *own* usage of the spans up to and including its
//! invocation (an invocation hands no own usage up). A span that ends while tracked
//! children are still open stays as a tombstone until they end, so that a late child's
//! contribution still reaches the ancestors above it, and its children learn that their
//! parent has ended (for `late_end`); ended spans that matter are also remembered in
//! bounded memory, for children that were not tracked.
//!
//! Within spans tracked since their start, a generation's or tool call's contribution
//! is added to every tracked ancestor as it ends, nearest first; the running total of
//! its invocation after that addition is the generation's cumulative total (which
//! therefore needs the invocation tracked when the generation ends). Pending entries
//! and tracked roots hand their sums across to the parent their end names.
//!
//! Memory is bounded: at most `capacity` entries. Spans are queued in start order; at
//! each tracked start the oldest are evicted when the ledger is full or when they are
//! older than the maximum age, a bounded number per call, so eviction needs no thread of
//! its own and no call does more than a fixed amount of it.
//!
//! The spans of one trace are kept behind one lock (the span map is split into
//! [`SHARDS`] parts by trace id, each with its spans' start order), so that a ledger
//! call of a span event takes one lock, whatever it reads and writes of the span, its
//! ancestors and its invocation; events of other traces rarely share it. Eviction
//! finds the oldest span across the parts from the start each part publishes, without
//! their locks. Every map is keyed by the span id with a cheap hasher
//! ([`crate::hashing`]).

use std::borrow::Cow;
use std::collections::{hash_map, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;
use dashmap::DashMap;
use opentelemetry::trace::TraceId;
use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};

use super::bounded_memory::{BoundedMemory, Record};
use super::findings::FindingSet;
use crate::findings::FindingCode;
use crate::hashing::BuildIdHasher;
use crate::recognition::Role;
use crate::usage::Totals;

/// How far a walk up the ancestors goes: one step per span the walk can meet (the
/// tracked ones, and the ended ones the memories still hold), so that rollups are exact
/// at any depth; only a parent cycle (corrupt ids) reaches the bound.
fn walk_bound(tracked: usize, remembered: usize) -> usize {
    tracked.saturating_add(remembered).saturating_add(1)
}
/// Most open spans evicted by one call; the rest wait for the next calls.
const EVICTIONS_PER_CALL: usize = 8;
/// Most queue items of already-ended spans discarded by one call.
const DISCARDS_PER_CALL: usize = 64;

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
    parent: u64,
    /// The nearest ancestor that was an invocation at this span's start (0: none).
    invocation: u64,
    /// When the processor started tracking it, nanoseconds since the Unix epoch.
    start_nanos: u64,
    /// What it kept from its start.
    kept: Kept<S>,
    /// What only spans with descendants (or an identity) need, allocated on first use:
    /// most tracked spans are leaves (generations, tool calls) and never pay for it.
    below: Option<Box<Below>>,
    /// This step's 1-based position among its invocation's steps (0: none).
    step_index: u32,
    /// Findings made at start (`late_start`, `overlapping_step`), written at the end.
    pending: FindingSet,
    /// The role at start.
    role: Role,
    fate: Fate,
    /// Set when the tracked parent ended while this span was open.
    parent_ended: bool,
}

/// The ids of a span's tracked children still open: the first few in place (a parent
/// usually has few open at once), more in a list of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OpenChildren {
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
    fn as_slice(&self) -> &[u64] {
        match self {
            OpenChildren::Few { ids, len } => &ids[..usize::from(*len).min(ids.len())],
            OpenChildren::Many(ids) => ids,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn push(&mut self, child: u64) {
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
    fn remove(&mut self, child: u64) {
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
struct Below {
    /// Tracked children still open.
    open_children: OpenChildren,
    /// Contributions of ended descendant generations and tool calls.
    totals: Totals,
    /// Usage of ended own generations.
    own: OwnUsage,
    /// Steps started under this invocation.
    steps: u32,
    /// Steps of this invocation open now.
    open_steps: u32,
    /// The invocation's identity at its start.
    identity: Identity,
    last_response: Option<Box<LastResponse>>,
    /// Hashes of the response ids of the latest own generations (at most
    /// [`OWN_RESPONSES`]).
    own_responses: Vec<u64>,
    /// The invocation's `gen_ai.agent.name` at its start (kept when metrics or budgets
    /// need it).
    agent_name: Option<Arc<str>>,
    /// The invocation passed its budget (reported once).
    budget_exceeded: bool,
}

/// How many own response ids a span remembers for `foreign_response` (an invocation's
/// response id is its last generation's).
const OWN_RESPONSES: usize = 16;

impl Below {
    fn absorb(&mut self, c: &mut Contribution) {
        self.totals.add(&c.totals);
        self.own.add(&c.own);
        self.steps = self.steps.saturating_add(c.steps);
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
    fn parent(&self) -> Option<u64> {
        unpack(self.parent)
    }

    fn invocation(&self) -> Option<u64> {
        unpack(self.invocation)
    }

    fn below(&mut self) -> &mut Below {
        self.below.get_or_insert_with(Box::default)
    }

    fn has_open_children(&self) -> bool {
        self.below
            .as_ref()
            .is_some_and(|b| !b.open_children.is_empty())
    }

    /// Whether this is the entry queued with start `start` and eviction may take it
    /// (open, closed by the audit, or pending; not a tombstone).
    fn evictable_from(&self, start: u64) -> bool {
        self.start_nanos == start && matches!(self.fate, Fate::Open | Fate::Closed | Fate::Pending)
    }
}

fn pack(id: Option<u64>) -> u64 {
    id.unwrap_or(0)
}

fn unpack(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

/// What [`Ledger::start`] needs to know about a new span.
#[derive(Debug)]
pub(crate) struct NewSpan {
    pub(crate) id: u64,
    pub(crate) parent: Option<u64>,
    pub(crate) role: Role,
    pub(crate) identity: Identity,
    /// An invocation's agent name, when metrics or budgets need it.
    pub(crate) agent_name: Option<Arc<str>>,
}

/// What [`Ledger::start`] did with a span.
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
    below: Option<Box<Below>>,
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

/// What the ledger remembers of a span after its end.
#[derive(Debug, Clone, Copy)]
struct Recent {
    parent: Option<u64>,
    invocation: Option<u64>,
    role: Role,
    fate: Fate,
}

const FATES: [Fate; 5] = [
    Fate::Open,
    Fate::Ended,
    Fate::Closed,
    Fate::Evicted,
    Fate::Pending,
];

impl Record for Recent {
    fn to_words(self) -> [u64; 3] {
        // A role's and a fate's discriminants are their places in `Role::ALL` and
        // `FATES` (a unit test checks it).
        let (role, fate) = (self.role as u64, self.fate as u64);
        [pack(self.parent), pack(self.invocation), role | fate << 8]
    }

    fn from_words([parent, invocation, meta]: [u64; 3]) -> Self {
        let index = |bits: u64| usize::try_from(bits & 0xff).unwrap_or(usize::MAX);
        Recent {
            parent: unpack(parent),
            invocation: unpack(invocation),
            role: Role::ALL.get(index(meta)).copied().unwrap_or(Role::Other),
            fate: FATES.get(index(meta >> 8)).copied().unwrap_or(Fate::Ended),
        }
    }
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
    }
}

/// A generation's or tool call's contribution, given to [`Ledger::end`] with its span.
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

/// What [`Ledger::forward`] did.
#[derive(Debug)]
pub(crate) enum Forward {
    /// Handed up (or dropped at the root).
    Done,
    /// The parent needs a new entry and the ledger is full: the contribution back, to
    /// make room and try again.
    Full(u64, Contribution),
}

/// The spans the audit exported closed whose real end has not come yet, remembered
/// exactly (not in the lossy memory of recently ended spans), so that a real end is
/// never exported a second time. Bounded on its own, independently of a small
/// `max_tracked_spans`: at most [`closed_capacity`] ids, the oldest forgotten first.
#[derive(Debug)]
struct ClosedIds {
    /// Each id's role and parent (0: none).
    ids: DashMap<u64, (Role, u64), BuildIdHasher>,
    /// How many ids are held: a span end looks into the set only when some are (most
    /// processes never close a span), and the bound is kept without counting shards.
    held: AtomicUsize,
    order: Mutex<VecDeque<u64>>,
    capacity: usize,
}

/// How many spans closed by the audit can await their real end: the ledger's capacity,
/// and at least 65 536.
fn closed_capacity(max_tracked_spans: usize) -> usize {
    max_tracked_spans.max(1 << 16)
}

impl ClosedIds {
    fn new(capacity: usize) -> Self {
        ClosedIds {
            ids: DashMap::with_hasher(BuildIdHasher::default()),
            held: AtomicUsize::new(0),
            order: Mutex::new(VecDeque::new()),
            capacity,
        }
    }

    fn insert(&self, id: u64, role: Role, parent: Option<u64>) {
        if self.ids.insert(id, (role, pack(parent))).is_some() {
            return;
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        let mut order = self.order.lock();
        order.push_back(id);
        while self.held.load(Ordering::Relaxed) > self.capacity {
            let Some(oldest) = order.pop_front() else {
                break;
            };
            if self.ids.remove(&oldest).is_some() {
                self.held.fetch_sub(1, Ordering::Relaxed);
            }
        }
        // Ids whose real end came stay in the queue until they reach its front; drop
        // them once the queue is twice the bound (amortised O(1) per insert).
        if order.len() > 2 * self.capacity {
            order.retain(|id| self.ids.contains_key(id));
        }
    }

    /// The role of a span the audit closed, once: its real end has come.
    fn take(&self, id: u64) -> Option<Role> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let (_, (role, _)) = self.ids.remove(&id)?;
        self.held.fetch_sub(1, Ordering::Relaxed);
        Some(role)
    }

    /// Whether `id` was closed by the audit and has not really ended; its parent.
    fn parent_of(&self, id: u64) -> Option<Option<u64>> {
        if self.held.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.ids.get(&id).map(|e| unpack(e.1))
    }
}

/// Where the ledger keeps a trace's spans: all spans of a trace are kept behind one
/// lock, so that what a span event reads and writes (the span, its parent and
/// ancestors, its invocation) takes that lock once, and events of other traces are
/// rarely held up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceKey(usize);

/// How many locks the span map is split into (by trace): a power of two.
const SHARDS: usize = 64;

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

/// The tracked spans of the traces that share a lock, by span id.
type Spans<S> = HashMap<u64, Entry<S>, BuildIdHasher>;

/// Most queue items kept beyond twice a shard's spans before those of ended spans are
/// dropped (see [`Ledger::enqueue`]).
const QUEUE_SLACK: usize = 64;

/// What one lock of the ledger guards: the spans of the traces that hash to it, and
/// their start order.
#[derive(Debug)]
struct Shard<S> {
    spans: Spans<S>,
    /// (span id, start) in start order, for eviction by age and capacity. Items of
    /// spans that ended are dropped at the back as they end, or later in bulk.
    order: VecDeque<(u64, u64)>,
}

/// A shard and the start of its oldest queue item, readable without its lock.
#[derive(Debug)]
struct Slot<S> {
    shard: Mutex<Shard<S>>,
    /// The start of the first item of the shard's queue (`u64::MAX`: none).
    front: AtomicU64,
}

/// The live spans, bounded by `capacity`, and the memory of recently ended ones.
///
/// Locks: a ledger call takes the lock of its trace's shard, once, and never two
/// shards' locks at a time. Eviction looks for the oldest queue item across shards
/// without their locks (each shard publishes the start of its first item), then takes
/// that shard's lock alone.
#[derive(Debug)]
pub(crate) struct Ledger<S> {
    shards: Box<[CachePadded<Slot<S>>]>,
    /// Written at every tracked start and end: on a cache line of its own, so that
    /// threads do not contend for the lines of what is only read.
    len: Arc<CachePadded<AtomicUsize>>,
    capacity: usize,
    /// The maximum age of an open span, in nanoseconds.
    max_age_nanos: u64,
    /// At most the start of the oldest queue item of any shard (`u64::MAX`: none): a
    /// start finds whether anything may be due by age from this alone. Read at every
    /// tracked start, written only when it moves back or eviction finds it stale. (A
    /// start older than every queued one, from a clock that went back, racing with
    /// eviction can leave it later than that start: its span is then evicted by the
    /// next eviction that finds it, not before.)
    oldest: CachePadded<AtomicU64>,
    /// Held by the thread that is evicting; the others do not wait for it.
    evicting: Mutex<()>,
    recent: BoundedMemory<Recent>,
    closed: ClosedIds,
    /// Evicted spans are exported closed (leak policy `close`).
    close_on_evict: bool,
    /// Set once a span has been closed or evicted by the audit.
    any_gone: std::sync::atomic::AtomicBool,
}

impl<S: StartCopy> Ledger<S> {
    pub(crate) fn new(capacity: usize, max_age: Duration, close_on_evict: bool) -> Self {
        let capacity = capacity.max(1);
        Ledger {
            shards: (0..SHARDS)
                .map(|_| {
                    CachePadded::new(Slot {
                        shard: Mutex::new(Shard {
                            spans: Spans::default(),
                            order: VecDeque::new(),
                        }),
                        front: AtomicU64::new(u64::MAX),
                    })
                })
                .collect(),
            len: Arc::new(CachePadded::new(AtomicUsize::new(0))),
            capacity,
            max_age_nanos: u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX),
            oldest: CachePadded::new(AtomicU64::new(u64::MAX)),
            evicting: Mutex::new(()),
            recent: BoundedMemory::new(capacity),
            closed: ClosedIds::new(closed_capacity(capacity)),
            close_on_evict,
            any_gone: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The shard of `trace`.
    fn slot(&self, trace: TraceKey) -> &Slot<S> {
        // `TraceKey::of` makes keys below `SHARDS`.
        &self.shards[trace.0 % SHARDS]
    }

    /// The spans of `trace`'s shard, locked.
    fn spans(&self, trace: TraceKey) -> MappedMutexGuard<'_, Spans<S>> {
        MutexGuard::map(self.slot(trace).shard.lock(), |shard| &mut shard.spans)
    }

    /// Queues a span that is now tracked, in its shard (locked). Items of spans that
    /// ended pile up behind a long-lived span: once the queue holds more than twice the
    /// shard's spans (and a slack), they are dropped (amortised O(1) per item).
    fn enqueue(&self, slot: &Slot<S>, shard: &mut Shard<S>, id: u64, start: u64) {
        shard.order.push_back((id, start));
        if shard.order.len() > 2 * shard.spans.len() + QUEUE_SLACK {
            let spans = &shard.spans;
            shard
                .order
                .retain(|&(id, start)| spans.get(&id).is_some_and(|e| e.evictable_from(start)));
        }
        Self::publish_front(slot, shard);
        if start < self.oldest.load(Ordering::Relaxed) {
            self.oldest.store(start, Ordering::Relaxed);
        }
    }

    /// Drops an ended span's item from the back of its shard's queue (locked), where it
    /// is when spans end in the reverse order of their starts (children before parents,
    /// on one thread); other items go when they reach the front, or in bulk.
    fn unqueue(slot: &Slot<S>, shard: &mut Shard<S>, id: u64, start: u64) {
        if shard.order.back() == Some(&(id, start)) {
            shard.order.pop_back();
            if shard.order.is_empty() {
                Self::publish_front(slot, shard);
            }
        }
    }

    /// Publishes the start of the shard's first queue item.
    fn publish_front(slot: &Slot<S>, shard: &Shard<S>) {
        let front = shard.order.front().map_or(u64::MAX, |&(_, start)| start);
        if slot.front.load(Ordering::Relaxed) != front {
            slot.front.store(front, Ordering::Relaxed);
        }
    }

    /// The shard whose first queue item is the oldest, and that item's start.
    fn oldest_front(&self) -> Option<(usize, u64)> {
        self.shards
            .iter()
            .enumerate()
            .map(|(index, slot)| (index, slot.front.load(Ordering::Relaxed)))
            .filter(|&(_, start)| start != u64::MAX)
            .min_by_key(|&(_, start)| start)
    }

    /// The number of tracked spans, shared with the metrics callback.
    pub(crate) fn len_handle(&self) -> Arc<CachePadded<AtomicUsize>> {
        self.len.clone()
    }

    /// The number of tracked spans.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// How many ended spans the memories can hold at the most (a walk up the ancestors
    /// may pass through each once).
    fn remembered(&self) -> usize {
        self.recent.slots().saturating_add(self.closed.capacity)
    }

    fn added(&self) {
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    fn removed(&self) {
        self.len.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether nothing is tracked and no span was ever closed or evicted by the audit:
    /// then the end of a span that is not recognised concerns nothing.
    pub(crate) fn is_quiet(&self) -> bool {
        self.len() == 0 && !self.any_gone.load(Ordering::Relaxed)
    }

    /// Whether `id` is tracked (open, or ended with open children).
    #[cfg(test)]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.shards
            .iter()
            .any(|s| s.shard.lock().spans.contains_key(&id))
    }

    /// The number of queue items, over all shards.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shards.iter().map(|s| s.shard.lock().order.len()).sum()
    }

    /// Evicts, oldest first, open spans older than the maximum age at `now_nanos` and,
    /// when `make_room` (the ledger must take one more) or the ledger holds more than
    /// its capacity, the oldest open spans; at most a fixed number per call. Each
    /// evicted span is handed to `on_evict` before the next is evicted (and with no
    /// lock held), so that a parent's report still finds its open children. Never
    /// waits: when another thread is evicting, it does nothing. `now_nanos` is called
    /// at most once, and only when a span's age matters.
    pub(crate) fn evict_due(
        &self,
        now_nanos: impl FnOnce() -> u64,
        make_room: bool,
        mut on_evict: impl FnMut(Ended<S>),
    ) {
        let Some(_evicting) = self.evicting.try_lock() else {
            return;
        };
        let mut limit = None;
        let mut now_nanos = Some(now_nanos);
        let (mut evictions, mut discards) = (0, 0);
        while evictions < EVICTIONS_PER_CALL && discards < DISCARDS_PER_CALL {
            let Some((index, start)) = self.oldest_front() else {
                self.oldest.store(u64::MAX, Ordering::Relaxed);
                break;
            };
            let full = self.len() > self.capacity || (make_room && self.len() >= self.capacity);
            if !full {
                let limit = *limit.get_or_insert_with(|| {
                    now_nanos
                        .take()
                        .map_or(0, |f| f().saturating_sub(self.max_age_nanos))
                });
                if start >= limit {
                    // Nothing is due by age: the oldest start, for the next starts.
                    self.oldest.store(start, Ordering::Relaxed);
                    break;
                }
            }
            let trace = TraceKey(index);
            let slot = self.slot(trace);
            let mut guard = slot.shard.lock();
            let shard = &mut *guard;
            // Taken only if it is still the item that was found first.
            let Some(&(id, first)) = shard.order.front().filter(|&&(_, s)| s == start) else {
                discards += 1;
                continue;
            };
            shard.order.pop_front();
            Self::publish_front(slot, shard);
            match self.evict(trace, &mut shard.spans, id, first, full) {
                Some(ended) => {
                    drop(guard);
                    evictions += 1;
                    on_evict(ended);
                }
                None => discards += 1,
            }
        }
    }

    /// Evicts every open span (at shutdown), oldest first, each handed to `on_evict`
    /// before the next is evicted.
    pub(crate) fn evict_all(&self, mut on_evict: impl FnMut(Ended<S>)) {
        let mut queued = Vec::new();
        for (index, slot) in self.shards.iter().enumerate() {
            let mut shard = slot.shard.lock();
            let order = std::mem::take(&mut shard.order);
            Self::publish_front(slot, &shard);
            queued.extend(order.into_iter().map(|(id, start)| (start, index, id)));
        }
        // Stable: items of one start keep their order.
        queued.sort_by_key(|&(start, _, _)| start);
        for (start, index, id) in queued {
            let trace = TraceKey(index);
            let ended = self.evict(trace, &mut self.spans(trace), id, start, false);
            if let Some(ended) = ended {
                on_evict(ended);
            }
        }
    }

    /// Evicts `id` if it is open and still the span that started at `start`. An entry
    /// the audit closed, whose real end never came, goes without a finding; so does a
    /// tombstone at the front of a full ledger (it has ended; its open children are the
    /// ones that will be reported).
    fn evict(
        &self,
        trace: TraceKey,
        spans: &mut Spans<S>,
        id: u64,
        start: u64,
        full: bool,
    ) -> Option<Ended<S>> {
        let evictable = spans
            .get(&id)
            .is_some_and(|e| e.evictable_from(start) || (full && e.start_nanos == start));
        if !evictable {
            return None;
        }
        let mut entry = spans.remove(&id)?;
        self.removed();
        if entry.fate != Fate::Open {
            return None;
        }
        let ended = take_ended(&mut entry, trace, false);
        self.detach(spans, id, ended.parent);
        // Under `close` the audit exports a recognised span closed: its real end must not
        // be exported. A span that is not gen-ai is never closed: its real end, if it
        // comes, passes through untouched.
        let fate = if self.close_on_evict && ended.role.is_recognised() {
            Fate::Closed
        } else {
            Fate::Evicted
        };
        self.leave(spans, id, &ended, fate);
        Some(ended)
    }

    /// Starts tracking a span if it was `recognised` at start or its parent is tracked.
    /// Returns whether it is tracked, or, when the ledger is full, the span back (to
    /// evict and try again). Findings made at start (`late_start`, `overlapping_step`)
    /// are kept in the entry until its end.
    ///
    /// `now` (nanoseconds since the Unix epoch, by the processor's clock) is called
    /// when the span may be tracked (it is recognised, or some span is tracked), and
    /// before its trace's lock is taken, so that a clock from the builder never runs
    /// under it: a span's age is how long the processor has been tracking it, not what
    /// its own start timestamp says (recorded traces replayed later, or skewed clocks,
    /// must not look old).
    pub(crate) fn start(
        &self,
        trace: TraceKey,
        span: NewSpan,
        recognised: bool,
        now: impl FnOnce() -> u64,
        kept: &mut Option<impl FnOnce() -> Kept<S>>,
    ) -> Start {
        if !recognised && self.len() == 0 {
            // Nothing is tracked, so no parent is: the fast path without a lookup.
            return Start::Untracked;
        }
        let start_nanos = now();
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let spans = &mut shard.spans;
        if self.len() >= self.capacity {
            let trackable = recognised || span.parent.is_some_and(|p| spans.contains_key(&p));
            return if trackable {
                Start::Full(span)
            } else {
                Start::Untracked
            };
        }
        let mut pending = FindingSet::default();
        let mut step = None;
        let (parent, invocation) = match span.parent {
            Some(parent_id) => self.attach(spans, parent_id, &span, &mut pending, &mut step),
            None => (None, None),
        };
        if parent.is_none() && !recognised {
            return Start::Untracked;
        }
        let step_index = if span.role == Role::Step {
            // Counted by `attach` when the invocation is the parent.
            let counted = step.or_else(|| {
                invocation.map(|inv| match spans.get_mut(&inv) {
                    Some(inv) => count_step(inv.below()),
                    None => (0, false),
                })
            });
            counted.map_or(0, |(index, overlapping)| {
                if overlapping {
                    pending.insert(FindingCode::OverlappingStep);
                }
                index
            })
        } else {
            0
        };
        let below =
            (span.identity != Identity::default() || span.agent_name.is_some()).then(|| {
                Box::new(Below {
                    identity: span.identity,
                    agent_name: span.agent_name,
                    ..Below::default()
                })
            });
        let entry = Entry {
            parent: pack(parent),
            invocation: pack(invocation),
            start_nanos,
            kept: kept.take().map_or(Kept::Nothing, |keep| keep()),
            below,
            step_index,
            pending,
            role: span.role,
            fate: Fate::Open,
            parent_ended: false,
        };
        if spans.insert(span.id, entry).is_none() {
            self.added();
        }
        self.enqueue(slot, shard, span.id, start_nanos);
        drop(guard);
        let due = self.len() > self.capacity
            || self.oldest.load(Ordering::Relaxed) < start_nanos.saturating_sub(self.max_age_nanos);
        Start::Tracked { due }
    }

    /// Registers a new span with its parent (or, when the parent has ended, with the
    /// nearest ancestor still tracked). Returns its tracked parent and invocation. A
    /// step whose parent is its invocation is counted there too (`step`: its index, and
    /// whether another step was open).
    fn attach(
        &self,
        spans: &mut Spans<S>,
        parent_id: u64,
        span: &NewSpan,
        pending: &mut FindingSet,
        step: &mut Option<(u32, bool)>,
    ) -> (Option<u64>, Option<u64>) {
        let (child, role) = (span.id, span.role);
        if let Some(p) = spans.get_mut(&parent_id) {
            if p.fate == Fate::Pending {
                // A parent never seen starting: its children hand their totals up as
                // they end, tracked or not.
                return (None, None);
            }
            if p.fate != Fate::Open && p.role.is_recognised() && role.is_recognised() {
                pending.insert(FindingCode::LateStart);
            }
            p.below().open_children.push(child);
            let invocation = if p.role == Role::Invocation {
                if role == Role::Step {
                    *step = Some(count_step(p.below()));
                }
                Some(parent_id)
            } else {
                p.invocation()
            };
            return (Some(parent_id), invocation);
        }
        // The parent is gone: if it ended recently, this is a late start, and the span
        // joins the nearest ancestor still tracked. Only a recognised span can start
        // late; the others (an HTTP span under an HTTP span) skip the lookup.
        if !role.is_recognised() {
            return (None, None);
        }
        let Some(recent) = self.recent.get(parent_id) else {
            return (None, None);
        };
        if recent.fate != Fate::Evicted && recent.role.is_recognised() && role.is_recognised() {
            pending.insert(FindingCode::LateStart);
        }
        let invocation = if recent.role == Role::Invocation {
            None
        } else {
            recent.invocation
        };
        let mut next = recent.parent;
        for _ in 0..walk_bound(spans.len(), self.remembered()) {
            let Some(id) = next else { break };
            if let Some(ancestor) = spans.get_mut(&id) {
                ancestor.below().open_children.push(child);
                return (Some(id), invocation);
            }
            next = self.recent.get(id).and_then(|r| r.parent);
        }
        (None, None)
    }

    /// Gives a step recognised only at its end its position (0 when the invocation is no
    /// longer tracked).
    pub(crate) fn next_step(&self, trace: TraceKey, invocation: u64) -> u32 {
        match self.spans(trace).get_mut(&invocation) {
            Some(inv) => {
                let inv = inv.below();
                inv.steps = inv.steps.saturating_add(1);
                inv.steps
            }
            None => 0,
        }
    }

    /// An invocation's agent name at its start, when kept.
    pub(crate) fn agent_name(&self, trace: TraceKey, invocation: u64) -> Option<Arc<str>> {
        self.spans(trace)
            .get(&invocation)
            .and_then(|e| e.below.as_ref().and_then(|b| b.agent_name.clone()))
    }

    /// Marks an invocation as over its budget; true the first time.
    pub(crate) fn mark_budget_exceeded(&self, trace: TraceKey, invocation: u64) -> bool {
        match self.spans(trace).get_mut(&invocation) {
            Some(entry) => !std::mem::replace(&mut entry.below().budget_exceeded, true),
            None => false,
        }
    }

    /// The identity an invocation had at its start.
    pub(crate) fn identity(&self, trace: TraceKey, invocation: u64) -> Option<Identity> {
        self.spans(trace).get(&invocation).map(|e| {
            e.below
                .as_ref()
                .map_or_else(Identity::default, |b| b.identity)
        })
    }

    /// The role a tracked span had at its start.
    pub(crate) fn role_of(&self, trace: TraceKey, id: u64) -> Option<Role> {
        self.spans(trace)
            .get(&id)
            .filter(|e| e.fate != Fate::Pending)
            .map(|e| e.role)
    }

    /// Hands what a span not tracked from its start (or a tracked root) gathered to the
    /// parent its end names. A tracked parent takes it as a tracked child's
    /// contribution (on to every tracked ancestor); a pending parent keeps it; a parent
    /// that has ended passes it on to its own parent (a late child still counts above
    /// it); a parent never seen gets a pending entry, tracked from `now`, that holds it
    /// until the parent ends.
    pub(crate) fn forward(
        &self,
        trace: TraceKey,
        child: u64,
        parent: Option<u64>,
        mut contribution: Contribution,
        now: impl FnOnce() -> u64,
    ) -> Forward {
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let spans = &mut shard.spans;
        let mut next = parent;
        for _ in 0..walk_bound(spans.len(), self.remembered()) {
            let Some(id) = next else {
                return Forward::Done;
            };
            if let Some(entry) = spans.get_mut(&id) {
                if entry.fate == Fate::Pending {
                    entry.below().absorb(&mut contribution);
                    return Forward::Done;
                }
                let invocation = if entry.role == Role::Invocation {
                    Some(id)
                } else {
                    entry.invocation()
                };
                if contribution.steps > 0 {
                    if let Some(inv) = invocation.and_then(|inv| spans.get_mut(&inv)) {
                        let inv = inv.below();
                        inv.steps = inv.steps.saturating_add(contribution.steps);
                    }
                }
                self.contribute_in(spans, child, Some(id), invocation, contribution);
                return Forward::Done;
            }
            if let Some(parent) = self.closed.parent_of(id) {
                next = parent;
                continue;
            }
            match self.recent.get(id) {
                Some(r) if matches!(r.fate, Fate::Ended | Fate::Closed | Fate::Evicted) => {
                    next = r.parent;
                    continue;
                }
                _ => {}
            }
            if self.len() >= self.capacity {
                return Forward::Full(id, contribution);
            }
            drop(guard);
            self.pending(trace, id, contribution, now);
            return Forward::Done;
        }
        Forward::Done
    }

    /// A pending entry for `id`, holding `contribution` (added to the entry another
    /// thread may have made meanwhile: the caller found none, then let go of the lock so
    /// that the clock, which may be the builder's, is read outside it). Returns the
    /// entry's step count after.
    fn pending(
        &self,
        trace: TraceKey,
        id: u64,
        mut contribution: Contribution,
        now: impl FnOnce() -> u64,
    ) -> u32 {
        let start_nanos = now();
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let mut created = false;
        let below = shard
            .spans
            .entry(id)
            .or_insert_with(|| {
                created = true;
                Entry {
                    parent: 0,
                    invocation: 0,
                    start_nanos,
                    kept: Kept::Nothing,
                    below: None,
                    step_index: 0,
                    pending: FindingSet::default(),
                    role: Role::Other,
                    fate: Fate::Pending,
                    parent_ended: false,
                }
            })
            .below();
        below.absorb(&mut contribution);
        let steps = below.steps;
        if created {
            self.added();
            self.enqueue(slot, shard, id, start_nanos);
        }
        steps
    }

    /// Counts a step recognised only at its end, and not tracked, under its parent:
    /// returns its 1-based position among the steps counted there (0 when the parent
    /// has ended). The count travels up with the parent's contribution to the nearest
    /// invocation.
    pub(crate) fn count_step_under(
        &self,
        trace: TraceKey,
        parent: u64,
        now: impl FnOnce() -> u64,
    ) -> u32 {
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        if let Some(entry) = shard.spans.get_mut(&parent) {
            if !matches!(entry.fate, Fate::Open | Fate::Pending) {
                return 0;
            }
            let below = entry.below();
            below.steps = below.steps.saturating_add(1);
            return below.steps;
        }
        if self.recent.get(parent).is_some()
            || self.closed.parent_of(parent).is_some()
            || self.len() >= self.capacity
        {
            return 0;
        }
        drop(guard);
        let one = Contribution {
            steps: 1,
            ..Contribution::default()
        };
        self.pending(trace, parent, one, now)
    }

    /// Whether `id` is known to have ended (or to have been closed by the audit).
    pub(crate) fn has_ended(&self, trace: TraceKey, id: u64) -> bool {
        if self.closed.parent_of(id).is_some() {
            return true;
        }
        if let Some(entry) = self.spans(trace).get(&id) {
            return matches!(entry.fate, Fate::Ended | Fate::Closed);
        }
        self.recent
            .get(id)
            .is_some_and(|r| matches!(r.fate, Fate::Ended | Fate::Closed))
    }

    /// Remembers the end of a recognised span that was not tracked, so that a child
    /// ending after it is known to end late, and hands what it gets on to `parent`.
    pub(crate) fn remember_end(&self, id: u64, parent: Option<u64>, role: Role) {
        self.recent.insert(
            id,
            Recent {
                parent,
                invocation: None,
                role,
                fate: Fate::Ended,
            },
        );
    }

    /// Adds a contribution to every tracked ancestor, starting at `parent` (which also
    /// stops counting `child` as open); own usage stops at `invocation`. Returns the
    /// totals of `invocation` after the addition, if the walk reached it.
    pub(crate) fn contribute(
        &self,
        trace: TraceKey,
        child: u64,
        parent: Option<u64>,
        invocation: Option<u64>,
        contribution: Contribution,
    ) -> Option<Totals> {
        let mut spans = self.spans(trace);
        self.contribute_in(&mut spans, child, parent, invocation, contribution)
    }

    fn contribute_in(
        &self,
        spans: &mut Spans<S>,
        child: u64,
        parent: Option<u64>,
        invocation: Option<u64>,
        mut contribution: Contribution,
    ) -> Option<Totals> {
        let mut cumulative = None;
        let mut next = parent;
        let mut own = true;
        let mut tombstone = None;
        for depth in 0..walk_bound(spans.len(), 0) {
            let Some(id) = next else { break };
            let Some(entry) = spans.get_mut(&id) else {
                break;
            };
            next = entry.parent();
            if depth == 0 && remove_child(entry, child) {
                tombstone = Some(id);
            }
            let below = entry.below();
            below.totals.add(&contribution.totals);
            if own {
                below.own.add(&contribution.own);
            }
            if invocation == Some(id) {
                cumulative = Some(below.totals);
                own = false;
                if let Some(response) = contribution.response.take() {
                    below.last_response = Some(response);
                }
            }
        }
        if let Some(id) = tombstone {
            self.remove_tombstone(spans, id);
        }
        cumulative
    }

    /// Stops counting `child` as an open child of `parent`.
    fn detach(&self, spans: &mut Spans<S>, child: u64, parent: Option<u64>) {
        let Some(parent) = parent else { return };
        if spans
            .get_mut(&parent)
            .is_some_and(|entry| remove_child(entry, child))
        {
            self.remove_tombstone(spans, parent);
        }
    }

    /// Ends a span: what the ledger knows of it. A tracked entry is removed unless
    /// tracked children are still open (then it stays as a tombstone). `parent` is the
    /// parent the span names (for an entry that was not tracked at its start, whose
    /// parent the ledger did not know).
    ///
    /// A span tracked since its start stops being an open child of its tracked parent,
    /// and takes a pending `call` (what a generation or tool call contributes) to every
    /// tracked ancestor, in the same step (the call is then [`Call::Taken`]); the call
    /// is left to the caller otherwise (to hand up).
    pub(crate) fn end(
        &self,
        trace: TraceKey,
        id: u64,
        parent: Option<u64>,
        call: &mut Call,
    ) -> Ending<S> {
        if self.is_quiet() {
            return Ending::Untracked;
        }
        if self.any_gone.load(Ordering::Relaxed) {
            // The real end of a span the audit exported closed: whatever entry it still
            // has (closed, or pending because a late child handed something up) goes.
            if let Some(role) = self.closed.take(id) {
                self.settle_closed(trace, id);
                return Ending::Closed(role);
            }
        }
        let slot = self.slot(trace);
        let mut guard = slot.shard.lock();
        let shard = &mut *guard;
        let spans = &mut shard.spans;
        // One lookup: the entry is removed through it, unless it stays.
        let mut occupied = match spans.entry(id) {
            hash_map::Entry::Occupied(occupied) => occupied,
            hash_map::Entry::Vacant(_) => {
                drop(guard);
                return self.end_untracked(id);
            }
        };
        let entry = occupied.get_mut();
        match entry.fate {
            Fate::Open => {}
            Fate::Closed => {
                // The real end of a span the audit closed: from now on the entry is an
                // ordinary tombstone, gone with its last open child.
                let role = entry.role;
                if entry.has_open_children() {
                    entry.fate = Fate::Ended;
                } else {
                    occupied.remove();
                    self.removed();
                }
                drop(guard);
                self.closed.take(id);
                return Ending::Closed(role);
            }
            Fate::Ended | Fate::Evicted => return Ending::Untracked,
            Fate::Pending => entry.parent = pack(parent),
        }
        let start_nanos = entry.start_nanos;
        let stays = entry.has_open_children();
        let ended = take_ended(entry, trace, stays);
        self.remember(id, &ended, Fate::Ended);
        if stays {
            entry.fate = Fate::Ended;
        } else {
            occupied.remove();
            self.removed();
        }
        Self::close_step(spans, &ended);
        if ended.tracked_at_start && ended.parent.is_some() {
            match std::mem::take(call) {
                Call::Pending(c) => {
                    let cumulative =
                        self.contribute_in(spans, id, ended.parent, ended.invocation, c);
                    *call = Call::Taken(cumulative);
                }
                other => {
                    *call = other;
                    self.detach(spans, id, ended.parent);
                }
            }
        }
        Self::unqueue(slot, shard, id, start_nanos);
        Ending::Tracked(ended)
    }

    /// The end of a span without an entry: only a span closed or evicted by the audit
    /// matters.
    fn end_untracked(&self, id: u64) -> Ending<S> {
        // Until the first such span, untracked ends skip the lookups.
        if !self.any_gone.load(Ordering::Relaxed) {
            return Ending::Untracked;
        }
        if let Some(role) = self.closed.take(id) {
            return Ending::Closed(role);
        }
        match self.recent.get(id) {
            Some(r) if r.fate == Fate::Closed => Ending::Closed(r.role),
            Some(r) if r.fate == Fate::Evicted => Ending::Evicted(r.role),
            _ => Ending::Untracked,
        }
    }

    /// The entry of a span the audit closed, at its real end: a closed entry becomes an
    /// ordinary tombstone (gone with its last open child), a pending one is dropped.
    fn settle_closed(&self, trace: TraceKey, id: u64) {
        let mut spans = self.spans(trace);
        let Some(entry) = spans.get_mut(&id) else {
            return;
        };
        match entry.fate {
            Fate::Closed => {
                entry.fate = Fate::Ended;
                if !entry.has_open_children() {
                    self.remove_tombstone(&mut spans, id);
                }
            }
            Fate::Pending => {
                spans.remove(&id);
                self.removed();
            }
            _ => {}
        }
    }

    /// Tells an open child that its parent has ended; returns its role and name.
    pub(crate) fn orphan(&self, trace: TraceKey, child: u64) -> Option<OpenChild> {
        let mut spans = self.spans(trace);
        let entry = spans.get_mut(&child)?;
        if entry.fate != Fate::Open {
            return None;
        }
        entry.parent_ended = true;
        Some(OpenChild {
            id: child,
            role: entry.role,
            name: entry.kept.name().map(str::to_owned),
        })
    }

    /// Closes an open span for the audit (leak policy `close`): it counts as ended, its
    /// real end will not be exported. Returns what its entry held. The entry stays until
    /// the real end comes (or it is evicted by age or capacity), so that the real end is
    /// recognised whatever the bounded memory of ended spans has forgotten.
    pub(crate) fn close(&self, trace: TraceKey, id: u64) -> Option<Ended<S>> {
        let mut spans = self.spans(trace);
        let entry = spans.get_mut(&id)?;
        if entry.fate != Fate::Open {
            return None;
        }
        entry.fate = Fate::Closed;
        let ended = take_ended(entry, trace, true);
        self.leave(&mut spans, id, &ended, Fate::Closed);
        self.detach(&mut spans, id, ended.parent);
        Some(ended)
    }

    /// A span is no longer open: remember its fate, and stop counting it as an open
    /// step of its invocation.
    fn leave(&self, spans: &mut Spans<S>, id: u64, ended: &Ended<S>, fate: Fate) {
        self.remember(id, ended, fate);
        Self::close_step(spans, ended);
    }

    /// Remembers what became of a span that is no longer open.
    fn remember(&self, id: u64, ended: &Ended<S>, fate: Fate) {
        if matches!(fate, Fate::Closed | Fate::Evicted) {
            self.any_gone.store(true, Ordering::Relaxed);
        }
        if fate == Fate::Closed {
            self.closed.insert(id, ended.role, ended.parent);
        }
        self.recent.insert(
            id,
            Recent {
                parent: ended.parent,
                invocation: ended.invocation,
                role: ended.role,
                fate,
            },
        );
    }

    /// A step is no longer open: its invocation stops counting it.
    fn close_step(spans: &mut Spans<S>, ended: &Ended<S>) {
        if ended.role != Role::Step || ended.step_index == 0 {
            return;
        }
        let Some(inv) = ended.invocation.and_then(|inv| spans.get_mut(&inv)) else {
            return;
        };
        let below = inv.below();
        below.open_steps = below.open_steps.saturating_sub(1);
    }

    /// Removes an ended span's entry once no tracked child is open (a span the audit
    /// closed stays until its real end, see [`Ledger::close`]).
    fn remove_tombstone(&self, spans: &mut Spans<S>, id: u64) {
        let gone = spans
            .get(&id)
            .is_some_and(|e| e.fate == Fate::Ended && !e.has_open_children());
        if gone {
            spans.remove(&id);
            self.removed();
        }
    }
}

/// Counts one more open step of an invocation: its 1-based index, and whether another
/// step was open.
fn count_step(inv: &mut Below) -> (u32, bool) {
    inv.steps = inv.steps.saturating_add(1);
    let overlapping = inv.open_steps > 0;
    inv.open_steps = inv.open_steps.saturating_add(1);
    (inv.steps, overlapping)
}

/// What an entry held, for a span that is no longer open. When the entry `stays` (a
/// tombstone with open children, or a span the audit closed), it keeps what is below
/// it, and the record gets a copy; otherwise that part moves into the record whole.
fn take_ended<S>(entry: &mut Entry<S>, trace: TraceKey, stays: bool) -> Ended<S> {
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
fn remove_child<S>(entry: &mut Entry<S>, child: u64) -> bool {
    if let Some(below) = entry.below.as_mut() {
        below.open_children.remove(child);
    }
    entry.fate == Fate::Ended && !entry.has_open_children()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(id: u64, parent: Option<u64>, role: Role) -> NewSpan {
        NewSpan {
            id,
            parent,
            role,
            identity: Identity::default(),
            agent_name: None,
        }
    }

    /// Starts a recognised span, tracked from "time" `id`.
    impl StartCopy for String {
        fn name(&self) -> &str {
            self
        }
    }

    type Ledger = super::Ledger<String>;

    /// The trace of the spans these tests start.
    const T: TraceKey = TraceKey(1);

    fn start(l: &Ledger, id: u64, parent: Option<u64>, role: Role) -> bool {
        let mut kept = Some(|| Kept::Nothing);
        matches!(
            l.start(T, new(id, parent, role), true, || id, &mut kept),
            Start::Tracked { .. }
        )
    }

    /// What the memory of ended spans keeps survives the way through its words.
    #[test]
    fn a_remembered_span_reads_back_whole() {
        for (place, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(role as usize, place, "{role:?}");
        }
        for (place, fate) in FATES.into_iter().enumerate() {
            assert_eq!(fate as usize, place, "{fate:?}");
        }
        for role in Role::ALL {
            for fate in FATES {
                for (parent, invocation) in [(None, None), (Some(7), Some(u64::MAX))] {
                    let recent = Recent {
                        parent,
                        invocation,
                        role,
                        fate,
                    };
                    let back = Recent::from_words(recent.to_words());
                    assert_eq!(
                        (back.parent, back.invocation, back.role, back.fate),
                        (parent, invocation, role, fate)
                    );
                }
            }
        }
    }

    #[test]
    fn open_children_in_place_then_in_a_list() {
        let sorted = |c: &OpenChildren| {
            let mut v = c.as_slice().to_vec();
            v.sort_unstable();
            v
        };
        let mut c = OpenChildren::default();
        assert!(c.is_empty());
        c.remove(7); // absent: nothing happens
        for id in 1..=3 {
            c.push(id);
        }
        assert!(matches!(c, OpenChildren::Few { len: 3, .. }));
        c.remove(1);
        assert_eq!(sorted(&c), [2, 3]);
        for id in 4..=6 {
            c.push(id);
        }
        assert!(matches!(c, OpenChildren::Many(_)));
        assert_eq!(sorted(&c), [2, 3, 4, 5, 6]);
        for id in [2, 5, 3, 6, 4] {
            c.remove(id);
        }
        assert!(c.is_empty());
    }

    /// Spans of two traces ending out of start order leave items behind in the
    /// start-order queue (an end drops its item only when it is at the back): the
    /// queue must still stay within twice the spans tracked (and a slack), with nothing
    /// due by age.
    #[test]
    fn start_order_queue_stays_bounded_when_spans_end_out_of_order() {
        let capacity = 10;
        let l = Ledger::new(capacity, std::time::Duration::from_secs(3600), false);
        let mut kept = Some(|| Kept::Nothing);
        let mut begin = |id: u64, parent: Option<u64>| {
            let role = if parent.is_some() {
                Role::Generation
            } else {
                Role::Invocation
            };
            if let Start::Tracked { due: true } =
                l.start(T, new(id, parent, role), true, || id, &mut kept)
            {
                l.evict_due(|| 0, false, |_| {});
            }
        };
        begin(1, None);
        begin(2, None);
        for round in 0..1_000u64 {
            let (a, b) = (10 + 2 * round, 11 + 2 * round);
            begin(a, Some(1));
            begin(b, Some(2));
            // `a` ends first, while `b` is at the back of the queue.
            assert!(matches!(
                l.end(T, a, Some(1), &mut Call::None),
                Ending::Tracked(_)
            ));
            assert!(matches!(
                l.end(T, b, Some(2), &mut Call::None),
                Ending::Tracked(_)
            ));
            // At most four spans are tracked at once (two roots, `a` and `b`).
            let queued = l.queued();
            assert!(
                queued <= 2 * 4 + QUEUE_SLACK,
                "round {round}: {queued} queued"
            );
        }
        assert_eq!(l.len(), 2, "the two roots are still open");
    }

    fn tracked(ending: Ending<String>) -> Ended<String> {
        match ending {
            Ending::Tracked(e) => e,
            other => panic!("not tracked: {other:?}"),
        }
    }

    #[test]
    fn contributions_reach_every_ancestor_and_tombstones_go() {
        let l = Ledger::new(100, std::time::Duration::from_secs(3600), false);
        assert!(start(&l, 1, None, Role::Invocation));
        assert!(start(&l, 2, Some(1), Role::Step));
        assert!(start(&l, 3, Some(2), Role::Other));
        assert!(start(&l, 4, Some(3), Role::Generation));
        let mut call = Call::Pending(Contribution {
            totals: Totals {
                input: 5,
                generations: 1,
                ..Totals::default()
            },
            own: OwnUsage {
                input: 5,
                output: 0,
                reporting: 1,
            },
            ..Contribution::default()
        });
        // The generation's call reaches every ancestor as it ends.
        let g = tracked(l.end(T, 4, None, &mut call));
        assert_eq!(g.invocation, Some(1));
        let Call::Taken(Some(cumulative)) = call else {
            panic!("the ledger took the call to the invocation: {call:?}");
        };
        assert_eq!(cumulative.input, 5);
        // The intermediate ends before the step: no open children left.
        let mid = tracked(l.end(T, 3, None, &mut Call::None));
        assert_eq!(mid.totals().input, 5);
        assert_eq!(mid.own().input, 5);
        assert!(mid.open_children.is_empty());
        // The step ends after its invocation: the invocation is a tombstone meanwhile.
        let inv = tracked(l.end(T, 1, None, &mut Call::None));
        assert_eq!(inv.open_children.as_slice(), [2]);
        assert_eq!(inv.steps(), 1);
        assert_eq!(inv.own().reporting, 1);
        assert!(l.contains(1));
        let step = tracked(l.end(T, 2, None, &mut Call::None));
        assert_eq!(step.step_index, 1);
        assert!(
            !l.contains(1),
            "the tombstone goes with its last open child"
        );
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn own_usage_stops_at_the_invocation() {
        let l = Ledger::new(100, std::time::Duration::from_secs(3600), false);
        start(&l, 1, None, Role::Invocation);
        start(&l, 2, Some(1), Role::Tool);
        start(&l, 3, Some(2), Role::Invocation);
        start(&l, 4, Some(3), Role::Generation);
        let mut call = Call::Pending(Contribution {
            totals: Totals {
                input: 7,
                ..Totals::default()
            },
            own: OwnUsage {
                input: 7,
                output: 1,
                reporting: 1,
            },
            ..Contribution::default()
        });
        tracked(l.end(T, 4, None, &mut call));
        let child = tracked(l.end(T, 3, None, &mut Call::None));
        assert_eq!((child.totals().input, child.own().input), (7, 7));
        let tool = tracked(l.end(T, 2, None, &mut Call::None));
        assert_eq!((tool.totals().input, tool.own().input), (7, 0));
        let outer = tracked(l.end(T, 1, None, &mut Call::None));
        assert_eq!((outer.totals().input, outer.own().input), (7, 0));
    }

    #[test]
    fn capacity_evicts_the_oldest_open_span() {
        let l = Ledger::new(2, std::time::Duration::from_secs(3600), false);
        assert!(start(&l, 1, None, Role::Invocation));
        assert!(start(&l, 2, Some(1), Role::Step));
        // Full: the new span is refused until room is made.
        assert!(!start(&l, 3, Some(2), Role::Generation));
        let mut evicted = Vec::new();
        l.evict_due(|| 0, true, |e| evicted.push(e));
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].role, Role::Invocation);
        assert!(start(&l, 3, Some(2), Role::Generation));
        assert_eq!(l.len(), 2);
        // The evicted span's real end is known as such.
        assert!(matches!(
            l.end(T, 1, None, &mut Call::None),
            Ending::Evicted(Role::Invocation)
        ));
    }

    /// Starts root `id` of trace `trace` at "time" `at`; whether it is tracked.
    fn start_in(l: &Ledger, trace: usize, id: u64, at: u64) -> Start {
        let mut kept = Some(|| Kept::Nothing);
        l.start(
            TraceKey(trace),
            new(id, None, Role::Invocation),
            true,
            || at,
            &mut kept,
        )
    }

    /// Spans of different traces are kept under different locks; eviction still takes
    /// the oldest first across all of them, by capacity and by age.
    #[test]
    fn eviction_takes_the_oldest_across_traces() {
        let hour = 3_600_000_000_000;
        let l = Ledger::new(3, std::time::Duration::from_nanos(hour), false);
        // Started out of trace order: trace 9 first, then 2, then 5.
        for (trace, id, at) in [(9, 1, 10), (2, 2, 20), (5, 3, 30)] {
            assert!(matches!(start_in(&l, trace, id, at), Start::Tracked { .. }));
        }
        // Full: a fourth span makes room by evicting the oldest, in trace 9.
        assert!(matches!(start_in(&l, 7, 4, 40), Start::Full(_)));
        let mut evicted = Vec::new();
        l.evict_due(|| 40, true, |e| evicted.push(e.trace));
        assert_eq!(evicted, [TraceKey(9)]);
        assert!(matches!(start_in(&l, 7, 4, 40), Start::Tracked { .. }));
        // By age: at 25 past the hour, only the span started at 20 is too old.
        l.evict_due(|| hour + 25, false, |e| evicted.push(e.trace));
        assert_eq!(evicted, [TraceKey(9), TraceKey(2)]);
        assert!(!l.contains(2) && l.contains(3) && l.contains(4));
    }

    /// A span that starts earlier than every queued one (a clock that went back) is
    /// still found due by age.
    #[test]
    fn a_start_older_than_the_queue_is_found_due() {
        let hour = 3_600_000_000_000;
        let l = Ledger::new(100, std::time::Duration::from_nanos(hour), false);
        assert!(matches!(
            start_in(&l, 1, 1, 5 * hour),
            Start::Tracked { due: false }
        ));
        // Nothing is due: eviction notes the oldest start.
        l.evict_due(|| 5 * hour, false, |_| panic!("nothing is due"));
        assert!(matches!(
            start_in(&l, 2, 2, 2 * hour),
            Start::Tracked { due: false }
        ));
        // An hour and a bit after it, the back-dated span is due, not the other.
        let Start::Tracked { due: true } = start_in(&l, 3, 3, 3 * hour + 1) else {
            panic!("the back-dated span is due");
        };
        let mut evicted = Vec::new();
        l.evict_due(|| 3 * hour + 1, false, |e| evicted.push(e.trace));
        assert_eq!(evicted, [TraceKey(2)]);
        assert!(l.contains(1) && l.contains(3));
    }

    #[test]
    fn age_evicts_spans_started_before_the_limit() {
        let l = Ledger::new(100, std::time::Duration::from_secs(3600), false);
        for id in 1..=20 {
            start(&l, id, None, Role::Invocation);
        }
        // Spans 1..=10 are too old; at most EVICTIONS_PER_CALL go per call.
        let evict = || {
            let mut n = 0;
            l.evict_due(|| 11 + 3_600_000_000_000, false, |_| n += 1);
            n
        };
        assert_eq!(evict(), EVICTIONS_PER_CALL);
        assert_eq!(evict(), 10 - EVICTIONS_PER_CALL);
        assert_eq!(evict(), 0);
        assert_eq!(l.len(), 10);
        let mut n = 0;
        l.evict_all(|_| n += 1);
        assert_eq!(n, 10);
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn late_starts_and_overlapping_steps_are_noted() {
        let l = Ledger::new(100, std::time::Duration::from_secs(3600), false);
        start(&l, 1, None, Role::Invocation);
        start(&l, 2, Some(1), Role::Step);
        start(&l, 3, Some(1), Role::Step); // overlaps step 2
        let s2 = tracked(l.end(T, 2, None, &mut Call::None));
        assert!(s2.pending.is_empty());
        // A generation starting under the ended step joins the invocation, late.
        start(&l, 4, Some(2), Role::Generation);
        let g = tracked(l.end(T, 4, None, &mut Call::None));
        assert!(g.pending.contains(FindingCode::LateStart));
        assert_eq!((g.parent, g.invocation), (Some(1), Some(1)));
        let s3 = tracked(l.end(T, 3, None, &mut Call::None));
        assert!(s3.pending.contains(FindingCode::OverlappingStep));
        assert_eq!(s3.step_index, 2);
    }

    #[test]
    fn closing_marks_the_real_end() {
        let l = Ledger::new(10, std::time::Duration::from_secs(3600), false);
        start(&l, 1, None, Role::Invocation);
        start(&l, 2, Some(1), Role::Step);
        let inv = tracked(l.end(T, 1, None, &mut Call::None));
        assert_eq!(inv.open_children.as_slice(), [2]);
        assert!(l.orphan(T, 2).is_some());
        let step = l.close(T, 2).unwrap();
        assert!(step.parent_ended);
        assert!(
            !l.contains(1),
            "the tombstone goes with its last open child"
        );
        assert!(matches!(
            l.end(T, 2, None, &mut Call::None),
            Ending::Closed(Role::Step)
        ));
    }

    #[test]
    fn ending_twice_is_untracked_the_second_time() {
        let l = Ledger::new(10, std::time::Duration::from_secs(3600), false);
        start(&l, 1, None, Role::Invocation);
        start(&l, 2, Some(1), Role::Step);
        assert!(matches!(
            l.end(T, 1, None, &mut Call::None),
            Ending::Tracked(_)
        ));
        assert!(matches!(
            l.end(T, 1, None, &mut Call::None),
            Ending::Untracked
        ));
    }
}
