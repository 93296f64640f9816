//! A lossless HuJSON reader: JSON plus `//` and `/* */` comments and trailing commas.
//!
//! It does not build a value; it records where every value, key, comma, bracket and ownership
//! marker sits in the text, so that edits can be expressed as byte ranges of the original and
//! everything else is left alone. Whitespace is never tokenized: two adjacent tokens are
//! separated by whitespace only, which is what "a marker belongs to the item immediately before
//! it" relies on.

use super::PolicyFileError;

use super::Owner;

/// Nesting deeper than this is refused rather than risking the stack on a hostile file.
const MAX_DEPTH: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug)]
pub(crate) struct Value {
    pub span: Span,
    pub node: Node,
}

#[derive(Debug)]
pub(crate) enum Node {
    Object(Container),
    Array(Container),
    /// A string, number, `true`, `false` or `null`: its text is valid JSON on its own.
    Scalar,
}

/// An object or array: where its brackets are and the items between them.
#[derive(Debug)]
pub(crate) struct Container {
    /// Byte offset of `{` or `[`.
    pub open: usize,
    /// Byte offset of `}` or `]`.
    pub close: usize,
    pub items: Vec<Item>,
}

/// An array element or an object property.
#[derive(Debug)]
pub(crate) struct Item {
    /// Where the item starts: the key of a property, the value of an element.
    pub start: usize,
    pub key: Option<Key>,
    pub value: Value,
    /// The comma that follows the item (possibly after comments), if any.
    pub comma: Option<usize>,
    /// The ownership marker that belongs to this item, if any.
    pub marker: Option<Marker>,
}

impl Item {
    /// Whether `owner` wrote this item: marked, and by that owner's marker.
    pub fn owned_by(&self, owner: &Owner) -> bool {
        self.marker
            .as_ref()
            .is_some_and(|marker| match &marker.owner {
                MarkerOwner::Id(id) => id == owner.id(),
                MarkerOwner::Legacy => false,
            })
    }

    /// Whether this item counts as present for `owner`: a human's (unmarked) or its own. Another
    /// owner's copy does not count, since that owner may remove it at any time.
    pub fn present_for(&self, owner: &Owner) -> bool {
        self.marker.is_none() || self.owned_by(owner)
    }
}

/// An ownership marker: a block comment `/* tailkeeper:<id> */` (or the bare legacy
/// `/* tailkeeper */`) right after an item.
#[derive(Debug)]
pub(crate) struct Marker {
    pub span: Span,
    pub owner: MarkerOwner,
}

/// Whose marker it is, as written in the comment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MarkerOwner {
    /// The bare `tailkeeper` of files written before markers named their owner: the owner is
    /// unknown, so nobody may treat the item as its own.
    Legacy,
    /// The text after `tailkeeper:`, as written; only a valid id can equal an [`Owner`].
    Id(String),
}

impl MarkerOwner {
    /// The owner named by a block comment's body, or `None` when the comment is no marker.
    fn from_comment_body(body: &str) -> Option<MarkerOwner> {
        let body = body.trim();
        if body == "tailkeeper" {
            return Some(MarkerOwner::Legacy);
        }
        body.strip_prefix("tailkeeper:")
            .map(|id| MarkerOwner::Id(id.to_string()))
    }
}

#[derive(Debug)]
pub(crate) struct Key {
    pub name: String,
}

