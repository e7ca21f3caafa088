//! Overhead of `GenAiAuditProcessor`, as a ratio against the bare pipeline measured in
//! the same run. Absolute times depend on the machine; the ratios are what we report.
//!
//! Reproduce with `cargo bench --bench overhead` (about 75 s of measuring; one group:
//! `cargo bench --bench overhead -- threads`), then read `mean.point_estimate` from
//! `target/criterion/<group>/<variant>/new/estimates.json`; the `threads` group also
//! prints its interleaved scaling (see below) on stderr.
//!
//! Groups, each with a `bare` and an `audit` variant that differ only in the processor:
//!
//! - `passthrough_noop`: one trace of a server root and three database children, four
//!   http/db attributes each, nothing gen-ai (4 spans). Inner processor: a no-op
//!   `SpanProcessor`. `audit` wraps it in `GenAiAuditProcessor::builder(..)
//!   .with_disabled(false).build()`.
//! - `passthrough_batch`: the same trace into a default `BatchSpanProcessor` with a no-op
//!   exporter, timed in chunks of 256 traces with a `force_flush` between chunks outside
//!   the timing so that its queue never overflows (see [`bench_batch`]; 0 spans dropped).
//! - `agent_turn`: one `invoke_agent` invocation, three `react step` spans and in each
//!   one priced generation (`chat gpt-4o`, openai, token usage set before end) and one
//!   `execute_tool read`: 1 + 3 + 3 + 3 = **10 spans** per trace (times are per trace).
//!   No-op inner processor.
//! - `pricing_known` / `pricing_tiered` / `pricing_unknown`: one call (1 056 input and
//!   170 output tokens, at 2025-10-09T08:53:20Z) priced for `openai`/`gpt-4o` (linear:
//!   priced from the memoised rates), `anthropic`/`claude-sonnet-4-5` (tiered: the memo
//!   falls back to `genai-prices`) / `openai`/`my-private-model` (unknown). Here `bare`
//!   is a direct `genai_prices::calculate` (usage map built per call) and `audit` is
//!   `GenAiPrices::bundled()` through the `Pricer` trait with a warm memo (the call was
//!   made three times before the timing, and the memoised price checked to be the
//!   direct one bit for bit). The figure is the speed-up, direct / memoised.
//! - `threads`: `agent_turn` on 1 and 2 threads (and 4, 8, .. up to the cores there
//!   are) sharing ONE provider, no-op inner processor. `iter_custom`: one iteration is
//!   64 traces on each thread; the threads are spawned (`std::thread::scope`) and given
//!   their tracer before the timing and released together by a barrier; the time runs
//!   until the last one has finished. Throughput is in spans. `bare/T` and `audit/T`:
//!   each thread its own `provider.tracer(..)`; `bare_one_tracer/T`, `audit_one_tracer/T`
//!   (T > 1): all threads one tracer. Scaling = throughput at 2 threads / throughput at
//!   1 = 2 x time(1) / time(2). Because criterion measures the variants one after the
//!   other, seconds apart, a neighbour's load on this shared machine can hit one and not
//!   another; so the group then measures the scaling again with bare and audit at 1 and
//!   2 threads interleaved in ~20 ms runs, 100 rounds, the order rotating each round, and
//!   prints the medians and quartiles over the rounds ([`threads_interleaved`]). That is
//!   the figure the target is judged on.
//!
//! # 2026-12-08: the processor as an adapter over the engine's event API
//!
//! In instructions (`valgrind --tool=callgrind` on a small driver running the
//! `agent_turn` trace 1 000 and 3 000 times with a no-op inner processor, the
//! difference divided by 2 000; the counts do not depend on the machine's load),
//! the commit before the event API (64a0b49) against after it, built the same way:
//!
//! | build | bare turn | audited turn | ratio |
//! | --- | --- | --- | --- |
//! | before (64a0b49) | 20 317 | 76 492 | 3.76× |
//! | after (the end in phases, writes handed back, events through a sink) | 20 318 | 78 698 | 3.87× |
//! | after, the writes phase borrowing the end's context instead of moving it | 20 318 | 78 332 | 3.86× |
//!
//! So the adapter costs +1 840 instructions a turn (+2.4 %): "no slower than before"
//! is not met to the instruction, most of it in copies (`memcpy` +1 100 a turn) of the
//! end's context and the count writes no longer inlined. Criterion times were not
//! taken this session (the machine was loaded by builds throughout).
//!
//! # Results, 2026-12-06: the ledger split into parts, before and after in one session
//!
//! The ledger became a folder of parts, its walks up the ancestors are bounded by what
//! they can meet (no longer 256 levels), the response memory can be scoped to a trace
//! (the command's), and a `stale` is written only under the role it was counted under.
//! `cargo bench --bench overhead -- 'agent_turn|passthrough_noop'`, alternating the
//! session's first commit (a worktree at `48391f2`, "before") and the last ("after"),
//! same 2-core VM, quiet; means in µs:
//!
//! | run | bare turn | audit turn | ratio | pass-through bare | clone_only | audit | audit − floor |
//! | --- | --- | --- | --- | --- | --- | --- | --- |
//! | before 1 | 2.016 | 5.509 | 2.73× | 0.801 | 1.114 (1.39×) | 1.137 (1.42×) | +0.03 |
//! | before 2 | 1.986 | 5.495 | 2.77× | 0.814 | 1.112 (1.37×) | 1.138 (1.40×) | +0.03 |
//! | after 1 | 2.008 | 5.954 | 2.96× | 0.801 | 1.112 (1.39×) | 1.155 (1.44×) | +0.05 |
//! | after 2 | 1.980 | 5.589 | 2.82× | 0.825 | 1.125 (1.36×) | 1.146 (1.39×) | +0.03 |
//! | after 3 (small helpers `#[inline]` across the parts) | 2.180 | 5.916 | 2.71× | 0.822 | 1.240 | 1.238 | (noisy run) |
//! | after 4 (same) | 2.029 | 5.733 | 2.83× | 0.782 | 1.128 (1.44×) | 1.140 (1.46×) | +0.02 |
//!
//! Agent turn ≤ 3.0× in every run (target), 2.71–2.96× after against 2.73–2.77× before:
//! within this VM's run-to-run spread, with the after runs up to ~5 % slower in the
//! worst case. Pass-through within 0.02–0.05 of the `clone_only` floor (target 0.10,
//! goal 0.05: met).
//!
//! # Results, 2026-11-26, evening: the per-trace ledger (the figures the README reported before)
//!
//! Measured 2026-11-26 (18:33–18:46 UTC) on the same 2-core VM ("AMD EPYC"), quiet
//! (nothing else running), opentelemetry_sdk 0.33.1, genai-prices 0.2.1, rustc 1.95.0,
//! criterion 0.5.1 (sample size 30, 1 s warm-up, 2 s measurement), at the commit
//! before the one that added these figures (`src/` changed since only by the final
//! review: the clock read before the trace's lock is taken, one eviction predicate,
//! one key filter; the agent turn's instruction count is the same, 73 100), with `cargo bench
//! --bench overhead -- 'passthrough_noop|agent_turn|pricing'`, then `--
//! 'passthrough_noop|agent_turn'`, then `-- agent_turn` twice, then `-- threads`;
//! criterion means:
//!
//! | group / variant | run 1 | run 2 | run 3 | run 4 | ratio to bare | target |
//! |---|---|---|---|---|---|---|
//! | `passthrough_noop` bare | 0.747 µs | 0.806 µs | | | 1 | |
//! | `passthrough_noop` clone_only (floor) | 1.040 µs | 1.067 µs | | | 1.39x / 1.32x | |
//! | `passthrough_noop` audit | 1.066 µs | 1.102 µs | | | **1.43x / 1.37x** (floor + 0.03 / + 0.04) | floor + 0.10 (goal + 0.05): **met** (the goal too) |
//! | `agent_turn` bare | 1.866 µs | 1.923 µs | 1.997 µs | 1.876 µs | 1 | |
//! | `agent_turn` audit | 5.789 µs | 5.696 µs | 5.672 µs | 5.629 µs | **3.10x / 2.96x / 2.84x / 3.00x** (median 2.98x) | ≤ 3.0x: **met, at its edge** (three runs of four; was 3.22–3.24x) |
//! | `agent_turn` audit_metrics | 6.668 µs | 6.407 µs | 6.308 µs | 6.314 µs | +15.2 % / +12.5 % / +11.2 % / +12.2 % over audit | ≤ 15 % (the metrics issue): met in three runs of four |
//! | `pricing_known` | 1.106 µs direct, 28.4 ns memoised | | | | **39x** | ≥ 10x (goal 30x): met |
//! | `pricing_tiered` | 1.461 µs / 1.620 µs | | | | 0.90x (falls back to `genai-prices`) | |
//! | `pricing_unknown` | 1.218 µs / 8.08 ns | | | | 151x | ≥ 10x: met |
//! | `threads`, interleaved | bare 2.01, audit 2.50 | | | | **1.24** (quartiles 1.07–1.54) | within 10 %: met |
//!
//! The same evening, at the commits just before (the per-trace ledger without the last
//! two small changes): `agent_turn` 3.05x, 2.99x, 3.12x, 3.01x, 2.84x, 3.06x, 3.06x;
//! `threads` interleaved 0.95, 0.96, 1.08. The audited turn itself is steady at
//! 5.6–5.9 µs (6.30–6.32 before); the ratio moves with the bare pipeline's
//! 1.87–2.00 µs from run to run.
//!
//! Memory (`cargo bench --bench memory`, same evening): 127–210 B per tracked open span
//! from 10 000 to 1 000 000 spans, flat; 2.9 B per span forgotten past a capacity of
//! 10 000; 1.58 MB fixed at the default capacity (target ≤ 256 B: met).
//!
//! In instructions (callgrind, the same method as below): bare 20 509, `clone_only`
//! 30 341 (the start copies), audited **73 100** (78 102 before this section's work,
//! 90 872 at the start of the day), with metrics 84 500 (+15.7 %: the metrics' ~11 400
//! are fixed, mostly the SDK's aggregation, and the turn under them got smaller);
//! pass-through (4 spans) bare 7 662, `clone_only` 11 934, audited 13 075.
//!
//! What changed, each step checked by its instruction count and by the tests:
//!
//! - The ledger keeps a trace's spans behind one lock: 64 parts chosen by trace id,
//!   each a plain hash map (with the span-id hasher) and its spans' start order under
//!   the same lock. A ledger call takes its part's lock once for the span, its parent
//!   and ancestors and its invocation, instead of a lookup (a shard lock) of the
//!   concurrent map each; the start-order queue's own lock at every tracked start and
//!   end is gone. Eviction finds the oldest span across parts from the start each part
//!   publishes (an atomic written under the part's lock), and a shared lower bound of
//!   the oldest start tells a start, with one load, whether anything may be due by age.
//! - A generation's or tool call's usage and cost are read before its end reaches the
//!   ledger, so the ledger hands the call to the tracked ancestors and detaches the span
//!   in the same lock; the ended span's record takes what was below it whole (a moved
//!   box) instead of field by field, and the end removes its entry in one lookup.
//! - Attribute writes: places for the span's attributes at the front of the writes'
//!   buffer (each attribute moves once; no rotation), and a first reservation of twelve
//!   writes, which keeps a generation's list under 1 KiB: at sixteen, the buffers of
//!   generations and invocations were just over the size glibc serves from its
//!   per-thread cache, and took its slow path every time (~1 200 instructions a turn).
//! - A finding set lists its codes from its bits (it tested all thirteen codes for every
//!   tracked span); most keys that are not token counts are dismissed without a string
//!   comparison; a contribution carries an invocation's last response boxed; the memory
//!   of ended spans packs a role and a fate by their discriminants (it searched the
//!   lists of roles and fates); the lazily read clock keeps its reading in a `Cell`.
//!
//! Tried and dropped (no gain in instructions, or slower): a bucket layout of the
//! memory of ended spans with all keys in one cache line (2–3 % slower in time);
//! pushing a span's role onto its own list when it is the only write (the list's
//! `realloc` cost more than the buffer from the per-thread cache); one pass for the
//! identity keys; building the hand-up record lazily. Skipping the memory of ended spans
//! altogether, or the live-span counter's atomic increments, saved nothing measurable
//! (each under 1 %, within the noise of a time comparison).
//!
//! Where the margin under 3.0x would come from: nothing large is left. Per turn the
//! audited pipeline spends ~52 700 instructions more than the bare one, of which
//! ~9 800 are the start copies SDK 0.33 forces (the `clone_only` floor); ~14 000 the
//! ledger (its start ~5 800 and end ~6 600 with the roll-up to ancestors, about 700
//! instructions a span event, a third of it the lock, the counter and the memory of
//! ended spans); ~10 500 writing the 79 attribute values the contract asks for and
//! applying them (building, the buffer, the moves); ~4 400 classification at start and
//! end; ~5 000 pricing, usage and the contamination checks; the rest the bodies of
//! `on_start`/`on_end`. Each remaining candidate is worth 0.3–1 % by its instruction
//! count (a pool for the parents' records, the clock's conversion at each tracked
//! start, the agent name for the metrics found in the ledger lookup of the end);
//! together 1–2 %, less than the run-to-run spread of the ratio itself.
//!
//! # Results, 2026-11-26, after the performance work (afternoon; superseded above)
//!
//! Measured 2026-11-26 on the same 2-core VM ("AMD EPYC"), quiet (nothing else
//! running), opentelemetry_sdk 0.33.1, genai-prices 0.2.1, rustc 1.95.0, criterion 0.5.1
//! (sample size 30, 1 s warm-up, 2 s measurement), the crate's `src/` as of the commit
//! that added this section, with `cargo bench --bench overhead --
//! 'passthrough_noop|agent_turn|pricing'`, then `-- 'passthrough_noop|agent_turn'`, then
//! `-- threads` twice; criterion means:
//!
//! | group / variant | run 1 | run 2 | ratio to bare | target |
//! |---|---|---|---|---|
//! | `passthrough_noop` bare | 0.750 µs | 0.757 µs | 1 | |
//! | `passthrough_noop` clone_only (floor) | 1.024 µs | 1.012 µs | 1.37x / 1.34x | |
//! | `passthrough_noop` audit | 1.053 µs | 1.048 µs | **1.41x / 1.38x** (floor + 0.04 / + 0.05) | floor + 0.10 (goal + 0.05): **met** |
//! | `agent_turn` bare | 1.964 µs | 1.944 µs | 1 | |
//! | `agent_turn` audit | 6.318 µs | 6.303 µs | **3.22x / 3.24x** | ≤ 3.0x: **missed** (was 3.80–3.99x) |
//! | `agent_turn` audit_metrics | 7.234 µs (audit 6.369) | 7.055 µs (audit 6.322) | **+13.6 % / +11.6 %** over audit; +14.3 % in instructions (78 033 → 89 164) | ≤ 15 % (issue of the metrics): met (measured after the last metrics change, two runs of `-- agent_turn`; before it +15.3 % / +14.3 %) |
//! | `pricing_known` | 1.108 µs direct, 28.9 ns memoised | | **38x** | ≥ 10x (goal 30x): met |
//! | `pricing_tiered` | 1.474 µs / 1.591 µs | | 0.93x (falls back to `genai-prices`) | |
//! | `pricing_unknown` | 1.173 µs / 8.46 ns | | 139x | ≥ 10x: met |
//! | `threads`, interleaved | bare 2.11, audit 2.13 | bare 2.05, audit 1.91 | **1.02 / 0.93** (quartiles 0.80–1.22 / 0.80–1.26) | within 10 %: met |
//!
//! (Earlier runs the same day, a few commits before these figures: `agent_turn` 3.19x /
//! 3.28x, `passthrough_noop` floor + 0.01 / + 0.03, threads 1.00 / 1.02.)
//!
//! Memory (`cargo bench --bench memory`, same day): 121–210 B per tracked open span from
//! 10 000 to 1 048 577 spans, flat; 2.9 B per span forgotten past a capacity of 10 000;
//! 1.577 MB fixed at the default capacity (target ≤ 256 B: met, unchanged).
//!
//! In instructions (`valgrind --tool=callgrind` on a small driver running the same
//! 10-span turn 1 000 and 3 000 times, the difference divided by 2 000; the counts do
//! not depend on the load): bare 20 685, audited **78 102** (90 872 before this work:
//! -14 %); pass-through (4 spans) bare 7 731, `clone_only` 11 995, audited 13 213
//! (15 658 before: the processor's own part beyond the copy went from 3 600 to 1 200).
//!
//! What changed, each measured before and after in instructions and in time:
//!
//! - Pass-through: a span that is neither recognised nor under a tracked span takes a
//!   short path: one classification at start and one at end, the role keys found by
//!   their length and first byte (a span without any is judged by its name alone), no
//!   plan, no move of the start copy, no empty export; the tracked paths are out of line.
//! - The clock: `perf` showed `clock_gettime` at ~8 % of the audited turn (a VM's clock
//!   source), of which the processor's own reading at each tracked start was a third.
//!   With the default clock a live span's own start time (read by the SDK from the same
//!   clock an instant before) now stands for "now"; the clock is read only when a start
//!   time is more than 100 ms off its last reading.
//! - Attribute writes: `perf annotate` showed the writes stalling on store forwarding
//!   (each `KeyValue` built on the stack with 8-byte stores, then copied with 16-byte
//!   loads). They are now built where they are stored, and sums appended in one pass
//!   (`write_sums` 6.4 % → 2.4 %).
//! - The ledger: a span's end takes one lookup of the span map instead of two; a step
//!   under its invocation is counted, and detached at its end, in the lookups that attach
//!   and close it; a start evicts only when something is due (checked under the lock it
//!   queues itself with); an end drops its start-order item when it is at the back.
//! - Reading: usage and the contamination check's reported counts in one pass over the
//!   attributes; model and provider names trimmed only when they need it.
//! - Found on the way, by the thread-scaling bench: since starts evict only when
//!   something is due, the start-order queue was no longer trimmed at twice the
//!   capacity, and with spans ending out of order on two threads it grew without bound
//!   (audit / bare scaling fell to 0.6). Trimming is due again at twice the capacity
//!   (a regression test pins it), which gave the 1.00 above.
//!
//! What stands between the agent turn and 3.0x (instructions per turn, audited minus
//! bare = ~57 400):
//!
//! - ~6 300 the start copy (`Span::exported_data`), which SDK 0.33 forces.
//! - ~17 000 the live-span ledger: about 45 lookups of the concurrent span map a turn
//!   (each a shard lock taken and released: two atomic read-modify-writes), which the
//!   design needs (a start inserts itself and registers with its parent; an end takes
//!   its entry; a generation's or tool call's totals reach each tracked ancestor as it
//!   ends, for the running totals), the start-order queue's lock at start and end, the
//!   span counter, the bounded memory of ended spans (a cache miss a span), and the
//!   parents' records of what is below them (4 allocations a turn).
//! - ~14 000 writing the 79 attribute values the contract asks for on these 10 spans
//!   (building them, moving each span's list into a buffer with room, and dropping the
//!   longer lists in the inner processor).
//! - ~2 700 pricing (a rate-memo hit, reading model, provider and reported cost),
//!   ~2 200 classification at end, ~1 500 usage, ~2 100 contamination checks.
//! - ~12 000 the rest: dropping the start copies, classification and the plan at start,
//!   and the bodies of `on_start` and `on_end` (moving the ledger's record of each ended
//!   span, findings, what a span hands up).
//!
//! In time the ledger's atomics weigh more than their count (a `lock` prefix is ~20
//! cycles here). A turn at 3.0x (~5.9 µs) would need ~0.45 µs less: roughly a third of
//! the ledger's map traffic. That needs a different ledger (state per trace, one lock a
//! span event instead of three or four lookups), not more tuning of this one; it is the
//! next step, not done in this session.
//!
//! # Results, 2026-11-26, earlier the same day
//!
//! Measured 2026-11-26 on the same 2-core VM ("AMD EPYC"), quiet (load average ~1.2,
//! no build running), opentelemetry_sdk 0.33.1, genai-prices 0.2.1, rustc 1.95.0,
//! criterion 0.5.1 (sample size 30, 1 s warm-up, 2 s measurement), with `cargo bench
//! --bench overhead -- 'passthrough_noop|agent_turn|pricing'` and `-- threads`; two runs,
//! criterion means:
//!
//! | group / variant | run 1 | run 2 | ratio to bare | target |
//! |---|---|---|---|---|
//! | `passthrough_noop` bare | 0.785 µs | 0.826 µs | 1 | |
//! | `passthrough_noop` clone_only (floor) | 1.037 µs | 1.103 µs | 1.32x / 1.34x | |
//! | `passthrough_noop` audit | 1.319 µs | 1.285 µs | **1.68x / 1.56x** (floor + 0.36 / + 0.22) | floor + 0.10: missed |
//! | `agent_turn` bare | 1.911 µs | 2.001 µs | 1 | |
//! | `agent_turn` audit | 7.574 µs | 7.987 µs | **3.96x / 3.99x** | ≤ 3.0x: missed |
//! | `agent_turn` audit_metrics | 8.85 / 9.02 / 8.99 µs (three later runs, against audit 7.80 / 7.58 / 7.74 µs) | | +13.4 / +19.0 / +16.2 % over audit; **+14.3 % in instructions** (callgrind: 93 678 → 107 042 per turn) | ≤ 15 %: met in instructions, borderline in time (criterion measures the variants seconds apart) |
//! | `pricing_known` | 1.12 µs direct, 28.2 ns memoised | 1.17 µs / 29.1 ns | **40x** | ≥ 10x (goal 30x): met |
//! | `pricing_unknown` | 1.11 µs / 9.1 ns | 1.21 µs / 9.2 ns | 121x / 132x | ≥ 10x: met |
//! | `threads`, interleaved | bare 2.06, audit 2.04 | | **1.00** (quartiles 0.88–1.27) | within 10 %: met |
//!
//! After the writes' buffer began to hold the span's attributes too (no reallocation of
//! the span's list; 93 700 → 90 500 instructions a turn), two more runs: `agent_turn`
//! 1.968 → 7.482 µs (**3.80x**) and 1.904 → 7.549 µs (3.96x); `passthrough_noop` 1.59x
//! and 1.60x against a floor of 1.33x and 1.37x; metrics +16.7 % and +15.5 % in time.
//!
//! Before and after the architecture and end-only changes (issues of 2026-11-26), the
//! same run, each binary built from its commit and run in turn twice (`--warm-up-time 1
//! --measurement-time 3`; ratios audit / bare):
//!
//! | commit | `passthrough_noop` | `agent_turn` |
//! |---|---|---|
//! | `e21b2e2` (before) | 1.69x, 1.74x | 6.19x, 6.20x |
//! | `f88436e` (one engine; same behaviour) | 1.55x, 1.66x | 5.91x, 6.26x |
//! | `38159ac` (roles known only at end) | 1.75x, 1.69x | 6.56x, 7.8x (wide interval) |
//!
//! Where the agent turn's time goes, in instructions (`valgrind --tool=callgrind` on a
//! small driver that runs the same 10-span turn 1 000 and 3 000 times, the difference
//! divided by 2 000; counts do not depend on the load): bare ~20 700, audited ~93 500.
//! Of the ~73 000 more: ~37 000 writing ~130 attribute values (building the writes,
//! `AttributeWrites::apply` growing and copying each span's attribute vector: realloc
//! and memcpy alone ~20 000), ~17 000 the ledger (`start` ~10 000, `end` ~6 000,
//! contributions and tombstones), ~10 000 the start copy (`Span::exported_data`),
//! ~5 000 pricing (a rate-memo hit plus reading model and provider), ~4 500 usage
//! parsing, ~2 200 classification, the rest the contamination checks and the engine.
//! So ≤ 3x would need the attribute writing itself to halve: it is what the contract
//! asks the processor to write (role, cost keys, seven running totals per generation,
//! nine totals per step and invocation).
//!
//! On `passthrough_noop`, audit − clone_only is ~3 700 instructions per 4-span trace:
//! two classifications per span (at start, and at end for roles known only then),
//! the ledger's fast-path checks, and one more move of each ended `SpanData` through
//! the wrapper. With metrics on, the six SDK measurements per turn (three cost
//! increments, three invocation histograms) take ~12 000 instructions in the SDK's
//! aggregation (`ValueMap::measure`, attribute hashing); the processor's own part
//! (bounded names, the attribute lists, reusing the provider pricing found) ~1 500.
//!
//! # Results, 2026-11-21 (earlier)
//!
//! Measured 2026-11-21 on a 2-core VM (`nproc` = 2, /proc/cpuinfo model name "AMD
//! EPYC"), opentelemetry_sdk 0.33.1, genai-prices 0.2.1, dashmap 6.2.1, criterion 0.5.1,
//! rustc 1.95.0, sample size 30, 1 s warm-up, 2 s measurement, the crate's `src/` as of
//! commit `8bd3dd8`, on a quiet machine (no other build running). "This run" gives the
//! criterion means (absolute times in parentheses); "earlier" the range over the runs at
//! commit `f278165`, before the hot-path work of `8bd3dd8` (lock-free memories skipped
//! by unrecognised spans, one clock read per tracked start, cheaper attribute writes),
//! measured while other processes were compiling. Treat differences under ~15% as noise.
//!
//! | group               | ratio                  | this run                      | earlier     |
//! |---------------------|------------------------|-------------------------------|-------------|
//! | `passthrough_noop`  | audit / bare           | **1.82x** (0.92 → 1.67 µs)    | 1.95–1.98x  |
//! | `passthrough_batch` | audit / bare           | **2.25x** (1.33 → 2.99 µs; wide interval, 2.41–3.51 µs) | 1.73–2.19x  |
//! | `agent_turn`        | audit / bare           | **6.98x** (2.28 → 15.91 µs)   | 7.9–10.4x   |
//! | `pricing_known`     | direct / memoised      | **40x** (1.12 µs vs 27.9 ns; 2026-11-26, below) | 0.84–0.96x before the rate memo |
//! | `pricing_tiered`    | direct / memoised      | **0.96x** (1.50 vs 1.57 µs; 2026-11-26) | new group   |
//! | `pricing_unknown`   | direct / memoised      | **114x** (1.11 µs vs 9.7 ns; 2026-11-26) | 38–43x      |
//! | `threads`, interleaved | scaling 1 → 2 threads, bare; audit; audit / bare | bare **1.80**, audit **1.89**: **1.03** (quartiles 0.90–1.16) | 0.88–0.92 |
//! | `threads`, criterion   | the same from the criterion means | bare 1.53 (151.8 → 198.7 µs an iteration), audit 1.89 (1.09 → 1.16 ms) | 0.65–0.97 |
//!
//! Against the targets of issue 5: pass-through ≤ 1.5x (goal ≤ 1.25x) is **not met**
//! (1.8x; see below: a clone of every span that SDK 0.33 forces); an agent turn ≤ 2.0x
//! per span (goal ≤ 1.5x) is **not met** (~7x; both variants have 10 spans, so the
//! per-span ratio is the per-trace one; pricing alone is ~3.5x); the pricing memo ≥ 10x
//! is met for unknown models (~38x then, 114x now) and, since the rate memo of
//! 2026-11-26 (below), for known ones too (40x; ~1x before it); thread
//! scaling within 10% of the bare pipeline's is **met** in this run (audit/bare 1.03,
//! after the memories became lock-free; 0.88-0.92 before).
//!
//! Reading the table:
//!
//! - On spans that are not gen-ai the processor costs about +0.9 µs per 4-span trace
//!   (~0.23 µs a span). In `perf` (cpu-clock, DWARF call graphs, `passthrough_noop/audit`)
//!   43% of the audit variant's time is the SDK and the bench loop, 25% cloning the span
//!   in `on_start` (`Span::exported_data`, the only way SDK 0.33 offers to read a live
//!   span's name and attributes) and dropping the clone, 10% `BoundedMemory::get`
//!   (the lock-free "did this parent end recently?" check: one atomic load into a
//!   direct-mapped table of 2^17 slots, 1 MB at the default capacity, which misses the
//!   cache), 6% classification, 3% the ledger, 3% the engine, and 11% moving the ended
//!   span through the wrapper into the inner processor and dropping it there (part of
//!   which the bare variant pays too).
//! - Pricing memo (re-measured 2026-11-26, same 2-core VM, quiet machine, same
//!   settings, `cargo bench --bench overhead -- pricing`; the crate's `src/` as of the
//!   commit that added the rate memo). Until then a memo hit on a known model still
//!   called `Calculator::calculate` (unit registry lookups with SipHash, string
//!   compares, model matching: ~1.1-1.9 µs), so the memo was ~1x (0.84–0.96x). Now the
//!   memo keeps each linear model's per-token rates, derived from `genai-prices`' own
//!   prices of probe usages for the call's UTC day and confirmed for each minute, and
//!   prices from them with `genai-prices`' arithmetic (bit-for-bit equal on every bundled
//!   model in the crate's tests): **40x** (1.12 µs direct vs 27.9 ns). Each thread keeps
//!   its last 8 pairs at hand, so a hit takes no lock and no hash; the rest is the clock
//!   arithmetic, the string compares, 2 divisions and the `Arc` clone of the matched
//!   name. A second run gave 42x (1.22 µs vs 29.1 ns). Through the shared memo alone
//!   (read lock + hash, before the threads' pairs were added) it was 59 ns (19x). A
//!   tiered model (`pricing_tiered`, claude-sonnet-4-5) is still priced by
//!   `genai-prices` on every call (0.96x); so are minutes whose price differs from the
//!   day's (DeepSeek's peak hours). Unknown models: 114x (9.7 ns), also from the
//!   thread's pairs. 2 073 of the 2 267 bundled models take the fast path at every date
//!   tested, 114 never (tiered), 4 at some dates (prices that became flat or tiered on
//!   a date), and 76 cannot be found by their own id.
//! - Thread scaling. The bare pipeline with one tracer per thread scales ~1.9x on 2
//!   cores; audited, ~1.6-1.8x. Profiling `threads/audit/2` against `threads/audit/1`,
//!   the share of `Ledger::start` grows from 2% to 11%, `Ledger::contribute` from 2% to
//!   4%, DashMap inserts to 5% and `parking_lot` `lock_slow` appears (2%): the hot
//!   instructions are the `lock incq` of the ledger's shared span counter (`len`, written
//!   on every tracked start and end) and the `lock cmpxchg` of the mutexes every tracked
//!   span takes (the start-order queue at start, the recently-ended memory at end) and
//!   of the DashMap shard locks. With one tracer shared by all threads it is the SDK
//!   that stops scaling: each span start clones the tracer's `Arc<InstrumentationScope>`
//!   and provider `Arc`, and the two `lock incq` on those counters took ~18% of
//!   `threads/bare_one_tracer/2`'s samples (bare throughput at 2 threads then ranged from
//!   0.8x to 1.8x of 1 thread with the load); that masks the processor's own contention,
//!   hence a tracer per thread for the judged variant.
//! - Without the chunked flushes, `passthrough_batch` saturates: the bench thread ends
//!   spans faster than the batch worker takes them, and in one such run the default
//!   queue dropped 30% of the bare variant's spans and 15% of the audit variant's, so
//!   the two variants were not doing the same work; hence the chunking.
//!
//! # Where the time goes in an agent turn
//!
//! `perf record -e cpu-clock -F 1999 --call-graph dwarf,32768` on the bench binary
//! built with line tables (`CARGO_TARGET_DIR=/tmp/target-prof
//! CARGO_PROFILE_BENCH_DEBUG=line-tables-only cargo bench --bench overhead --no-run`),
//! running `--bench 'agent_turn/audit$' --profile-time 5`; 9 457 samples inside the
//! trace, each attributed to the first of these categories found on its stack (this VM
//! has no hardware counters: `perf stat -e instructions` says "not supported"; the
//! software clock works). Of the audit variant's ~18.5 µs per 10-span trace:
//!
//! - **31% pricing** the three generations (~1.9 µs each): 29.6% inside `genai-prices`
//!   (`Calculator::calculate`: `calculate_model_price`, `usage_value`, model matching
//!   with `memcmp`, SipHash registry lookups), 1.6% the memo and the usage conversion.
//! - **15% `BoundedMemory::insert`**, the memory of recently ended spans, one insert per
//!   tracked span end (~0.27 µs each): cache misses, as the annotated hot spots are the
//!   store into the direct-mapped `seen` table (1 MB at the default capacity of 65 536)
//!   and the hash-map probe (65 536 entries of 56 bytes), plus removing the oldest entry.
//! - **14% the rest of the ledger** (`start`, `end`, `contribute`, `evict_due`,
//!   tombstones, DashMap), of which ~2% is reading the clock twice per tracked start.
//! - **12% attribute writes** (`AttributeWrites::set`/`apply`: growing the span's
//!   `Vec<KeyValue>` by realloc, `retain` to replace keys).
//! - **4% the span clone in `on_start`** (`Span::exported_data`); 1% usage parsing; 1%
//!   classification.
//! - **10% other processor code**: the bodies of `Audit::on_end`/`start`, the
//!   contamination identity and checks, and the adapter moving `SpanData` by value.
//! - **12.5% the SDK and the bench loop**, i.e. the bare pipeline's own work (2.3 µs of
//!   18.5, as the 7.9x ratio says).
//!
//! (Profile taken before the rate memo of 2026-11-26, which took pricing a known model
//! off the hot path: `cargo bench --bench overhead -- 'pricing|agent_turn'` then gave
//! `agent_turn` **4.7x** (1.99 → 9.36 µs, a wide interval: 8.5–10.4 µs), against 6.98x
//! on 2026-11-21.)
//!
//! So pricing alone, at ~1.9 µs a generation, already takes an agent turn to ~3.5x the
//! bare SDK. Reaching 2.0x means fitting the processor's whole cost into ~2.3 µs per
//! 10-span trace (~0.23 µs a span), 7x less than now: pricing has to leave the hot path
//! for known models (a memo of the resolved per-token rates rather than a call into
//! `Calculator::calculate`), and the recent-span memory, the rest of the ledger and the
//! attribute writes each have to shrink several-fold.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use genai_audit::pricing::{GenAiPrices, PriceQuery, Pricer};
use genai_audit::usage::Usage;
use genai_audit::GenAiAuditProcessor;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, InMemorySpanExporter, SdkTracer, SdkTracerProvider, SimpleSpanProcessor,
    Span, SpanData, SpanExporter, SpanProcessor,
};

