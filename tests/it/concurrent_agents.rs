//! One agent shared by concurrent callers, on a real `SdkTracerProvider` with the audit
//! processor.
//!
//! The agent is written here: each invocation runs a few ReAct steps; each step makes an
//! LLM call and, for each tool call, runs the tool and calls the LLM again. A tiny
//! xorshift generator, seeded per invocation, decides the number of steps (1-3) and of
//! tool calls per step (0-2). Token counts identify the call: the g-th call of step s
//! of invocation k uses 1000*k + 10*s + g input and 10*s + g output tokens, and answers
//! with response id `resp-k-s-g`. N workers (N in 2, 4, 8) each run M = 3 invocations,
//! as N OS threads sharing `&agent` (`std::thread::scope`) and, separately, as N tokio
//! tasks sharing an `Arc` of the agent on a multi-thread runtime with 2 workers.
//!
//! Two instrumentations of the agent:
//!
//! * correct: all state is per call; the invocation's and the step's contexts are
//!   passed explicitly as parent contexts. The workers run freely (real concurrency).
//!   Expected: no finding under either policy, and on each invocation the totals the
//!   test computed (`genai_audit.total.*`), which equal the usage it reports.
//! * buggy, as the broken instrumentations do it: the current step span, the usage
//!   counters, the round counter, the last response and the current conversation id
//!   live on the shared instance, behind a `Mutex`. An invocation's start clears the
//!   counters and sets the conversation; a step's start ends the shared current step
//!   (possibly another invocation's) and takes the next round from the shared counter;
//!   LLM and tool spans are parented to the invocation's own step (whose context the
//!   caller holds), even when a sibling has ended it, and LLM spans carry the shared
//!   conversation id; an invocation's end ends the shared current step and reports the
//!   shared counters and the shared last response.
//!
//!   Every operation of the buggy agent, span starts and ends included, happens under
//!   its lock, so the order the processor sees is the order of the agent's own record.
//!   While it runs, the agent records what the processor must find: for each LLM or
//!   tool span whether its step had already ended (`late_start`) and whether the
//!   conversation id it carries is another invocation's (`identity_mismatch`); for each
//!   step whether its round differs from its position in its invocation
//!   (`round_mismatch`); for each invocation its own and inclusive sums (equal here:
//!   the agent does not nest) and whether the usage it reports differs from both
//!   (`usage_mismatch`), and whether the response id it reports is another
//!   invocation's call's (`foreign_response`). The test compares that record with the
//!   findings on every exported span, the repaired values and `genai_audit.reported.*`
//!   originals under `repair`, and the `genai_audit.findings` metric.
//!
//!   To make the buggy runs deterministic (so that each finding is known to occur, and
//!   a failure replays), the workers, still real threads or tokio tasks, take turns:
//!   after each operation the worker that acted draws, from a seeded xorshift, which
//!   still-active worker performs the next one. Threads wait for their turn on a
//!   `Condvar`; tasks poll for it with `yield_now`, so 8 tasks share 2 runtime workers.
//!   The interleaving is therefore a seeded schedule executed on real threads.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Barrier, Condvar, Mutex};

use common::{
    expect_counts, findings_of, i64_of, occurrences, reported_of, str_of, value, Harness,
};
use genai_audit::ContaminationPolicy;
use opentelemetry::trace::{Span, SpanId, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::trace::{SdkTracer, SpanData};

const AGENT: &str = "weather";
const INVOCATIONS_PER_WORKER: usize = 3;
const WORKER_COUNTS: [usize; 3] = [2, 4, 8];
const POLICIES: [ContaminationPolicy; 2] = [ContaminationPolicy::Flag, ContaminationPolicy::Repair];
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// Marsaglia's xorshift64.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Start invocation number `k`.
    Begin(u64),
    StepStart,
    Llm,
    Tool,
    StepEnd,
    End,
}

/// What worker `worker` does: its invocations, one after the other.
fn plan(worker: usize) -> Vec<Action> {
    let mut actions = Vec::new();
    for i in 0..INVOCATIONS_PER_WORKER {
        let k = (worker * INVOCATIONS_PER_WORKER + i + 1) as u64;
        let mut rng = XorShift::new(SEED ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        actions.push(Action::Begin(k));
        for _ in 0..1 + rng.below(3) {
            actions.push(Action::StepStart);
            actions.push(Action::Llm);
            for _ in 0..rng.below(3) {
                actions.push(Action::Tool);
                actions.push(Action::Llm);
            }
            actions.push(Action::StepEnd);
        }
        actions.push(Action::End);
    }
    actions
}

/// What one invocation really did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Own {
    input: i64,
    output: i64,
    generations: i64,
    tool_calls: i64,
    steps: i64,
    /// Its last call's response id and model.
    last: Option<(String, String)>,
}

