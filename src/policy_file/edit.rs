//! Byte-range edits: inserting an owned item at the start of a container and removing it again.
//!
//! The layouts are chosen so that every insertion is one contiguous span and the matching
//! removal deletes exactly that span. Inserted spans of one container never overlap, so adding
//! and removing in any order always leads back to the original bytes. Only when a human has
//! reshaped the surroundings, or the item is a human's (deprovisioning removes those), does
//! removal fall back to a best effort that keeps the file valid.

use super::scan::Container;

/// Replace `start..end` of the text with `replacement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Edit {
    pub start: usize,
    pub end: usize,
    pub replacement: String,
}

impl Edit {
    fn insert(at: usize, replacement: String) -> Self {
        Edit {
            start: at,
            end: at,
            replacement,
        }
    }

    fn remove(start: usize, end: usize) -> Self {
        Edit {
            start,
            end,
            replacement: String::new(),
        }
    }
}

/// Applies non-overlapping edits (offsets relative to `text`).
pub(crate) fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|edit| std::cmp::Reverse(edit.start));
    let mut result = text.to_string();
    for edit in edits {
        result.replace_range(edit.start..edit.end, &edit.replacement);
    }
    result
}

/// Inserts `item` (already rendered, e.g. `"key": value`) as the first item of `container`,
/// followed by the ownership `marker`.
///
/// Inserting at the start (never at the end) keeps a human's comments after the last item where
/// they are, and the layout follows the container's: empty, inline or one item per line.
pub(crate) fn insert_first(text: &str, container: &Container, item: &str, marker: &str) -> Edit {
    let after_open = container.open + 1;
    let Some(first) = container.items.first() else {
        return Edit::insert(after_open, format!("{item} {marker}"));
    };
    match first_line_break(text, after_open, first.start) {
        None => Edit::insert(after_open, format!("{item} {marker}, ")),
        Some(line_break) => {
            // Reuse the file's line ending so a CRLF file stays CRLF.
            let newline = if text.as_bytes()[line_break] == b'\r' {
                "\r\n"
            } else {
                "\n"
            };
            let indent = line_indent(text, first.start);
            Edit::insert(line_break, format!("{newline}{indent}{item}, {marker}"))
        }
    }
}

/// Removes item `index` of `container`: exactly the span its insertion added when it is marked
/// and its surroundings are as inserted, else as [`fallback_removal`] does.
pub(crate) fn remove_item(text: &str, container: &Container, index: usize) -> Vec<Edit> {
    let bytes = text.as_bytes();
    let item = &container.items[index];
    let Some(marker) = item.marker.as_ref().map(|marker| marker.span) else {
        // A human's item: nothing was inserted, so there is no inserted span to take back.
        return fallback_removal(text, container, index);
    };
    // The marker as written in the file: markers differ in length by owner, and the spans below
    // must be exactly those the insertion added.
    let marker_text = &text[marker.start..marker.end];
    let (start, value_end) = (item.start, item.value.span.end);
    let after_value = &text[value_end..];

    // One item per line: `\n<indent>ITEM, /* tailkeeper:<id> */`, the marker ending the line.
    let multi_line_tail = format!(", {marker_text}");
    if after_value.starts_with(&multi_line_tail) && item.comma == Some(value_end) {
        let end = value_end + multi_line_tail.len();
        let line_ends_after = text[end..].starts_with('\n') || text[end..].starts_with("\r\n");
        let mut line_start = start;
        while line_start > 0 && matches!(bytes[line_start - 1], b' ' | b'\t') {
            line_start -= 1;
        }
        if line_ends_after && line_start > container.open + 1 && bytes[line_start - 1] == b'\n' {
            let mut newline = line_start - 1;
            if newline > container.open + 1 && bytes[newline - 1] == b'\r' {
                newline -= 1;
            }
            return vec![Edit::remove(newline, end)];
        }
    }

    let inline_tail = format!(" {marker_text}");
    if after_value.starts_with(&inline_tail) && marker.start == value_end + 1 {
        // Inline, not last: `ITEM /* tailkeeper:<id> */, `.
        let with_comma = format!("{inline_tail}, ");
        if after_value.starts_with(&with_comma) {
            return vec![Edit::remove(start, value_end + with_comma.len())];
        }
        if item.comma.is_none() {
            // The sole item of a container that was empty: `ITEM /* tailkeeper:<id> */`.
            if start == container.open + 1 {
                return vec![Edit::remove(start, marker.end)];
            }
            // The last of several items inserted into a container that was empty: the `, `
            // before it is what separated it from the item inserted after it.
            let previous_comma = index
                .checked_sub(1)
                .and_then(|previous| container.items[previous].comma);
            if start >= 2 && &text[start - 2..start] == ", " && previous_comma == Some(start - 2) {
                return vec![Edit::remove(start - 2, marker.end)];
            }
        }
    }

    fallback_removal(text, container, index)
}