// ---------------------------------------------------------------------------------------
// The pipeline pieces the bench supplies.
// ---------------------------------------------------------------------------------------

/// An inner processor that does nothing but keep the ended span alive until the
/// optimiser cannot drop it.
#[derive(Debug)]
struct NoopProcessor;

impl SpanProcessor for NoopProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        black_box(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// The floor of any processor that reads a live span at start in SDK 0.33: it takes the
/// start copy (`Span::exported_data`, the only way to read a live span's name and
/// attributes) and drops it, then forwards like the audit processor does.
#[derive(Debug)]
struct CloneOnly<P>(P);

impl<P: SpanProcessor> SpanProcessor for CloneOnly<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        black_box(span.exported_data());
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}

/// An exporter that accepts every batch, counting the spans it is given (so that
/// spans the `BatchSpanProcessor` drops on a full queue can be reported).
#[derive(Debug, Clone, Default)]
struct NoopExporter {
    exported: Arc<AtomicU64>,
}

impl SpanExporter for NoopExporter {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.exported
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        black_box(batch);
        std::future::ready(Ok(()))
    }
}

fn provider(processor: impl SpanProcessor + 'static) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build()
}

fn audited<P: SpanProcessor>(inner: P) -> GenAiAuditProcessor<P> {
    let audit = GenAiAuditProcessor::builder(inner)
        .with_disabled(false)
        .build();
    assert!(audit.is_enabled());
    audit
}

