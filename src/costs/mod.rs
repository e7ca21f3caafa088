//! Cost reports on audited spans (feature `cli`, for the `genai-audit` command):
//! breakdowns of calls, tokens and cost by agent, model, provider, trace, root,
//! session or user ([`Breakdown`]); what moved between two runs ([`Diff`]); the rates a
//! model is priced at ([`PriceReport`]); and the audit as one self-contained HTML page
//! ([`HtmlReport`]).
//!
//! Everything here reads [`ReportSpan`](crate::report::ReportSpan)s, the per-span
//! results the audit hands back one trace at a time, so each report is built in one
//! pass over the traces, in memory proportional to its groups (or, for the page, to
//! the traces it shows). Costs are summed exactly, as the report's total is.

mod breakdown;
mod context;
mod diff;
mod html;
mod prices;

pub use breakdown::{Breakdown, GroupBy, Row, Table, UnknownGrouping};
pub use diff::{
    change_pct, exceeds, Change, Diff, DiffGates, DiffInput, MatchedBy, Totals, OUTSIDE,
};
pub use html::{escape_html, replace_file, write_file_atomically, HtmlReport};
pub use prices::{load_prices, parse_time, PriceFileError, PriceReport, TimeError};
