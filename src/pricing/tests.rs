use super::*;
use std::time::{Duration, UNIX_EPOCH};

fn when() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_760_000_000)
}

fn direct(model: &str, provider: Option<&str>, usage: &Usage) -> f64 {
    let u = price_usage(usage);
    let mut r = PriceRequest::new(model, &u).with_timestamp(when());
    if let Some(p) = provider {
        r = r.with_provider_id(p);
    }
    genai_prices::calculate(&r).unwrap().total_price
}

#[test]
fn memoised_price_equals_direct_price() {
    let prices = GenAiPrices::bundled();
    let usage = Usage {
        input: Some(1056),
        output: Some(170),
        ..Usage::default()
    };
    let q = PriceQuery {
        provider: Some("anthropic"),
        model: "claude-sonnet-4-5",
        usage: &usage,
        time: when(),
    };
    let first = prices.price(&q).unwrap();
    let second = prices.price(&q).unwrap();
    assert_eq!(first, second);
    assert_eq!(
        first.cost_usd,
        direct("claude-sonnet-4-5", Some("anthropic"), &usage)
    );
    assert_eq!(&*first.matched, "anthropic/claude-sonnet-4-5");
}

#[test]
fn unknown_provider_is_dropped_and_model_picks() {
    let prices = GenAiPrices::bundled();
    let usage = Usage {
        input: Some(10),
        output: Some(10),
        ..Usage::default()
    };
    let q = PriceQuery {
        provider: Some("my-gateway"),
        model: "gpt-4o",
        usage: &usage,
        time: when(),
    };
    assert_eq!(&*prices.price(&q).unwrap().matched, "openai/gpt-4o");
}

#[test]
fn unknown_model_is_memoised_as_unknown() {
    let prices = GenAiPrices::bundled();
    let usage = Usage::default();
    let q = PriceQuery {
        provider: Some("dashscope"),
        model: "qwen-turbo-private",
        usage: &usage,
        time: when(),
    };
    assert!(prices.price(&q).is_none());
    assert!(prices.price(&q).is_none());
    assert_eq!(prices.memo.read().len, 1);
}

#[test]
fn provider_mapping() {
    for (raw, id) in [
        ("aws.bedrock", "aws"),
        ("gcp.vertex_ai", "google"),
        ("gcp.gen_ai", "google"),
        ("x_ai", "x-ai"),
        ("az.ai.inference", "azure"),
        ("mistral_ai", "mistral"),
        ("openai.responses", "openai"),
        ("google.vertex.chat", "google"),
        ("Anthropic", "anthropic"),
        ("dashscope", "dashscope"),
    ] {
        assert_eq!(price_provider_id(raw).as_deref(), Some(id), "{raw}");
    }
    assert_eq!(price_provider_id("  "), None);
}

#[test]
fn extra_price_with_cache_rates() {
    let p = ModelPrice::per_million(2.0, 8.0)
        .with_cache_read(0.5)
        .with_cache_write(2.5);
    let usage = Usage {
        input: Some(1_000_000),
        cache_read: Some(400_000),
        cache_write: Some(100_000),
        output: Some(500_000),
        ..Usage::default()
    };
    let expected = 0.5 * 2.0 + 0.4 * 0.5 + 0.1 * 2.5 + 0.5 * 8.0;
    assert!((p.cost(&usage) - expected).abs() < 1e-12);
}

#[test]
fn price_data_errors_keep_their_cause() {
    use std::error::Error as _;
    let missing = GenAiPrices::from_file("/nonexistent/prices.json").unwrap_err();
    assert_eq!(missing.path(), Some(Path::new("/nonexistent/prices.json")));
    let io = missing
        .source()
        .and_then(|e| e.downcast_ref::<std::io::Error>());
    assert_eq!(io.map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
    assert!(missing
        .to_string()
        .starts_with("/nonexistent/prices.json: cannot read"));
    let invalid = GenAiPrices::from_json("{not json").unwrap_err();
    assert!(invalid.source().is_none());
    assert!(invalid.path().is_none());
    assert!(invalid.to_string().starts_with("invalid price data"));
}