fn bench_config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

// ---------------------------------------------------------------------------------------
// The traces.
// ---------------------------------------------------------------------------------------

/// Spans in one `passthrough` trace.
const PASSTHROUGH_SPANS: u64 = 4;

/// A web request: a server root and three database calls under it, four attributes
/// each (three static values and one owned string, as instrumentations write them),
/// none of them gen-ai.
fn passthrough_trace(tracer: &SdkTracer) {
    let root = tracer
        .span_builder("GET /orders/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/orders/{id}"),
            KeyValue::new("url.path", String::from("/orders/42")),
            KeyValue::new("http.response.status_code", 200),
        ])
        .start_with_context(tracer, &Context::new());
    let cx = Context::new().with_span(root);
    for (name, table) in [
        ("SELECT orders", "orders"),
        ("SELECT order_items", "order_items"),
        ("SELECT customers", "customers"),
    ] {
        let mut child = tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", "SELECT"),
                KeyValue::new("db.collection.name", table),
                KeyValue::new(
                    "db.query.text",
                    String::from("SELECT * FROM t WHERE id = $1"),
                ),
            ])
            .start_with_context(tracer, &cx);
        child.end();
    }
    cx.span().end();
}

/// Spans in one `agent_turn` trace: 1 invocation + 3 steps + 3 generations + 3 tools.
const AGENT_TURN_SPANS: u64 = 10;