impl Value {
    pub fn as_object(&self) -> Option<&Container> {
        match &self.node {
            Node::Object(container) => Some(container),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Container> {
        match &self.node {
            Node::Array(container) => Some(container),
            _ => None,
        }
    }

    /// The decoded string, when this value is a string.
    pub fn as_str(&self, text: &str) -> Option<String> {
        let source = &text[self.span.start..self.span.end];
        if matches!(self.node, Node::Scalar) && source.starts_with('"') {
            serde_json::from_str(source).ok()
        } else {
            None
        }
    }

    /// The JSON meaning of this value. `None` only for numbers serde_json cannot represent
    /// (e.g. `1e400`), which then simply never compare equal to anything.
    pub fn to_json(&self, text: &str) -> Option<serde_json::Value> {
        match &self.node {
            Node::Scalar => serde_json::from_str(&text[self.span.start..self.span.end]).ok(),
            Node::Array(container) => container
                .items
                .iter()
                .map(|item| item.value.to_json(text))
                .collect::<Option<Vec<_>>>()
                .map(serde_json::Value::Array),
            Node::Object(container) => {
                let mut map = serde_json::Map::new();
                for item in &container.items {
                    let key = item
                        .key
                        .as_ref()
                        .map(|key| key.name.clone())
                        .unwrap_or_default();
                    map.insert(key, item.value.to_json(text)?);
                }
                Some(serde_json::Value::Object(map))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    OpenBrace,
    CloseBrace,
    OpenBracket,
    CloseBracket,
    Comma,
    Colon,
    String,
    Number,
    Word,
    LineComment,
    BlockComment,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: TokenKind,
    start: usize,
    end: usize,
}

impl Token {
    fn is_comment(&self) -> bool {
        matches!(self.kind, TokenKind::LineComment | TokenKind::BlockComment)
    }
}

/// Parses a whole HuJSON document into its root value.
pub(crate) fn parse(text: &str) -> Result<Value, PolicyFileError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        next: 0,
    };
    let root = parser.value(0)?;
    if let Some(token) = parser.peek_significant() {
        return Err(parse_error(
            text,
            token.start,
            "unexpected content after the end of the document",
        ));
    }
    Ok(root)
}

/// Builds a `Parse` error for a byte offset: 1-based line, 1-based column counted in characters.
pub(crate) fn parse_error(
    text: &str,
    offset: usize,
    message: impl Into<String>,
) -> PolicyFileError {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    PolicyFileError::Parse {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        message: message.into(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, PolicyFileError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    // A UTF-8 byte order mark is tolerated (and kept) at the very start.
    let mut at = if text.starts_with('\u{feff}') { 3 } else { 0 };
    while at < bytes.len() {
        let start = at;
        let kind = match bytes[at] {
            b' ' | b'\t' | b'\r' | b'\n' => {
                at += 1;
                continue;
            }
            b'{' => TokenKind::OpenBrace,
            b'}' => TokenKind::CloseBrace,
            b'[' => TokenKind::OpenBracket,
            b']' => TokenKind::CloseBracket,
            b',' => TokenKind::Comma,
            b':' => TokenKind::Colon,
            b'"' => {
                at = scan_string(text, at)?;
                tokens.push(Token {
                    kind: TokenKind::String,
                    start,
                    end: at,
                });
                continue;
            }
            b'-' | b'0'..=b'9' => {
                at = scan_number(text, at)?;
                tokens.push(Token {
                    kind: TokenKind::Number,
                    start,
                    end: at,
                });
                continue;
            }
            b'a'..=b'z' | b'A'..=b'Z' => {
                while at < bytes.len() && bytes[at].is_ascii_alphanumeric() {
                    at += 1;
                }
                let word = &text[start..at];
                if !matches!(word, "true" | "false" | "null") {
                    return Err(parse_error(
                        text,
                        start,
                        format!("unexpected word `{word}`"),
                    ));
                }
                tokens.push(Token {
                    kind: TokenKind::Word,
                    start,
                    end: at,
                });
                continue;
            }
            b'/' if bytes.get(at + 1) == Some(&b'/') => {
                // The comment ends before the line break; a CR of a CRLF is not part of it, so
                // that the line break can be found and reused as a whole.
                let newline = text[at..].find('\n').map_or(bytes.len(), |n| at + n);
                at = if newline > start + 2 && bytes[newline - 1] == b'\r' {
                    newline - 1
                } else {
                    newline
                };
                tokens.push(Token {
                    kind: TokenKind::LineComment,
                    start,
                    end: at,
                });
                continue;
            }
            b'/' if bytes.get(at + 1) == Some(&b'*') => {
                let Some(close) = text[at + 2..].find("*/") else {
                    return Err(parse_error(text, start, "unterminated block comment"));
                };
                at = at + 2 + close + 2;
                tokens.push(Token {
                    kind: TokenKind::BlockComment,
                    start,
                    end: at,
                });
                continue;
            }
            _ => {
                let found = text[at..].chars().next().unwrap_or('?');
                return Err(parse_error(
                    text,
                    start,
                    format!("unexpected character {found:?}"),
                ));
            }
        };
        at += 1;
        tokens.push(Token {
            kind,
            start,
            end: at,
        });
    }
    Ok(tokens)
}

/// Returns the offset just past the closing quote of the string starting at `start`.
fn scan_string(text: &str, start: usize) -> Result<usize, PolicyFileError> {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    loop {
        match bytes.get(at) {
            None => return Err(parse_error(text, start, "unterminated string")),
            Some(b'"') => return Ok(at + 1),
            Some(b'\\') => match bytes.get(at + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => at += 2,
                Some(b'u') => {
                    let hex = bytes.get(at + 2..at + 6);
                    if !hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                        return Err(parse_error(text, at, "invalid \\u escape in string"));
                    }
                    at += 6;
                }
                _ => return Err(parse_error(text, at, "invalid escape in string")),
            },
            Some(byte) if *byte < 0x20 => {
                return Err(parse_error(
                    text,
                    at,
                    "control character (e.g. a line break) inside a string",
                ))
            }
            // Multi-byte UTF-8 sequences never contain bytes below 0x80, so stepping by byte is
            // safe: quotes and backslashes are always whole characters.
            Some(_) => at += 1,
        }
    }
}

/// JSON number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn scan_number(text: &str, start: usize) -> Result<usize, PolicyFileError> {
    let bytes = text.as_bytes();
    let digits = |mut at: usize| {
        let from = at;
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        (at, at > from)
    };
    let mut at = start;
    if bytes[at] == b'-' {
        at += 1;
    }
    match bytes.get(at) {
        Some(b'0') => at += 1,
        Some(b'1'..=b'9') => at = digits(at).0,
        _ => return Err(parse_error(text, start, "invalid number")),
    }
    if bytes.get(at) == Some(&b'.') {
        let (end, any) = digits(at + 1);
        if !any {
            return Err(parse_error(text, start, "invalid number"));
        }
        at = end;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let (end, any) = digits(at);
        if !any {
            return Err(parse_error(text, start, "invalid number"));
        }
        at = end;
    }
    if bytes
        .get(at)
        .is_some_and(|byte| byte.is_ascii_alphanumeric())
    {
        return Err(parse_error(text, start, "invalid number"));
    }
    Ok(at)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    /// Index of the next unread token (comments included).
    next: usize,
}

impl Parser<'_> {
    fn peek_significant(&mut self) -> Option<Token> {
        while self.next < self.tokens.len() && self.tokens[self.next].is_comment() {
            self.next += 1;
        }
        self.tokens.get(self.next).copied()
    }

    fn expect_significant(&mut self, what: &str) -> Result<Token, PolicyFileError> {
        match self.peek_significant() {
            Some(token) => Ok(token),
            None => Err(parse_error(
                self.text,
                self.text.len(),
                format!("unexpected end of document, expected {what}"),
            )),
        }
    }

    fn unexpected(&self, token: Token, what: &str) -> PolicyFileError {
        parse_error(
            self.text,
            token.start,
            format!(
                "unexpected `{}`, expected {what}",
                &self.text[token.start..token.end]
            ),
        )
    }

    fn value(&mut self, depth: usize) -> Result<Value, PolicyFileError> {
        let token = self.expect_significant("a value")?;
        if depth > MAX_DEPTH {
            return Err(parse_error(self.text, token.start, "nesting too deep"));
        }
        match token.kind {
            TokenKind::String | TokenKind::Number | TokenKind::Word => {
                self.next += 1;
                Ok(Value {
                    span: Span {
                        start: token.start,
                        end: token.end,
                    },
                    node: Node::Scalar,
                })
            }
            TokenKind::OpenBrace => {
                let container = self.container(token, TokenKind::CloseBrace, depth)?;
                Ok(Value {
                    span: Span {
                        start: container.open,
                        end: container.close + 1,
                    },
                    node: Node::Object(container),
                })
            }
            TokenKind::OpenBracket => {
                let container = self.container(token, TokenKind::CloseBracket, depth)?;
                Ok(Value {
                    span: Span {
                        start: container.open,
                        end: container.close + 1,
                    },
                    node: Node::Array(container),
                })
            }
            _ => Err(self.unexpected(token, "a value")),
        }
    }

    fn container(
        &mut self,
        open: Token,
        close_kind: TokenKind,
        depth: usize,
    ) -> Result<Container, PolicyFileError> {
        let is_object = close_kind == TokenKind::CloseBrace;
        let closer = if is_object { "`}`" } else { "`]`" };
        self.next += 1;
        let mut items = Vec::new();
        loop {
            let token = self.expect_significant(closer)?;
            if token.kind == close_kind {
                self.next += 1;
                return Ok(Container {
                    open: open.start,
                    close: token.start,
                    items,
                });
            }
            let start = token.start;
            let key = if is_object {
                if token.kind != TokenKind::String {
                    return Err(self.unexpected(token, &format!("a quoted key or {closer}")));
                }
                self.next += 1;
                let name = serde_json::from_str(&self.text[token.start..token.end])
                    .map_err(|error| parse_error(self.text, token.start, error.to_string()))?;
                let colon = self.expect_significant("`:`")?;
                if colon.kind != TokenKind::Colon {
                    return Err(self.unexpected(colon, "`:`"));
                }
                self.next += 1;
                Some(Key { name })
            } else {
                None
            };
            let value = self.value(depth + 1)?;
            let marker = self.marker_after_value();
            let separator = self.expect_significant(&format!("`,` or {closer}"))?;
            let comma = match separator.kind {
                TokenKind::Comma => {
                    self.next += 1;
                    Some(separator.start)
                }
                kind if kind == close_kind => None,
                _ => return Err(self.unexpected(separator, &format!("`,` or {closer}"))),
            };
            items.push(Item {
                start,
                key,
                value,
                comma,
                marker,
            });
            // Without a comma the separator was the closing bracket, consumed at the loop's top.
        }
    }

    /// The marker right after the value just read: only whitespace and at most one comma may
    /// separate them. Called before the separator is consumed.
    fn marker_after_value(&self) -> Option<Marker> {
        let as_marker = |token: Option<Token>| {
            let token = token.filter(|token| token.kind == TokenKind::BlockComment)?;
            let owner = MarkerOwner::from_comment_body(&self.text[token.start + 2..token.end - 2])?;
            Some(Marker {
                span: Span {
                    start: token.start,
                    end: token.end,
                },
                owner,
            })
        };
        let following = self.tokens.get(self.next).copied();
        match following {
            Some(token) if token.kind == TokenKind::Comma => {
                as_marker(self.tokens.get(self.next + 1).copied())
            }
            _ => as_marker(following),
        }
    }
}
