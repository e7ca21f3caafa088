//! One trace's spans as a tree: each span's parent, its invocation, its root, and what
//! it inherits (session, user) from the nearest ancestor that carries it.

use std::borrow::Cow;
use std::collections::HashMap;

use opentelemetry::trace::SpanId;

use crate::report::ReportSpan;

/// Shown where a group has no name: a call without agent, model, session, ...
pub(crate) const NONE: &str = "(none)";

/// One trace's spans with their parents resolved (a span whose parent is absent, itself,
/// or a cycle back to it, is a root).
pub(crate) struct TraceView<'a> {
    pub(crate) spans: &'a [ReportSpan],
    /// The parent's place in `spans`.
    parent: Vec<Option<u32>>,
}

impl<'a> TraceView<'a> {
    pub(crate) fn new(spans: &'a [ReportSpan]) -> TraceView<'a> {
        let mut ids: HashMap<SpanId, u32> = HashMap::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            ids.entry(span.span_id).or_insert(i as u32);
        }
        let mut parent: Vec<Option<u32>> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| {
                let p = *ids.get(&span.parent_span_id)?;
                (span.parent_span_id != SpanId::INVALID && p as usize != i).then_some(p)
            })
            .collect();
        // Break parent cycles: a walk longer than the trace is a cycle.
        for i in 0..spans.len() {
            let mut at = i;
            let mut steps = 0;
            while let Some(p) = parent[at] {
                steps += 1;
                if steps > spans.len() {
                    parent[at] = None;
                    break;
                }
                at = p as usize;
            }
        }
        TraceView { spans, parent }
    }

    /// The parent's place.
    pub(crate) fn parent(&self, i: usize) -> Option<usize> {
        self.parent[i].map(|p| p as usize)
    }

    /// The span and then its ancestors, nearest first.
    pub(crate) fn up(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(i), move |&at| self.parent(at))
    }

    /// The nearest invocation above the span (not the span itself).
    pub(crate) fn invocation_of(&self, i: usize) -> Option<usize> {
        self.up(i)
            .skip(1)
            .find(|&a| self.spans[a].role.as_deref() == Some("invocation"))
    }

    /// The nearest invocation: the span itself when it is one, else above it.
    pub(crate) fn own_invocation(&self, i: usize) -> Option<usize> {
        self.up(i)
            .find(|&a| self.spans[a].role.as_deref() == Some("invocation"))
    }

    /// The root above the span (the span itself when it is a root).
    pub(crate) fn root_of(&self, i: usize) -> usize {
        self.up(i).last().unwrap_or(i)
    }

    /// The first value `get` finds on the span or its nearest ancestor.
    pub(crate) fn inherited<'s>(
        &'s self,
        i: usize,
        get: impl Fn(&'s ReportSpan) -> Option<&'s str>,
    ) -> Option<&'s str> {
        self.up(i).find_map(|a| get(&self.spans[a]))
    }

    /// The agent a call belongs to: its invocation's agent name, else the call's own
    /// `gen_ai.agent.name`, else its invocation's name ([`agent_label`]).
    pub(crate) fn agent_of(&self, i: usize) -> Option<Cow<'a, str>> {
        let spans: &'a [ReportSpan] = self.spans;
        let invocation = self.invocation_of(i).map(|v| &spans[v]);
        invocation
            .and_then(|v| v.agent_name.as_deref())
            .or(spans[i].agent_name.as_deref())
            .map(Cow::Borrowed)
            .or_else(|| invocation.map(agent_label))
    }
}

/// What an invocation is called in reports: its agent name, else its span name without
/// the conventions' prefixes (`invoke_agent coder` → `coder`, Mastra's
/// `agent run: 'weather-agent'` → `weather-agent`).
pub(crate) fn agent_label(invocation: &ReportSpan) -> Cow<'_, str> {
    if let Some(name) = invocation.agent_name.as_deref() {
        return Cow::Borrowed(name);
    }
    let name = invocation.name.trim();
    let bare = if let Some(rest) = name.strip_prefix("invoke_agent") {
        rest.trim()
    } else if let Some(rest) = name.strip_prefix("agent run:") {
        rest.trim().trim_matches('\'')
    } else {
        name
    };
    Cow::Borrowed(if bare.is_empty() { name } else { bare })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceId;
    use opentelemetry::KeyValue;

    use super::*;

    fn span(id: u64, parent: u64, name: &str, attributes: &[KeyValue]) -> ReportSpan {
        ReportSpan::new(
            TraceId::from(1u128),
            SpanId::from(id),
            SpanId::from(parent),
            name,
            id,
            attributes,
        )
    }

    #[test]
    fn invocation_root_inherited_and_agent() {
        let invocation = [
            KeyValue::new("genai_audit.role", "invocation"),
            KeyValue::new("gen_ai.conversation.id", "s1"),
        ];
        let call = [KeyValue::new("genai_audit.role", "generation")];
        let spans = vec![
            span(1, 0, "root", &[KeyValue::new("user.id", "u1")]),
            span(2, 1, "invoke_agent coder", &invocation),
            span(3, 2, "step", &[]),
            span(4, 3, "chat", &call),
            span(5, 4, "cycle", &[]),
        ];
        let view = TraceView::new(&spans);
        assert_eq!(view.invocation_of(3), Some(1));
        assert_eq!(view.invocation_of(1), None);
        assert_eq!(view.own_invocation(1), Some(1));
        assert_eq!(view.root_of(3), 0);
        assert_eq!(view.inherited(3, |s| s.session_id.as_deref()), Some("s1"));
        assert_eq!(view.inherited(3, |s| s.user_id.as_deref()), Some("u1"));
        assert_eq!(view.agent_of(3).as_deref(), Some("coder"));
        assert_eq!(view.agent_of(0), None);
    }

    #[test]
    fn cycles_and_self_parents_are_roots() {
        let spans = vec![
            span(1, 2, "a", &[]),
            span(2, 1, "b", &[]),
            span(3, 3, "c", &[]),
        ];
        let view = TraceView::new(&spans);
        assert_eq!(view.parent(2), None);
        // The walk ends: one of the two is a root.
        assert!(view.parent(0).is_none() || view.parent(1).is_none());
        let _ = view.root_of(0);
    }

    #[test]
    fn labels_of_invocations() {
        let role = [KeyValue::new("genai_audit.role", "invocation")];
        assert_eq!(
            agent_label(&span(1, 0, "invoke_agent coder", &role)),
            "coder"
        );
        assert_eq!(agent_label(&span(1, 0, "agent run: 'w-a'", &role)), "w-a");
        assert_eq!(
            agent_label(&span(1, 0, "invoke_agent", &role)),
            "invoke_agent"
        );
        let named = [
            KeyValue::new("genai_audit.role", "invocation"),
            KeyValue::new("gen_ai.agent.name", "planner"),
        ];
        assert_eq!(
            agent_label(&span(1, 0, "invoke_agent x", &named)),
            "planner"
        );
    }
}