/// One agent turn: an `invoke_agent` invocation, three `react step` spans, and in each
/// one priced generation (`chat gpt-4o`, usage set before end) and one tool call.
fn agent_turn_trace(tracer: &SdkTracer) {
    let invocation = tracer
        .span_builder("invoke_agent coder")
        .with_kind(SpanKind::Internal)
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", "coder"),
            KeyValue::new("gen_ai.provider.name", "openai"),
            KeyValue::new("gen_ai.conversation.id", String::from("conv-1")),
        ])
        .start_with_context(tracer, &Context::new());
    let inv_cx = Context::new().with_span(invocation);
    for round in 0..3i64 {
        let step = tracer
            .span_builder("react step")
            .with_attributes([KeyValue::new("gen_ai.react.round", round + 1)])
            .start_with_context(tracer, &inv_cx);
        let step_cx = inv_cx.with_span(step);

        let mut chat = tracer
            .span_builder("chat gpt-4o")
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.provider.name", "openai"),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
            ])
            .start_with_context(tracer, &step_cx);
        chat.set_attribute(KeyValue::new(
            "gen_ai.usage.input_tokens",
            1_000 + 250 * round,
        ));
        chat.set_attribute(KeyValue::new(
            "gen_ai.usage.output_tokens",
            120 + 30 * round,
        ));
        chat.end();

        let mut tool = tracer
            .span_builder("execute_tool read")
            .with_attributes([
                KeyValue::new("gen_ai.operation.name", "execute_tool"),
                KeyValue::new("gen_ai.tool.name", "read"),
            ])
            .start_with_context(tracer, &step_cx);
        tool.end();

        step_cx.span().end();
    }
    inv_cx.span().end();
}

