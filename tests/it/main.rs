//! The integration tests, in one binary so that the heavy dev-dependencies (the real
//! clients, the OTLP exporter, tokio) are linked once. `tests/configuration.rs` stays a
//! binary of its own: it sets environment variables, which every processor built in
//! the same process would read.

#[cfg(feature = "cli")]
mod cli_support;
mod common;
mod http_support;
mod rig_support;
#[cfg(feature = "cli")]
mod serve_support;

mod bad_input;
mod budgets_and_metrics;
mod capacity;
#[cfg(feature = "cli")]
mod cli_bad_input;
#[cfg(feature = "cli")]
mod cli_costs;
#[cfg(feature = "cli")]
mod cli_exported_leaks;
#[cfg(feature = "cli")]
mod cli_properties;
#[cfg(feature = "cli")]
mod cli_recordings;
#[cfg(feature = "cli")]
mod cli_samples;
#[cfg(feature = "cli")]
mod cli_trust;
mod coding_agent_turn;
mod concurrent_agents;
mod contamination;
mod contamination_recorded;
mod conventions;
mod end_only;
mod engine_api;
#[cfg(feature = "cli")]
mod engine_equivalence;
mod finding_roles;
mod leaks;
mod metrics;
mod metrics_disabled;
mod otlp_example;
mod passthrough_and_forwarding;
mod properties;
#[cfg(feature = "cli")]
mod python_frameworks;
#[cfg(feature = "cli")]
mod python_recordings;
mod real_clients_genai;
mod real_clients_rig;
mod real_clients_rig_leak;
mod recorded_traces;
mod replay_example;
mod rollups;
mod script_format;
#[cfg(feature = "cli")]
mod serve;
#[cfg(feature = "cli")]
mod serve_operations;
mod tracing_bridge;
mod usage_and_cost;
mod wrapped_generations;
