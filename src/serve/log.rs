//! How `serve` tells its operator what happened: one line on standard error, prefixed
//! with the command's name, from every part of the server.

use std::fmt::Arguments;

/// Writes one line: `genai-audit serve: {message}`.
pub(crate) fn warn(message: Arguments<'_>) {
    eprintln!("genai-audit serve: {message}");
}