// ---------------------------------------------------------------------------------------
// Sanity checks, outside the timing: the audit variants really do the work measured.
// ---------------------------------------------------------------------------------------

fn finished_spans(trace: fn(&SdkTracer)) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = provider(audited(SimpleSpanProcessor::new(exporter.clone())));
    trace(&provider.tracer("sanity"));
    let spans = exporter.get_finished_spans().expect("finished spans");
    provider.shutdown().expect("shutdown");
    spans
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    genai_audit::last_value(&span.attributes, key)
}

fn check_passthrough_is_untouched() {
    let spans = finished_spans(passthrough_trace);
    assert_eq!(spans.len() as u64, PASSTHROUGH_SPANS);
    for span in &spans {
        assert_eq!(span.attributes.len(), 4, "{} was edited", span.name);
    }
}

fn check_agent_turn_is_priced() {
    let spans = finished_spans(agent_turn_trace);
    assert_eq!(spans.len() as u64, AGENT_TURN_SPANS);
    for span in spans.iter().filter(|s| s.name == "chat gpt-4o") {
        assert!(
            matches!(attr(span, "genai_audit.cost_usd"), Some(Value::F64(c)) if *c > 0.0),
            "generation not priced"
        );
        assert_eq!(
            attr(span, "genai_audit.cost.model").map(|v| v.as_str()),
            Some("openai/gpt-4o".into())
        );
    }
    let invocation = spans
        .iter()
        .find(|s| s.name == "invoke_agent coder")
        .expect("invocation");
    assert_eq!(
        attr(invocation, "genai_audit.total.generations"),
        Some(&Value::I64(3))
    );
    assert_eq!(
        attr(invocation, "genai_audit.total.tool_calls"),
        Some(&Value::I64(3))
    );
    assert_eq!(attr(invocation, "genai_audit.steps"), Some(&Value::I64(3)));
}

