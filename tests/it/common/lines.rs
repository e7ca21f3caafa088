//! Trace-script lines for tests that write their scripts in code: times are
//! milliseconds after [`T0`], attributes the members of a JSON object (`"k":v,...`).

/// The time of every script's millisecond 0, in nanoseconds since the Unix epoch.
pub const T0: u64 = 1_800_000_000_000_000_000;

/// `ms` milliseconds after [`T0`], in nanoseconds.
pub fn at(ms: u64) -> u64 {
    T0 + ms * 1_000_000
}

/// A `start` line (with these start attributes; none when empty).
pub fn start(span: &str, parent: Option<&str>, name: &str, attributes: &str, ms: u64) -> String {
    let parent = parent.map_or("null".to_owned(), |p| format!("\"{p}\""));
    format!(
        r#"{{"op":"start","span":"{span}","parent":{parent},"name":"{name}","time_ns":{},"attributes":{{{attributes}}}}}"#,
        at(ms)
    )
}

/// A `set` line with these attributes (none when empty), then an `end` line.
pub fn end(span: &str, attributes: &str, ms: u64) -> String {
    let set = if attributes.is_empty() {
        String::new()
    } else {
        format!(r#"{{"op":"set","span":"{span}","attributes":{{{attributes}}}}}"#) + "\n"
    };
    format!(
        r#"{set}{{"op":"end","span":"{span}","time_ns":{}}}"#,
        at(ms)
    )
}

/// The attributes of an OpenAI chat call of `model` with this usage.
pub fn chat(model: &str, input: u64, output: u64) -> String {
    format!(
        r#""gen_ai.operation.name":"chat","gen_ai.provider.name":"openai","gen_ai.request.model":"{model}","gen_ai.usage.input_tokens":{input},"gen_ai.usage.output_tokens":{output}"#
    )
}