/// A worker's invocation in progress.
struct Running {
    k: u64,
    cx: Context,
    step: Option<Context>,
    step_no: i64,
    call_no: i64,
    own: Own,
}

impl Running {
    fn new(k: u64, cx: Context) -> Self {
        Running {
            k,
            cx,
            step: None,
            step_no: 0,
            call_no: 0,
            own: Own::default(),
        }
    }

    /// Counts a new step; returns its position.
    fn next_step(&mut self) -> i64 {
        self.step_no += 1;
        self.call_no = 0;
        self.own.steps += 1;
        self.step_no
    }

    fn conversation(&self) -> String {
        conversation(self.k)
    }

    /// The next LLM call's usage, response id and model.
    fn next_call(&mut self) -> (i64, i64, String, String) {
        self.call_no += 1;
        let (s, g) = (self.step_no, self.call_no);
        let input = 1000 * self.k as i64 + 10 * s + g;
        let output = 10 * s + g;
        let id = format!("resp-{}-{s}-{g}", self.k);
        let model = format!("fake-model-v{}", self.k % 3);
        self.own.input += input;
        self.own.output += output;
        self.own.generations += 1;
        self.own.last = Some((id.clone(), model.clone()));
        (input, output, id, model)
    }
}

fn conversation(k: u64) -> String {
    format!("conv-{k}")
}

fn span_id(cx: &Context) -> SpanId {
    cx.span().span_context().span_id()
}

fn start_invocation(tracer: &SdkTracer, k: u64) -> Context {
    let builder = tracer
        .span_builder(format!("invoke_agent {AGENT}"))
        .with_kind(SpanKind::Internal)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", AGENT),
            KeyValue::new("gen_ai.conversation.id", conversation(k)),
            KeyValue::new("test.invocation", k as i64),
        ]);
    Context::new().with_span(tracer.build_with_context(builder, &Context::new()))
}

fn start_step(tracer: &SdkTracer, parent: &Context, round: i64) -> Context {
    let builder = tracer.span_builder("react step").with_attributes([
        KeyValue::new("gen_ai.operation.name", "react"),
        KeyValue::new("gen_ai.react.round", round),
    ]);
    Context::new().with_span(tracer.build_with_context(builder, parent))
}

/// One LLM call, started under `parent`; returns its span id.
fn llm_call(
    tracer: &SdkTracer,
    parent: &Context,
    conversation: String,
    (input, output, id, model): (i64, i64, String, String),
) -> SpanId {
    let builder = tracer
        .span_builder("chat fake-model")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.provider.name", "fake"),
            KeyValue::new("gen_ai.request.model", "fake-model"),
            KeyValue::new("gen_ai.agent.name", AGENT),
            KeyValue::new("gen_ai.conversation.id", conversation),
        ]);
    let mut span = tracer.build_with_context(builder, parent);
    span.set_attributes([
        KeyValue::new("gen_ai.usage.input_tokens", input),
        KeyValue::new("gen_ai.usage.output_tokens", output),
        KeyValue::new("gen_ai.response.id", id),
        KeyValue::new("gen_ai.response.model", model),
    ]);
    let id = span.span_context().span_id();
    span.end();
    id
}

fn tool_call(tracer: &SdkTracer, parent: &Context) -> SpanId {
    let builder = tracer.span_builder("execute_tool lookup").with_attributes([
        KeyValue::new("gen_ai.operation.name", "execute_tool"),
        KeyValue::new("gen_ai.tool.name", "lookup"),
    ]);
    let mut span = tracer.build_with_context(builder, parent);
    let id = span.span_context().span_id();
    span.end();
    id
}

fn end_invocation(cx: &Context, usage: (i64, i64), response: Option<(String, String)>) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", usage.0));
    span.set_attribute(KeyValue::new("gen_ai.usage.output_tokens", usage.1));
    if let Some((id, model)) = response {
        span.set_attribute(KeyValue::new("gen_ai.response.id", id));
        span.set_attribute(KeyValue::new("gen_ai.response.model", model));
    }
    span.end();
}

