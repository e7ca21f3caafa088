//! The provider a model id names by its shape (`DESIGN.md` §4), for calls whose
//! provider attribute is absent or names no provider of the price data (a framework's
//! name such as `strands-agents`).

/// Bedrock's cross-region inference prefixes (`us.anthropic.claude-…`).
const BEDROCK_REGIONS: [&str; 8] = ["us", "eu", "apac", "global", "jp", "au", "ca", "us-gov"];

/// The model vendors of Bedrock model ids (`<vendor>.<model>`).
const BEDROCK_VENDORS: [&str; 16] = [
    "anthropic",
    "amazon",
    "meta",
    "mistral",
    "cohere",
    "ai21",
    "deepseek",
    "openai",
    "qwen",
    "google",
    "nvidia",
    "writer",
    "twelvelabs",
    "stability",
    "moonshot",
    "minimax",
];

/// What a model id's shape says: the provider to look it up under (a name as spans
/// write it, mapped to the price data like `gen_ai.provider.name`) and the model id
/// to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape<'a> {
    /// The provider the shape names: `aws` for Bedrock ids, `google` for Vertex
    /// resource names, the prefix of a `provider/model` id.
    pub provider: &'a str,
    /// The model to look up under it: the Bedrock id as is (the price data knows the
    /// cross-region prefixes), the last segment of a Vertex resource name, what
    /// follows the `provider/` prefix.
    pub model: &'a str,
}

/// The provider a model id names by its shape, or `None` when its shape names none.
///
/// - Bedrock ids, with or without a cross-region prefix (`us.`, `eu.`, `apac.`,
///   `global.`, `jp.`, `au.`, `ca.`, `us-gov.`), and Bedrock ARNs ending in one:
///   `aws`.
/// - Vertex AI resource names (`publishers/google/models/gemini-2.5-flash`,
///   `projects/p/locations/l/publishers/google/models/…`, `projects/p/models/…`):
///   `google`, and the segment after the last `models/`.
/// - `provider/model` ids (OpenRouter, LiteLLM: `openai/gpt-4o-mini`): the prefix,
///   and the rest.
///
/// ```
/// use genai_audit::pricing::{model_shape, ModelShape};
/// assert_eq!(
///     model_shape("us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
///     Some(ModelShape { provider: "aws", model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0" }),
/// );
/// assert_eq!(
///     model_shape("publishers/google/models/gemini-2.5-flash"),
///     Some(ModelShape { provider: "google", model: "gemini-2.5-flash" }),
/// );
/// assert_eq!(
///     model_shape("openai/gpt-4o-mini"),
///     Some(ModelShape { provider: "openai", model: "gpt-4o-mini" }),
/// );
/// assert_eq!(model_shape("gpt-4o-mini"), None);
/// assert_eq!(model_shape("gpt-4.1"), None);
/// ```
pub fn model_shape(model: &str) -> Option<ModelShape<'_>> {
    let model = model.trim();
    if model.is_empty() {
        return None;
    }
    if let Some(id) = model.strip_prefix("arn:aws:bedrock:") {
        let id = id.rsplit('/').next().unwrap_or(id);
        return is_bedrock(id).then_some(ModelShape {
            provider: "aws",
            model: id,
        });
    }
    if is_bedrock(model) {
        return Some(ModelShape {
            provider: "aws",
            model,
        });
    }
    let lower_has = |needle: &str| {
        model
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
    };
    let starts = |prefix: &str| {
        model
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    if (starts("publishers/") || starts("projects/")) && lower_has("models/") {
        let at = model
            .to_ascii_lowercase()
            .rfind("models/")
            .map(|at| at + "models/".len())?;
        let id = model
            .get(at..)
            .filter(|id| !id.is_empty() && !id.contains('/'))?;
        return Some(ModelShape {
            provider: "google",
            model: id,
        });
    }
    let (provider, rest) = model.split_once('/')?;
    (!provider.is_empty() && !rest.is_empty()).then_some(ModelShape {
        provider,
        model: rest,
    })
}

/// `[region.]vendor.model`, the vendor one of Bedrock's.
fn is_bedrock(id: &str) -> bool {
    let is = |list: &[&str], part: &str| list.iter().any(|v| v.eq_ignore_ascii_case(part));
    let model_ok = |m: &str| !m.is_empty() && !m.contains('/');
    let Some((first, rest)) = id.split_once('.') else {
        return false;
    };
    if is(&BEDROCK_REGIONS, first) {
        return rest
            .split_once('.')
            .is_some_and(|(vendor, model)| is(&BEDROCK_VENDORS, vendor) && model_ok(model));
    }
    is(&BEDROCK_VENDORS, first) && model_ok(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(model: &str) -> Option<(&str, &str)> {
        model_shape(model).map(|s| (s.provider, s.model))
    }

    #[test]
    fn bedrock_ids_with_and_without_a_cross_region_prefix() {
        for id in [
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "apac.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "us.amazon.nova-pro-v1:0",
            "amazon.nova-pro-v1:0",
            "meta.llama3-1-70b-instruct-v1:0",
        ] {
            assert_eq!(shape(id), Some(("aws", id)), "{id}");
        }
        assert_eq!(
            shape("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            Some(("aws", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"))
        );
        // An application inference profile's ARN does not name the model.
        assert_eq!(
            shape("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"),
            None
        );
    }

    #[test]
    fn vertex_resource_names() {
        assert_eq!(
            shape("publishers/google/models/gemini-2.5-flash"),
            Some(("google", "gemini-2.5-flash"))
        );
        assert_eq!(
            shape("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash"),
            Some(("google", "gemini-2.5-flash"))
        );
        assert_eq!(
            shape("projects/p/locations/us-central1/models/1234"),
            Some(("google", "1234"))
        );
        assert_eq!(shape("publishers/google/models/"), None);
    }

    #[test]
    fn provider_slash_model_ids() {
        assert_eq!(shape("openai/gpt-4o-mini"), Some(("openai", "gpt-4o-mini")));
        assert_eq!(
            shape("anthropic/claude-sonnet-4-5"),
            Some(("anthropic", "claude-sonnet-4-5"))
        );
        assert_eq!(
            shape("openrouter/anthropic/claude-sonnet-4.5"),
            Some(("openrouter", "anthropic/claude-sonnet-4.5"))
        );
        assert_eq!(shape("/gpt-4o"), None);
        assert_eq!(shape("openai/"), None);
    }

    #[test]
    fn other_ids_have_no_shape() {
        for id in [
            "",
            "  ",
            "gpt-4o-mini",
            "gpt-4.1",
            "claude-sonnet-4-5",
            "fake-model-1",
            "us.fake-model",
            "anthropic.",
            "us.anthropic",
            "nova.pro",
        ] {
            assert_eq!(shape(id), None, "{id:?}");
        }
    }

    #[test]
    fn non_ascii_ids_are_read_without_panic() {
        assert_eq!(shape("ü.anthropic.claude"), None);
        assert_eq!(shape("us.änthropic.claude"), None);
        assert_eq!(
            shape("publishers/ü/models/gémini"),
            Some(("google", "gémini"))
        );
        assert_eq!(
            shape("PUBLISHERS/google/MODELS/gemini-2.5-flash"),
            Some(("google", "gemini-2.5-flash"))
        );
        assert_eq!(shape("é/ü"), Some(("é", "ü")));
        assert_eq!(shape("arn:aws:bedrock:ü/ß"), None);
    }
}
