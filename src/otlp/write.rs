//! Writing OTLP JSON.

use std::io::{self, Write};

use super::read::Request;

/// Writes each request as one line of OTLP JSON (the OTLP crate's serde mapping:
/// hex ids, lowerCamelCase, 64-bit integers as strings).
pub fn write_requests(out: &mut dyn Write, requests: &[Request]) -> io::Result<()> {
    for request in requests {
        serde_json::to_writer(&mut *out, &request.request).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