/// A human has reshaped the surroundings, or wrote the item: remove the item, its marker if it
/// has one and one adjacent comma, plus the line they stood on when nothing else is on it. The
/// result always parses.
fn fallback_removal(text: &str, container: &Container, index: usize) -> Vec<Edit> {
    let item = &container.items[index];
    let mut ranges = vec![(item.start, item.value.span.end)];
    if let Some(marker) = &item.marker {
        ranges.push((marker.span.start, marker.span.end));
    }
    if let Some(comma) = item.comma {
        ranges.push((comma, comma + 1));
    } else if let Some(comma) = index
        .checked_sub(1)
        .and_then(|previous| container.items[previous].comma)
    {
        // The last item has no comma of its own; its predecessor's comma becomes trailing
        // otherwise, which is allowed, but removing it keeps the file as a human would.
        ranges.push((comma, comma + 1));
    }
    ranges.sort();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last)
                if start <= last.1
                    || text[last.1..start].bytes().all(|b| b == b' ' || b == b'\t') =>
            {
                last.1 = last.1.max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    merged
        .into_iter()
        .map(|(start, end)| {
            let (start, end) = widen_to_blank_line(text, container, start, end);
            Edit::remove(start, end)
        })
        .collect()
}

/// Widens `start..end` to its whole line (line break included) when the rest of that line is
/// blank and the line lies inside the container.
fn widen_to_blank_line(
    text: &str,
    container: &Container,
    start: usize,
    end: usize,
) -> (usize, usize) {
    let line_start = text[..start].rfind('\n').map(|newline| newline + 1);
    let line_end = text[end..].find('\n').map(|newline| end + newline + 1);
    match (line_start, line_end) {
        (Some(line_start), Some(line_end))
            if line_start > container.open
                && line_end <= container.close
                && text[line_start..start]
                    .bytes()
                    .all(|b| b == b' ' || b == b'\t')
                && text[end..line_end]
                    .bytes()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) =>
        {
            (line_start, line_end)
        }
        _ => (start, end),
    }
}

/// The first line break (outside comments) in `from..to`, at its CR when it is a CRLF.
fn first_line_break(text: &str, from: usize, to: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut at = from;
    while at < to {
        match bytes[at] {
            b'\n' => {
                let crlf = at > from && bytes[at - 1] == b'\r';
                return Some(if crlf { at - 1 } else { at });
            }
            b'/' if bytes[at + 1] == b'/' => {
                // Up to the line break that ends the comment; a CR before it is seen then.
                while at < to && bytes[at] != b'\n' {
                    at += 1;
                }
            }
            b'/' if bytes[at + 1] == b'*' => {
                at += 2 + text[at + 2..].find("*/").expect("comments were validated") + 2;
            }
            _ => at += 1,
        }
    }
    None
}

/// The spaces and tabs that start the line containing `at`.
fn line_indent(text: &str, at: usize) -> &str {
    let line_start = text[..at].rfind('\n').map_or(0, |newline| newline + 1);
    let indent_len = text[line_start..at]
        .bytes()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .count();
    &text[line_start..line_start + indent_len]
}