// ---------------------------------------------------------------------------------------
// Groups 1 and 2: span pipelines.
// ---------------------------------------------------------------------------------------

fn bench_trace<M: criterion::measurement::Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    id: &str,
    provider: SdkTracerProvider,
    trace: fn(&SdkTracer),
) {
    let tracer = provider.tracer("overhead");
    group.bench_function(id, |b| b.iter(|| trace(&tracer)));
    provider.shutdown().expect("shutdown");
}

fn passthrough_noop(c: &mut Criterion) {
    check_passthrough_is_untouched();
    let mut group = c.benchmark_group("passthrough_noop");
    group.throughput(Throughput::Elements(PASSTHROUGH_SPANS));
    bench_trace(
        &mut group,
        "bare",
        provider(NoopProcessor),
        passthrough_trace,
    );
    bench_trace(
        &mut group,
        "clone_only",
        provider(CloneOnly(NoopProcessor)),
        passthrough_trace,
    );
    bench_trace(
        &mut group,
        "audit",
        provider(audited(NoopProcessor)),
        passthrough_trace,
    );
    group.finish();
}

/// Traces timed between two flushes of the `BatchSpanProcessor`: 1024 spans, half its
/// default queue (2048), so that the queue never overflows.
const BATCH_CHUNK: u64 = 256;

