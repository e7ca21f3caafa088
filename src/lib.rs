//! genai-audit
#![warn(missing_docs)]

mod audit;
pub mod config;
pub mod findings;
mod hashing;
pub mod keys;
mod ledger;
pub mod metrics;
pub mod pricing;
mod processor;
pub mod recognition;
pub mod script;
mod sdk_adapter;
mod span_attributes;
pub mod usage;

pub use config::{ContaminationPolicy, CostAttributes, LeakPolicy, Policy};
pub use findings::{Finding, FindingCode};
pub use pricing::{GenAiPrices, ModelPrice, Pricer};
pub use processor::{GenAiAuditProcessor, GenAiAuditProcessorBuilder};
pub use recognition::{Classifier, Role, RoleRule};
