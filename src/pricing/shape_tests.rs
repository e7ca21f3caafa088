//! Provider inference from the model id's shape, with the prices the bundled data
//! gives (a million input and a million output tokens, on 2025-10-09).
use super::*;
use std::time::{Duration, UNIX_EPOCH};

const SONNET_REGIONAL: &str = "aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0";

/// (provider attribute, model id, matched price, cost of 1M input + 1M output).
const PRICED: [(Option<&str>, &str, &str, f64); 16] = [
    (
        None,
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        SONNET_REGIONAL,
        19.8,
    ),
    (
        Some("strands-agents"),
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        SONNET_REGIONAL,
        19.8,
    ),
    (
        Some("aws"),
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        SONNET_REGIONAL,
        19.8,
    ),
    (
        None,
        "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        SONNET_REGIONAL,
        19.8,
    ),
    (
        None,
        "apac.anthropic.claude-sonnet-4-5-20250929-v1:0",
        SONNET_REGIONAL,
        19.8,
    ),
    (
        None,
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "aws/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        18.0,
    ),
    (
        None,
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        "aws/regional.anthropic.claude-3-5-haiku-20241022-v1:0",
        4.8,
    ),
    (
        None,
        "us.amazon.nova-pro-v1:0",
        "aws/amazon.nova-pro-v1:0",
        4.0,
    ),
    (
        Some("strands-agents"),
        "amazon.nova-pro-v1:0",
        "aws/amazon.nova-pro-v1:0",
        4.0,
    ),
    (
        None,
        "publishers/google/models/gemini-2.5-flash",
        "google/gemini-2.5-flash",
        2.8,
    ),
    (
        None,
        "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash",
        "google/gemini-2.5-flash",
        2.8,
    ),
    (None, "openai/gpt-4o-mini", "openai/gpt-4o-mini", 0.75),
    // A provider that knows the id only without its prefix.
    (
        Some("openai"),
        "openai/gpt-4o-mini",
        "openai/gpt-4o-mini",
        0.75,
    ),
    (
        Some("dspy"),
        "openai/gpt-4o-mini",
        "openai/gpt-4o-mini",
        0.75,
    ),
    // A million input tokens is the long-context tier: $6 and $22.50.
    (
        None,
        "anthropic/claude-sonnet-4-5",
        "anthropic/claude-sonnet-4-5",
        28.5,
    ),
    // `openrouter/…` names OpenRouter, whose ids are `provider/model`.
    (
        None,
        "openrouter/openai/gpt-4o-mini",
        "openrouter/openai/gpt-4o-mini",
        0.75,
    ),
];

fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_760_000_000)
}

fn query<'a>(provider: Option<&'a str>, model: &'a str, usage: &'a Usage) -> PriceQuery<'a> {
    let q = PriceQuery::new(model, usage, when());
    match provider {
        Some(p) => q.with_provider(p),
        None => q,
    }
}

#[test]
fn ids_that_name_their_provider_are_priced_as_its_models() {
    let prices = GenAiPrices::bundled();
    let usage = Usage::default()
        .with_input(1_000_000)
        .with_output(1_000_000);
    for (provider, model, matched, cost) in PRICED {
        // Twice: the memoised price is the first one.
        for _ in 0..2 {
            let price = prices.price(&query(provider, model, &usage));
            let price = price.unwrap_or_else(|| panic!("{provider:?} {model}: unpriced"));
            assert_eq!(&*price.matched, matched, "{provider:?} {model}");
            assert!(
                (price.cost_usd - cost).abs() < 1e-9,
                "{provider:?} {model}: {}",
                price.cost_usd
            );
        }
        // The rate card (`genai-audit prices`) takes the same path.
        let card = prices.rate_card(provider, model, when());
        let card = card.unwrap_or_else(|| panic!("{provider:?} {model}: no card"));
        assert_eq!(card.matched, matched, "{provider:?} {model}");
    }
}

#[test]
fn shaped_prices_equal_the_price_datas_own() {
    // The price of a few usages through the memo (after a warm-up) equals what
    // genai-prices gives for the request the shape makes.
    let prices = GenAiPrices::bundled();
    let warm = Usage::default().with_input(1).with_output(1);
    for (model, provider_id, request_model) in [
        (
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ),
        (
            "publishers/google/models/gemini-2.5-flash",
            "google",
            "gemini-2.5-flash",
        ),
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        (
            "anthropic/claude-sonnet-4-5",
            "anthropic",
            "claude-sonnet-4-5",
        ),
    ] {
        let _ = prices.price(&query(None, model, &warm));
        for usage in [
            Usage::default().with_input(1056).with_output(170),
            Usage::default().with_input(300_000).with_output(5),
            Usage::default()
                .with_input(5000)
                .with_cache_read(4000)
                .with_output(10),
        ] {
            let memoised = prices
                .price(&query(None, model, &usage))
                .map(|p| p.cost_usd);
            let u = price_usage(&usage);
            let request = PriceRequest::new(request_model, &u)
                .with_timestamp(when())
                .with_provider_id(provider_id);
            let direct = genai_prices::calculate(&request)
                .map(|c| c.total_price)
                .ok();
            assert_eq!(memoised, direct, "{model} {usage:?}");
        }
    }
}

#[test]
fn fake_and_unknown_ids_stay_unpriced() {
    let prices = GenAiPrices::bundled();
    let usage = Usage::default().with_input(1000).with_output(100);
    for (provider, model) in [
        (None, "fake-model-1"),
        (Some("strands-agents"), "fake-model-1"),
        (None, "us.anthropic.claude-fake-9-v1:0"),
        (None, "amazon.fake-model-v1:0"),
        (None, "publishers/google/models/fake-model"),
        (None, "openai/fake-model"),
        (None, "no-such-provider/gpt-4o-mini-fake"),
        (Some("openai"), "anthropic/fake-model"),
        (None, "publishers/google/models/"),
        (None, "/"),
    ] {
        assert_eq!(
            prices.price(&query(provider, model, &usage)),
            None,
            "{model}"
        );
        assert_eq!(prices.rate_card(provider, model, when()), None, "{model}");
    }
}

#[test]
fn a_provider_that_knows_the_model_wins_over_the_shape() {
    // `google` knows Claude on Vertex: a span that says so is priced there, not as
    // the `anthropic/` prefix would.
    let prices = GenAiPrices::bundled();
    let usage = Usage::default().with_input(1000).with_output(100);
    let price = prices.price(&query(Some("gcp.vertex_ai"), "claude-sonnet-4-5", &usage));
    assert_eq!(
        price.map(|p| p.matched.to_string()).as_deref(),
        Some("google/claude-sonnet-4-5")
    );
    // The provider the span names, when it resolves, is asked first.
    let price = prices.price(&query(
        Some("aws.bedrock"),
        "us.amazon.nova-pro-v1:0",
        &usage,
    ));
    assert_eq!(
        price.map(|p| p.matched.to_string()).as_deref(),
        Some("aws/amazon.nova-pro-v1:0")
    );
}