// ---------------------------------------------------------------------------------
// The correct agent: per-call state, contexts passed explicitly
// ---------------------------------------------------------------------------------

struct CorrectAgent {
    tracer: SdkTracer,
}

impl CorrectAgent {
    /// Performs one action of a worker; returns the invocation it finished, if any.
    fn act(&self, run: &mut Option<Running>, action: Action) -> Option<(u64, Own)> {
        let t = &self.tracer;
        match action {
            Action::Begin(k) => {
                *run = Some(Running::new(k, start_invocation(t, k)));
            }
            Action::StepStart => {
                let r = run.as_mut().expect("running");
                let position = r.next_step();
                r.step = Some(start_step(t, &r.cx, position));
            }
            Action::Llm => {
                let r = run.as_mut().expect("running");
                let call = r.next_call();
                let conversation = r.conversation();
                llm_call(t, r.step.as_ref().expect("step"), conversation, call);
            }
            Action::Tool => {
                let r = run.as_mut().expect("running");
                r.own.tool_calls += 1;
                tool_call(t, r.step.as_ref().expect("step"));
            }
            Action::StepEnd => {
                let r = run.as_mut().expect("running");
                r.step.take().expect("step").span().end();
            }
            Action::End => {
                let r = run.take().expect("running");
                end_invocation(&r.cx, (r.own.input, r.own.output), r.own.last.clone());
                return Some((r.k, r.own));
            }
        }
        None
    }
}

/// The invocations the plans describe, as the correct agent reports them.
fn correct_expectations(workers: usize) -> BTreeMap<u64, Own> {
    let agent = CorrectAgent {
        tracer: Harness::new().tracer(),
    };
    let mut out = BTreeMap::new();
    for w in 0..workers {
        let mut run = None;
        for action in plan(w) {
            if let Some((k, own)) = agent.act(&mut run, action) {
                out.insert(k, own);
            }
        }
    }
    out
}

fn check_correct(h: &Harness, workers: usize, done: BTreeMap<u64, Own>, what: &str) {
    assert_eq!(done, correct_expectations(workers), "{what}: the plans ran");
    let spans = h.exporter.get_finished_spans().expect("spans");
    let expected_spans: i64 = done
        .values()
        .map(|o| 1 + o.steps + o.generations + o.tool_calls)
        .sum();
    assert_eq!(spans.len() as i64, expected_spans, "{what}: spans exported");
    let mut seen = BTreeMap::new();
    for span in &spans {
        assert_eq!(
            findings_of(span),
            Vec::<String>::new(),
            "{what}: findings on {}",
            span.name
        );
        assert!(
            reported_of(span).is_empty(),
            "{what}: {} repaired",
            span.name
        );
        if let Some(Value::I64(k)) = value(span, "test.invocation") {
            let own = &done[&(k as u64)];
            let int = |key| i64_of(span, key);
            assert_eq!(
                (
                    int("genai_audit.total.input_tokens"),
                    int("genai_audit.total.output_tokens"),
                    int("genai_audit.total.generations"),
                    int("genai_audit.total.tool_calls"),
                    int("genai_audit.steps"),
                    int("gen_ai.usage.input_tokens"),
                    int("gen_ai.usage.output_tokens"),
                ),
                (
                    own.input,
                    own.output,
                    own.generations,
                    own.tool_calls,
                    own.steps,
                    own.input,
                    own.output
                ),
                "{what}: invocation {k}"
            );
            seen.insert(k as u64, ());
        }
    }
    assert_eq!(seen.len(), done.len(), "{what}: every invocation exported");
    assert!(
        h.metric("genai_audit.findings").is_empty(),
        "{what}: {:?}",
        h.metric("genai_audit.findings")
    );
}