/// Times `iters` traces through a `BatchSpanProcessor` pipeline with its default
/// configuration, in chunks of [`BATCH_CHUNK`] traces with a `force_flush` between
/// chunks, outside the timing. Without the flushes the bench thread ends spans faster
/// than the processor's worker thread takes them off the queue, the queue fills and the
/// processor drops spans; a dropped span costs its producer less than a queued one, so
/// the variant that produces faster (the bare one) would be flattered. The dropped
/// spans are counted and printed: they should be 0.
fn bench_batch<M: criterion::measurement::Measurement<Value = Duration>>(
    group: &mut BenchmarkGroup<'_, M>,
    id: &str,
    audit: bool,
) {
    let exporter = NoopExporter::default();
    let exported = exporter.exported.clone();
    let batch = BatchSpanProcessor::builder(exporter).build();
    let provider = if audit {
        provider(audited(batch))
    } else {
        provider(batch)
    };
    let tracer = provider.tracer("overhead");
    let mut traces = 0u64;
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let chunk = left.min(BATCH_CHUNK);
                let start = Instant::now();
                for _ in 0..chunk {
                    passthrough_trace(black_box(&tracer));
                }
                elapsed += start.elapsed();
                provider.force_flush().expect("flush");
                left -= chunk;
            }
            traces += iters;
            elapsed
        })
    });
    provider.force_flush().expect("flush");
    provider.shutdown().expect("shutdown");
    let ended = traces * PASSTHROUGH_SPANS;
    let exported = exported.load(Ordering::Relaxed);
    if ended == 0 {
        return; // filtered out
    }
    eprintln!(
        "passthrough_batch/{id}: {exported} of {ended} spans exported, {} dropped",
        ended - exported,
    );
}

fn passthrough_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("passthrough_batch");
    group.throughput(Throughput::Elements(PASSTHROUGH_SPANS));
    bench_batch(&mut group, "bare", false);
    bench_batch(&mut group, "audit", true);
    group.finish();
}

fn agent_turn(c: &mut Criterion) {
    check_agent_turn_is_priced();
    let mut group = c.benchmark_group("agent_turn");
    group.throughput(Throughput::Elements(AGENT_TURN_SPANS));
    bench_trace(
        &mut group,
        "bare",
        provider(NoopProcessor),
        agent_turn_trace,
    );
    bench_trace(
        &mut group,
        "audit",
        provider(audited(NoopProcessor)),
        agent_turn_trace,
    );
    // The same with the metrics on: a real meter provider whose reader exports to
    // memory (its periodic export, once a minute by default, never runs in a sample).
    let meters = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
        .with_reader(
            opentelemetry_sdk::metrics::PeriodicReader::builder(
                opentelemetry_sdk::metrics::InMemoryMetricExporter::default(),
            )
            .build(),
        )
        .build();
    let with_metrics = GenAiAuditProcessor::builder(NoopProcessor)
        .with_disabled(false)
        .with_meter_provider(meters.clone())
        .build();
    bench_trace(
        &mut group,
        "audit_metrics",
        provider(with_metrics),
        agent_turn_trace,
    );
    group.finish();
    let _ = meters.shutdown();
}

// ---------------------------------------------------------------------------------------
// Group 3: pricing one call, memoised (`GenAiPrices` through `Pricer`) against a direct
// `genai_prices::calculate`. Here "bare" is the direct call and "audit" the memoised one.
// ---------------------------------------------------------------------------------------

/// 2025-10-09: gpt-4o is priced then.
fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_760_000_000)
}

const INPUT_TOKENS: u64 = 1_056;
const OUTPUT_TOKENS: u64 = 170;

/// The direct call, usage conversion included (the memoised path converts too).
fn direct_price(
    provider: &str,
    model: &str,
) -> genai_prices::Result<genai_prices::PriceCalculation> {
    let mut usage = genai_prices::Usage::new();
    usage.insert(genai_prices::UsageKey::INPUT_TOKENS, INPUT_TOKENS as f64);
    usage.insert(genai_prices::UsageKey::OUTPUT_TOKENS, OUTPUT_TOKENS as f64);
    let request = genai_prices::PriceRequest::new(model, &usage)
        .with_provider_id(provider)
        .with_timestamp(when());
    genai_prices::calculate(&request)
}

fn bench_pricing(c: &mut Criterion, group_name: &str, provider: &'static str, model: &'static str) {
    let prices = GenAiPrices::bundled();
    let usage = Usage::default()
        .with_input(INPUT_TOKENS)
        .with_output(OUTPUT_TOKENS);
    let query = PriceQuery::new(model, &usage, when()).with_provider(provider);
    // Both paths agree, bit for bit (and the memo is warm before the timing starts: the
    // first call resolves the model, the second derives its rates).
    let memoised = prices.price(&query);
    match (&memoised, direct_price(provider, model)) {
        (Some(m), Ok(d)) => assert_eq!(m.cost_usd, d.total_price, "{model}"),
        (None, Err(_)) => {}
        (m, d) => panic!("{model}: memoised {m:?} but direct {d:?}"),
    }
    assert_eq!(prices.price(&query), memoised);
    assert_eq!(prices.price(&query), memoised);

    let mut group = c.benchmark_group(group_name);
    group.bench_function("bare", |b| {
        b.iter(|| direct_price(black_box(provider), black_box(model)))
    });
    group.bench_function("audit", |b| b.iter(|| prices.price(black_box(&query))));
    group.finish();
}

fn pricing(c: &mut Criterion) {
    bench_pricing(c, "pricing_known", "openai", "gpt-4o");
    bench_pricing(c, "pricing_tiered", "anthropic", "claude-sonnet-4-5");
    bench_pricing(c, "pricing_unknown", "openai", "my-private-model");
}

// ---------------------------------------------------------------------------------------
// Group 4: `agent_turn` from several threads sharing one provider.
// ---------------------------------------------------------------------------------------

/// Agent turns each thread runs per iteration of the `threads` group.
const THREAD_TRACES: u64 = 64;

/// 1 and 2 threads, then powers of two up to the cores the machine has.
fn thread_counts() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1, 2];
    let mut threads = 4;
    while threads <= cores {
        counts.push(threads);
        threads *= 2;
    }
    counts
}

