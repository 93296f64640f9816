//! HuJSON ("JSON With Commas and Comments") parsing on top of `jsonc-parser`.
//!
//! `jsonc-parser` is more lenient than HuJSON in two ways that matter here: it can accept bare
//! object keys (turned off through its options) and it silently accepts a *missing* comma
//! between array elements or object members (`{"a": 1 "b": 2}`). Tailscale rejects the latter,
//! and a simulator that accepted it would hide exactly the kind of bug a policy writer can
//! have, so [`parse`] checks separators on the token stream itself.

use jsonc_parser::common::Range;
use jsonc_parser::tokens::{Token, TokenAndRange};
use jsonc_parser::{CollectOptions, CommentCollectionStrategy, ParseOptions};

/// Parse HuJSON text to a JSON value; errors read `line N, column M: <reason>`.
pub fn parse(text: &str) -> Result<serde_json::Value, String> {
    let collect = CollectOptions {
        comments: CommentCollectionStrategy::Off,
        tokens: true,
    };
    let options = ParseOptions {
        allow_comments: true,
        allow_loose_object_property_names: false,
        allow_trailing_commas: true,
    };
    let parsed = jsonc_parser::parse_to_ast(text, &collect, &options).map_err(|err| {
        format!(
            "line {}, column {}: {}",
            err.line_display(),
            err.column_display(),
            err.kind()
        )
    })?;
    if let Some(tokens) = &parsed.tokens {
        check_separators(tokens)
            .map_err(|(range, reason)| format!("{}: {reason}", position(text, range)))?;
    }
    match parsed.value {
        Some(value) => Ok(value.into()),
        None => Err("line 1, column 1: policy file is empty".to_string()),
    }
}

/// `line N, column M` (1-based, columns in characters) of a byte range's start.
fn position(text: &str, range: Range) -> String {
    let before = text.get(..range.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    format!("line {line}, column {column}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// In an object; `true` while the next string token is a member name.
    Object {
        expect_key: bool,
    },
    Array,
}

/// Find a value that follows another value in the same container without a comma.
///
/// Runs only on text the parser accepted, so brackets are balanced and keys are followed by
/// colons; all that is left to check is that a comma separates consecutive entries.
fn check_separators(tokens: &[TokenAndRange<'_>]) -> Result<(), (Range, &'static str)> {
    let mut stack: Vec<Frame> = Vec::new();
    // True right after an entry (member value or element) ended.
    let mut need_comma = false;
    for t in tokens {
        match &t.token {
            Token::Comma => {
                need_comma = false;
                if let Some(Frame::Object { expect_key }) = stack.last_mut() {
                    *expect_key = true;
                }
            }
            Token::Colon | Token::CommentLine(_) | Token::CommentBlock(_) => {}
            Token::CloseBrace | Token::CloseBracket => {
                stack.pop();
                need_comma = !stack.is_empty();
            }
            opening_or_scalar => {
                if need_comma {
                    return Err((t.range, "expected comma before this value"));
                }
                match stack.last_mut() {
                    Some(Frame::Object { expect_key }) if *expect_key => {
                        // A member name; its value follows the colon.
                        *expect_key = false;
                        continue;
                    }
                    _ => {}
                }
                match opening_or_scalar {
                    Token::OpenBrace => stack.push(Frame::Object { expect_key: true }),
                    Token::OpenBracket => stack.push(Frame::Array),
                    _ => need_comma = !stack.is_empty(),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_hujson() {
        let text = "// top\n{\n  \"a\": [1, {\"b\": null}, [],], /* c */\n  \"d\": {},\n}\n";
        assert_eq!(
            parse(text).expect("valid"),
            json!({"a": [1, {"b": null}, []], "d": {}})
        );
        assert_eq!(parse("[]").expect("valid"), json!([]));
        assert_eq!(parse("\"x\"").expect("valid"), json!("x"));
    }

    #[test]
    fn rejects_missing_commas_with_position() {
        assert_eq!(
            parse("{\"a\": 1\n \"b\": 2}").unwrap_err(),
            "line 2, column 2: expected comma before this value"
        );
        assert_eq!(
            parse("[1 2]").unwrap_err(),
            "line 1, column 4: expected comma before this value"
        );
        assert!(parse("{\"a\": {} \"b\": []}").is_err());
        assert!(parse("[[1] [2]]").is_err());
        assert!(parse("[{} {}]").is_err());
    }

    #[test]
    fn rejects_json5_extensions() {
        assert!(parse("{a: 1}").is_err());
        assert!(parse("").unwrap_err().contains("empty"));
    }
}