#[test]
fn correct_agent_shared_by_threads_gives_no_findings_and_exact_totals() {
    for workers in WORKER_COUNTS {
        for policy in POLICIES {
            let h = Harness::with(|b| b.contamination_policy(policy));
            let agent = CorrectAgent { tracer: h.tracer() };
            let barrier = Barrier::new(workers);
            let done: BTreeMap<u64, Own> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..workers)
                    .map(|w| {
                        let (agent, barrier) = (&agent, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            let mut run = None;
                            let mut done = Vec::new();
                            for action in plan(w) {
                                done.extend(agent.act(&mut run, action));
                                std::thread::yield_now();
                            }
                            done
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("worker"))
                    .collect()
            });
            check_correct(&h, workers, done, &format!("{workers} threads, {policy:?}"));
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime")
}

#[test]
fn correct_agent_shared_by_tokio_tasks_gives_no_findings_and_exact_totals() {
    let rt = runtime();
    for workers in WORKER_COUNTS {
        for policy in POLICIES {
            let h = Harness::with(|b| b.contamination_policy(policy));
            let agent = Arc::new(CorrectAgent { tracer: h.tracer() });
            let done: BTreeMap<u64, Own> = rt.block_on(async {
                let tasks: Vec<_> = (0..workers)
                    .map(|w| {
                        let agent = agent.clone();
                        tokio::spawn(async move {
                            let mut run = None;
                            let mut done = Vec::new();
                            for action in plan(w) {
                                done.extend(agent.act(&mut run, action));
                                tokio::task::yield_now().await;
                            }
                            done
                        })
                    })
                    .collect();
                let mut all = BTreeMap::new();
                for task in tasks {
                    all.extend(task.await.expect("task"));
                }
                all
            });
            check_correct(&h, workers, done, &format!("{workers} tasks, {policy:?}"));
        }
    }
}

// ---------------------------------------------------------------------------------
// The buggy agent: per-instance state shared by concurrent invocations
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Response {
    id: String,
    model: String,
    /// The invocation whose call it was.
    owner: u64,
}

/// What the buggy agent's record says the processor must report.
#[derive(Debug, Default)]
struct Record {
    /// Every span started: its role and the findings it must carry.
    spans: HashMap<SpanId, (&'static str, Vec<&'static str>)>,
    invocations: Vec<InvocationRecord>,
    steps: Vec<StepRecord>,
}

#[derive(Debug)]
struct InvocationRecord {
    k: u64,
    span: SpanId,
    own: Own,
    /// Sum over all the generations below it (nothing nests here: equals `own`).
    inclusive: (i64, i64),
    reported: (i64, i64),
    response: Response,
}

#[derive(Debug)]
struct StepRecord {
    span: SpanId,
    index: i64,
    round: i64,
}

#[derive(Default)]
struct Shared {
    current_step: Option<Context>,
    usage: (i64, i64),
    round: i64,
    last_response: Option<Response>,
    conversation: String,
    ended_steps: HashSet<SpanId>,
    record: Record,
}

struct BuggyAgent {
    tracer: SdkTracer,
    shared: Mutex<Shared>,
}

impl Shared {
    fn end_current_step(&mut self) {
        if let Some(step) = self.current_step.take() {
            self.ended_steps.insert(span_id(&step));
            step.span().end();
        }
    }
}

impl BuggyAgent {
    fn act(&self, run: &mut Option<Running>, action: Action) {
        let t = &self.tracer;
        let mut shared = self.shared.lock().expect("agent lock");
        let sh = &mut *shared;
        match action {
            Action::Begin(k) => {
                let cx = start_invocation(t, k);
                sh.record
                    .spans
                    .insert(span_id(&cx), ("invocation", Vec::new()));
                sh.usage = (0, 0);
                sh.round = 0;
                sh.conversation = conversation(k);
                *run = Some(Running::new(k, cx));
            }
            Action::StepStart => {
                let r = run.as_mut().expect("running");
                sh.end_current_step();
                sh.round += 1;
                r.next_step();
                let step = start_step(t, &r.cx, sh.round);
                let id = span_id(&step);
                let findings = if sh.round != r.step_no {
                    vec!["round_mismatch"]
                } else {
                    Vec::new()
                };
                sh.record.spans.insert(id, ("step", findings));
                sh.record.steps.push(StepRecord {
                    span: id,
                    index: r.step_no,
                    round: sh.round,
                });
                sh.current_step = Some(step.clone());
                r.step = Some(step);
            }
            Action::Llm => {
                let r = run.as_mut().expect("running");
                let step = r.step.clone().expect("step");
                let mut findings = Vec::new();
                if sh.ended_steps.contains(&span_id(&step)) {
                    findings.push("late_start");
                }
                if sh.conversation != r.conversation() {
                    findings.push("identity_mismatch");
                }
                let call = r.next_call();
                sh.usage.0 += call.0;
                sh.usage.1 += call.1;
                sh.last_response = Some(Response {
                    id: call.2.clone(),
                    model: call.3.clone(),
                    owner: r.k,
                });
                let id = llm_call(t, &step, sh.conversation.clone(), call);
                sh.record.spans.insert(id, ("generation", findings));
            }
            Action::Tool => {
                let r = run.as_mut().expect("running");
                let step = r.step.as_ref().expect("step");
                let findings = if sh.ended_steps.contains(&span_id(step)) {
                    vec!["late_start"]
                } else {
                    Vec::new()
                };
                r.own.tool_calls += 1;
                let id = tool_call(t, step);
                sh.record.spans.insert(id, ("tool", findings));
            }
            // The buggy agent has no step-end hook: the next step's start, or an
            // invocation's end, ends the shared current step.
            Action::StepEnd => {}
            Action::End => {
                let r = run.take().expect("running");
                sh.end_current_step();
                let response = sh.last_response.clone().expect("a call was made");
                end_invocation(
                    &r.cx,
                    sh.usage,
                    Some((response.id.clone(), response.model.clone())),
                );
                let inclusive = (r.own.input, r.own.output);
                let mut findings = Vec::new();
                let differs =
                    |reported: i64, own: i64, all: i64| reported != own && reported != all;
                if differs(sh.usage.0, r.own.input, inclusive.0)
                    || differs(sh.usage.1, r.own.output, inclusive.1)
                {
                    findings.push("usage_mismatch");
                }
                if response.owner != r.k {
                    findings.push("foreign_response");
                }
                let span = span_id(&r.cx);
                sh.record.spans.insert(span, ("invocation", findings));
                sh.record.invocations.push(InvocationRecord {
                    k: r.k,
                    span,
                    own: r.own,
                    inclusive,
                    reported: sh.usage,
                    response,
                });
            }
        }
    }
}

/// Whose turn it is, drawn from a seeded generator after every action.
struct Turns {
    state: Mutex<(usize, Vec<bool>, XorShift)>,
    changed: Condvar,
}

const NOBODY: usize = usize::MAX;

impl Turns {
    fn new(workers: usize, seed: u64) -> Self {
        let mut state = (NOBODY, vec![true; workers], XorShift::new(seed));
        state.0 = Self::draw(&state.1, &mut state.2);
        Turns {
            state: Mutex::new(state),
            changed: Condvar::new(),
        }
    }

    fn draw(active: &[bool], rng: &mut XorShift) -> usize {
        let candidates: Vec<usize> = (0..active.len()).filter(|w| active[*w]).collect();
        if candidates.is_empty() {
            NOBODY
        } else {
            candidates[rng.below(candidates.len() as u64) as usize]
        }
    }

    fn is_mine(&self, me: usize) -> bool {
        self.state.lock().expect("turns").0 == me
    }

    fn wait(&self, me: usize) {
        let mut state = self.state.lock().expect("turns");
        while state.0 != me {
            state = self.changed.wait(state).expect("turns");
        }
    }

    /// `me` has acted; `finished` when it has nothing left to do.
    fn pass(&self, me: usize, finished: bool) {
        let mut guard = self.state.lock().expect("turns");
        let state = &mut *guard;
        assert_eq!(state.0, me);
        if finished {
            state.1[me] = false;
        }
        state.0 = Self::draw(&state.1, &mut state.2);
        self.changed.notify_all();
    }
}

/// What worker `w` of the buggy agent does: its plan, without step ends (the buggy
/// agent has no step-end hook).
fn buggy_plan(w: usize) -> Vec<Action> {
    plan(w)
        .into_iter()
        .filter(|a| *a != Action::StepEnd)
        .collect()
}

fn run_buggy_threads(agent: &BuggyAgent, workers: usize) {
    let turns = Turns::new(workers, SEED ^ workers as u64);
    std::thread::scope(|s| {
        for w in 0..workers {
            let (agent, turns) = (agent, &turns);
            s.spawn(move || {
                let actions = buggy_plan(w);
                let mut run = None;
                for (i, action) in actions.iter().enumerate() {
                    turns.wait(w);
                    agent.act(&mut run, *action);
                    turns.pass(w, i + 1 == actions.len());
                }
            });
        }
    });
}

fn run_buggy_tasks(rt: &tokio::runtime::Runtime, agent: Arc<BuggyAgent>, workers: usize) {
    let turns = Arc::new(Turns::new(workers, SEED ^ workers as u64));
    rt.block_on(async {
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let (agent, turns) = (agent.clone(), turns.clone());
                tokio::spawn(async move {
                    let actions = buggy_plan(w);
                    let mut run = None;
                    for (i, action) in actions.iter().enumerate() {
                        while !turns.is_mine(w) {
                            tokio::task::yield_now().await;
                        }
                        agent.act(&mut run, *action);
                        turns.pass(w, i + 1 == actions.len());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
}

/// Compares what the processor exported with the buggy agent's record; returns the
/// number of findings by code.
fn check_buggy(
    h: &Harness,
    record: &Record,
    policy: ContaminationPolicy,
    what: &str,
) -> BTreeMap<&'static str, u64> {
    let repair = policy == ContaminationPolicy::Repair;
    let spans: HashMap<SpanId, SpanData> = h
        .exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .map(|s| (s.span_context.span_id(), s))
        .collect();
    assert_eq!(spans.len(), record.spans.len(), "{what}: spans exported");

    // Findings on every span, and the metric.
    let mut metric: BTreeMap<(&str, &str, bool), u64> = BTreeMap::new();
    let mut by_code: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (id, (role, findings)) in &record.spans {
        let span = spans
            .get(id)
            .unwrap_or_else(|| panic!("{what}: a {role} span was not exported"));
        assert_eq!(
            findings_of(span),
            findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            "{what}: findings on {} {id}",
            span.name
        );
        assert_eq!(str_of(span, "genai_audit.role"), *role, "{what}");
        for code in findings {
            let repaired = repair
                && matches!(
                    *code,
                    "usage_mismatch" | "foreign_response" | "round_mismatch"
                );
            *metric.entry((code, role, repaired)).or_default() += 1;
            *by_code.entry(code).or_default() += 1;
        }
    }
    let metric: Vec<_> = metric
        .into_iter()
        .map(|((code, role, repaired), n)| (code, role, repaired, n))
        .collect();
    assert_eq!(
        h.metrics.all_finding_counts(),
        expect_counts(&metric),
        "{what}: genai_audit.findings metric"
    );

    // Reported originals: exactly those the record implies.
    let mut expected_reported: HashMap<(SpanId, String), Value> = HashMap::new();
    let mut reported_key = |span: SpanId, key: &str, v: Value| {
        expected_reported.insert((span, format!("genai_audit.reported.{key}")), v);
    };

    for inv in &record.invocations {
        let span = &spans[&inv.span];
        let what = format!("{what}: invocation {}", inv.k);
        assert_eq!(i64_of(span, "test.invocation"), inv.k as i64, "{what}");
        // Rolling up the tree gives the truth, whatever the agent reported.
        assert_eq!(
            (
                i64_of(span, "genai_audit.total.input_tokens"),
                i64_of(span, "genai_audit.total.output_tokens"),
                i64_of(span, "genai_audit.total.generations"),
                i64_of(span, "genai_audit.total.tool_calls"),
                i64_of(span, "genai_audit.steps"),
            ),
            (
                inv.own.input,
                inv.own.output,
                inv.own.generations,
                inv.own.tool_calls,
                inv.own.steps
            ),
            "{what}: totals"
        );
        assert_eq!(inv.inclusive, (inv.own.input, inv.own.output));
        let mut usage = inv.reported;
        if repair {
            if inv.reported.0 != inv.own.input {
                usage.0 = inv.own.input;
                reported_key(inv.span, "gen_ai.usage.input_tokens", inv.reported.0.into());
            }
            if inv.reported.1 != inv.own.output {
                usage.1 = inv.own.output;
                reported_key(
                    inv.span,
                    "gen_ai.usage.output_tokens",
                    inv.reported.1.into(),
                );
            }
        }
        assert_eq!(
            (
                i64_of(span, "gen_ai.usage.input_tokens"),
                i64_of(span, "gen_ai.usage.output_tokens")
            ),
            usage,
            "{what}: usage"
        );
        let mut response = (inv.response.id.clone(), inv.response.model.clone());
        if repair && inv.response.owner != inv.k {
            response = inv.own.last.clone().expect("own call");
            reported_key(
                inv.span,
                "gen_ai.response.id",
                inv.response.id.clone().into(),
            );
            reported_key(
                inv.span,
                "gen_ai.response.model",
                inv.response.model.clone().into(),
            );
        }
        assert_eq!(
            (
                str_of(span, "gen_ai.response.id"),
                str_of(span, "gen_ai.response.model")
            ),
            response,
            "{what}: response"
        );
        for key in [
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.response.id",
            "gen_ai.response.model",
        ] {
            assert_eq!(occurrences(span, key), 1, "{what}: {key} once");
        }
    }
    for step in &record.steps {
        let span = &spans[&step.span];
        assert_eq!(i64_of(span, "genai_audit.step.index"), step.index, "{what}");
        let mut round = step.round;
        if repair && step.round != step.index {
            round = step.index;
            reported_key(step.span, "gen_ai.react.round", step.round.into());
        }
        assert_eq!(i64_of(span, "gen_ai.react.round"), round, "{what}: round");
    }
    let mut actual_reported = HashMap::new();
    for (id, span) in &spans {
        for (key, value) in reported_of(span) {
            actual_reported.insert((*id, key), value);
        }
    }
    assert_eq!(
        actual_reported, expected_reported,
        "{what}: reported originals"
    );
    by_code
}

/// Each contamination the buggy agent causes shows up in every run (the schedule is
/// seeded, so this is a property of the seed, checked so that no run is vacuous).
fn assert_every_symptom(by_code: &BTreeMap<&'static str, u64>, what: &str) {
    for code in [
        "usage_mismatch",
        "foreign_response",
        "round_mismatch",
        "late_start",
        "identity_mismatch",
    ] {
        assert!(
            by_code.get(code).copied().unwrap_or(0) > 0,
            "{what}: the schedule never caused {code}: {by_code:?}"
        );
    }
}

/// Runs the buggy agent with `h`'s tracer on `workers` threads, or on as many tokio
/// tasks on `tasks`; returns its record.
fn run_buggy(h: &Harness, workers: usize, tasks: Option<&tokio::runtime::Runtime>) -> Record {
    let agent = Arc::new(BuggyAgent {
        tracer: h.tracer(),
        shared: Mutex::new(Shared::default()),
    });
    match tasks {
        Some(rt) => run_buggy_tasks(rt, agent.clone(), workers),
        None => run_buggy_threads(&agent, workers),
    }
    let agent = Arc::into_inner(agent).expect("workers are done");
    agent.shared.into_inner().expect("agent lock").record
}

/// Runs the buggy agent under each worker count and policy, on threads or on tasks,
/// and checks each run's findings against its record.
fn check_buggy_runs(tasks: Option<&tokio::runtime::Runtime>) {
    let on = if tasks.is_some() { "tasks" } else { "threads" };
    for workers in WORKER_COUNTS {
        for policy in POLICIES {
            let h = Harness::with(|b| b.contamination_policy(policy));
            let record = run_buggy(&h, workers, tasks);
            assert_eq!(record.invocations.len(), workers * INVOCATIONS_PER_WORKER);
            let what = format!("{workers} {on}, {policy:?}");
            let by_code = check_buggy(&h, &record, policy, &what);
            assert_every_symptom(&by_code, &what);
        }
    }
}

#[test]
fn buggy_agent_shared_by_threads_gives_exactly_the_findings_it_caused() {
    check_buggy_runs(None);
}

#[test]
fn buggy_agent_shared_by_tokio_tasks_gives_exactly_the_findings_it_caused() {
    check_buggy_runs(Some(&runtime()));
}

/// The schedule is deterministic: the same workers give the same record twice, on
/// threads and on tasks alike.
#[test]
fn buggy_schedule_is_deterministic() {
    let summary = |record: &Record| {
        let mut v: Vec<(u64, (i64, i64), String, u64)> = record
            .invocations
            .iter()
            .map(|i| (i.k, i.reported, i.response.id.clone(), i.response.owner))
            .collect();
        v.sort();
        let mut findings: Vec<(&str, Vec<&str>)> = record
            .spans
            .values()
            .map(|(r, f)| (*r, f.clone()))
            .collect();
        findings.sort();
        (v, findings)
    };
    let rt = runtime();
    for workers in WORKER_COUNTS {
        let mut runs = Vec::new();
        for tasks in [None, None, Some(&rt)] {
            runs.push(summary(&run_buggy(&Harness::new(), workers, tasks)));
        }
        assert_eq!(runs[0], runs[1], "{workers} workers: threads twice");
        assert_eq!(runs[0], runs[2], "{workers} workers: threads and tasks");
    }
}