/// Which tracer the threads of the `threads` group start their spans on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracers {
    /// Each thread its own `provider.tracer(..)`, made before the timing.
    PerThread,
    /// All threads one tracer.
    Shared,
}

/// Runs `iters` iterations of [`THREAD_TRACES`] agent turns on each of `threads`
/// threads, all on `provider` (so through one processor). The time runs from the
/// moment the threads are released together (they are spawned, and their tracers made,
/// before the timing) until the last one has finished.
fn run_threads(
    provider: &SdkTracerProvider,
    tracers: Tracers,
    threads: usize,
    iters: u64,
) -> Duration {
    let traces = iters * THREAD_TRACES;
    let barrier = Barrier::new(threads + 1);
    let shared = provider.tracer("overhead");
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let own;
                    let tracer = match tracers {
                        Tracers::Shared => &shared,
                        Tracers::PerThread => {
                            own = provider.tracer("overhead");
                            &own
                        }
                    };
                    barrier.wait();
                    for _ in 0..traces {
                        agent_turn_trace(black_box(tracer));
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("bench thread");
        }
        start.elapsed()
    })
}

/// Two threads on one audited provider: every trace is exported and priced, and the
/// traces of one thread do not leak into the other's (no findings at all).
fn check_threads_share_one_provider() {
    let exporter = InMemorySpanExporter::default();
    let provider = provider(audited(SimpleSpanProcessor::new(exporter.clone())));
    run_threads(&provider, Tracers::PerThread, 2, 1);
    run_threads(&provider, Tracers::Shared, 2, 1);
    let spans = exporter.get_finished_spans().expect("finished spans");
    provider.shutdown().expect("shutdown");
    // Two runs of two threads.
    let traces = 2 * 2 * THREAD_TRACES;
    assert_eq!(spans.len() as u64, traces * AGENT_TURN_SPANS);
    for span in &spans {
        assert_eq!(attr(span, "genai_audit.findings"), None, "{}", span.name);
    }
    let invocations: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "invoke_agent coder")
        .collect();
    assert_eq!(invocations.len() as u64, traces);
    for invocation in invocations {
        assert_eq!(
            attr(invocation, "genai_audit.total.generations"),
            Some(&Value::I64(3))
        );
        assert_eq!(
            attr(invocation, "genai_audit.total.tool_calls"),
            Some(&Value::I64(3))
        );
    }
    let priced = spans
        .iter()
        .filter(|s| matches!(attr(s, "genai_audit.cost_usd"), Some(Value::F64(c)) if *c > 0.0))
        .count() as u64;
    assert_eq!(priced, traces * 3);
}

/// `agent_turn` from 1, 2, ... threads sharing one provider, bare and audited. One
/// iteration is [`THREAD_TRACES`] traces on each thread; throughput is in spans, so
/// criterion's spans/s compare across thread counts directly.
fn threads(c: &mut Criterion) {
    check_threads_share_one_provider();
    let mut group = c.benchmark_group("threads");
    for threads in thread_counts() {
        group.throughput(Throughput::Elements(
            threads as u64 * THREAD_TRACES * AGENT_TURN_SPANS,
        ));
        let mut variants = vec![
            ("bare", false, Tracers::PerThread),
            ("audit", true, Tracers::PerThread),
        ];
        if threads > 1 {
            variants.push(("bare_one_tracer", false, Tracers::Shared));
            variants.push(("audit_one_tracer", true, Tracers::Shared));
        }
        for (id, audit, tracers) in variants {
            let provider = if audit {
                provider(audited(NoopProcessor))
            } else {
                provider(NoopProcessor)
            };
            group.bench_with_input(BenchmarkId::new(id, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| run_threads(&provider, tracers, threads, iters))
            });
            provider.shutdown().expect("shutdown");
        }
    }
    group.finish();
    threads_interleaved();
}

/// Rounds of the interleaved scaling measurement (after one discarded round).
const INTERLEAVED_ROUNDS: usize = 100;

/// Whether this run of the binary is a `cargo bench` run that includes the `threads`
/// group (no filter, or a filter naming it): the interleaved measurement is skipped in
/// `cargo test --benches`, `--profile-time` runs and runs of other groups.
fn measuring_threads() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    args.iter().any(|a| a == "--bench")
        && !args.iter().any(|a| a == "--profile-time" || a == "--list")
        && (filters.is_empty() || filters.iter().any(|f| f.contains("threads")))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The scaling again, with bare and audit at 1 and 2 threads interleaved in short runs
/// (~20 ms each, the order rotating every round), so that a neighbour's load on this
/// shared 2-core machine hits all four alike; criterion measures the four one after
/// the other, seconds apart. Prints the medians over the rounds of each variant's
/// scaling (throughput at 2 threads / at 1) and of their ratio, with the quartiles.
fn threads_interleaved() {
    if !measuring_threads() {
        return;
    }
    let bare = provider(NoopProcessor);
    let audit = provider(audited(NoopProcessor));
    // Iterations of `THREAD_TRACES` traces a thread per run: ~20 ms at 1 thread.
    let runs = [(&bare, 128u64), (&audit, 16u64)];
    let mut scaling: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut ratio = Vec::new();
    for round in 0..=INTERLEAVED_ROUNDS {
        // Seconds per trace, [variant][threads - 1].
        let mut per_trace = [[0f64; 2]; 2];
        for k in 0..4 {
            let slot = (k + round) % 4;
            let (variant, threads) = (slot / 2, slot % 2 + 1);
            let (provider, iters) = runs[variant];
            let elapsed = run_threads(provider, Tracers::PerThread, threads, iters);
            per_trace[variant][threads - 1] =
                elapsed.as_secs_f64() / (iters * THREAD_TRACES * threads as u64) as f64;
        }
        if round == 0 {
            continue; // warm-up
        }
        let s = per_trace.map(|[one, two]| one / two);
        scaling[0].push(s[0]);
        scaling[1].push(s[1]);
        ratio.push(s[1] / s[0]);
    }
    bare.shutdown().expect("shutdown");
    audit.shutdown().expect("shutdown");
    let quartiles = |v: &mut Vec<f64>| {
        let m = median(v);
        (v[v.len() / 4], m, v[3 * v.len() / 4])
    };
    let (b, a, r) = (
        quartiles(&mut scaling[0]),
        quartiles(&mut scaling[1]),
        quartiles(&mut ratio),
    );
    eprintln!(
        "threads, interleaved ({INTERLEAVED_ROUNDS} rounds, median [q1, q3]): scaling 1 -> 2 \
         threads: bare {:.2} [{:.2}, {:.2}], audit {:.2} [{:.2}, {:.2}]; audit / bare \
         {:.2} [{:.2}, {:.2}]",
        b.1, b.0, b.2, a.1, a.0, a.2, r.1, r.0, r.2
    );
}

criterion_group! {
    name = benches;
    config = bench_config();
    targets = passthrough_noop, passthrough_batch, agent_turn, pricing, threads
}
criterion_main!(benches);
