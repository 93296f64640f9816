//! The evidence record's exports: CSV, JSON and a self-contained HTML report.
//!
//! All three are pure functions of an [`Evidence`] record. JSON is the record itself (it reads
//! back into an equal record). CSV is one row per item, for spreadsheets. HTML is a report for
//! people and auditors: one file with no external resources and no JavaScript, that prints
//! cleanly to A4 (and so to PDF). Its chart uses the colours below, and nothing else in the
//! report does, so that a picture of the report can be checked for its bars.

use std::fmt::{self, Write as _};

use jiff::Timestamp;

use super::{Evidence, Item, Outcome};
use crate::api::ReviewDecision;

/// The chart's bar for items kept by a reviewer (green).
pub const KEPT_COLOUR: &str = "#2e7d32";
/// The chart's bar for items revoked by a reviewer (red).
pub const REVOKED_COLOUR: &str = "#c62828";
/// The chart's bar for items kept at the due time because nobody decided them (blue grey: not
/// a neutral grey, which the edges of the report's grey and black text also make).
pub const DEFAULT_KEPT_COLOUR: &str = "#90a4ae";
/// The chart's bar for items revoked at the due time because nobody decided them (orange).
pub const DEFAULT_REVOKED_COLOUR: &str = "#ef6c00";
/// The checks chart's bar for passing checks (dark green).
pub const CHECK_PASS_COLOUR: &str = "#1b5e20";
/// The checks chart's bar for failing checks (dark red).
pub const CHECK_FAIL_COLOUR: &str = "#b71c1c";
/// The checks chart's bar for checks whose result is unknown (dark blue grey).
pub const CHECK_UNKNOWN_COLOUR: &str = "#546e7a";

/// What a CSV cell reads when nobody decided the item and the campaign's `undecided` applied
/// at the due time.
pub const UNDECIDED_AT_DUE_TIME: &str = "(undecided at due time)";

/// The record as pretty-printed JSON: every field, named as in the ConfigMaps that hold it.
/// `serde_json::from_str::<Evidence>` reads it back into an equal record.
pub fn to_json(e: &Evidence) -> String {
    serde_json::to_string_pretty(e)
        .expect("an evidence record always serializes: plain fields and string keys only")
}

/// The record's items as CSV, one row per item after a header row: `id`, `user`, `person`,
/// `entitlement`, `kind`, `description`, `how` (how the user holds it), `addedBy`,
/// `reviewers` (joined with `; `), `decision` (`Keep`, `Revoke` or empty), `decidedBy` (the
/// reviewer, or `(undecided at due time)` when the campaign's `undecided` applied), `decidedAt`
/// (RFC 3339), `comment`, `outcome` (`Removed`, `AlreadyGone`, `NotApplicable` or empty),
/// `removed` (each `location: text`, joined with `; `), `appliedAt` and `appliedMessage`.
///
/// Cells are quoted as RFC 4180 says (commas, quotes and line breaks inside cells read back);
/// records end in `\n`, like the project's other CSV. A spreadsheet would run a cell that starts with `=`, `+`, `-` or
/// `@` (or a tab or carriage return before one) as a formula, and every cell here can hold text
/// from the tailnet or from reviewers; such a cell gets a leading `'`, which spreadsheets show
/// as text. So a comment `=HYPERLINK(…)` reads `'=HYPERLINK(…)` in the file.
pub fn to_csv(e: &Evidence) -> String {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(256 * (e.items.len() + 1)));
    write_csv(e, &mut writer)
        .expect("CSV into memory: no I/O to fail and every record has the same length");
    let bytes = writer
        .into_inner()
        .map_err(|err| err.into_error())
        .expect("CSV into memory: flushing a Vec cannot fail");
    // Every cell is a Rust string, so the bytes are UTF-8.
    String::from_utf8_lossy(&bytes).into_owned()
}

const CSV_HEADER: [&str; 17] = [
    "id",
    "user",
    "person",
    "entitlement",
    "kind",
    "description",
    "how",
    "addedBy",
    "reviewers",
    "decision",
    "decidedBy",
    "decidedAt",
    "comment",
    "outcome",
    "removed",
    "appliedAt",
    "appliedMessage",
];

fn write_csv(e: &Evidence, writer: &mut csv::Writer<Vec<u8>>) -> csv::Result<()> {
    writer.write_record(CSV_HEADER)?;
    for item in &e.items {
        let decision = item.decision.as_ref();
        let applied = item.applied.as_ref();
        let decided_by = match decision {
            Some(d) if d.by_reviewer() => d.by.clone(),
            Some(_) => UNDECIDED_AT_DUE_TIME.to_string(),
            None => String::new(),
        };
        let removed = applied
            .map(|a| {
                a.removed
                    .iter()
                    .map(|r| format!("{}: {}", r.location, r.text))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        let mut row: [String; 17] = [
            item.id.clone(),
            item.user.clone(),
            item.person.clone().unwrap_or_default(),
            item.entitlement.clone(),
            item.kind.as_str().to_string(),
            item.description.clone(),
            item.via.to_string(),
            item.added_by.to_string(),
            item.reviewers.join("; "),
            decision
                .map(|d| d.decision.as_str().to_string())
                .unwrap_or_default(),
            decided_by,
            decision.map(|d| d.at.to_string()).unwrap_or_default(),
            decision.and_then(|d| d.comment.clone()).unwrap_or_default(),
            applied
                .map(|a| outcome_str(a.outcome).to_string())
                .unwrap_or_default(),
            removed,
            applied.map(|a| a.at.to_string()).unwrap_or_default(),
            applied.map(|a| a.message.clone()).unwrap_or_default(),
        ];
        for cell in &mut row {
            neutralise_formula(cell);
        }
        writer.write_record(&row)?;
    }
    writer.flush()?;
    Ok(())
}

/// Puts a leading `'` before a cell a spreadsheet would take for a formula (every CSV of
/// review items goes through it: the evidence here, the plugin's listing).
pub fn neutralise_formula(cell: &mut String) {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        cell.insert(0, '\'');
    }
}

fn outcome_str(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Removed => "Removed",
        Outcome::AlreadyGone => "AlreadyGone",
        Outcome::NotApplicable => "NotApplicable",
    }
}

/// The figures of a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Figures {
    items: usize,
    kept_by_reviewer: usize,
    revoked_by_reviewer: usize,
    kept_at_due_time: usize,
    revoked_at_due_time: usize,
    /// Items with no decision at all (a record of a finished campaign has none).
    without_decision: usize,
    removed: usize,
    checks_pass: usize,
    checks_fail: usize,
    checks_unknown: usize,
}

impl Figures {
    fn of(e: &Evidence) -> Self {
        let mut f = Figures {
            items: e.items.len(),
            ..Figures::default()
        };
        for item in &e.items {
            match &item.decision {
                Some(d) => match (d.decision, d.by_reviewer()) {
                    (ReviewDecision::Keep, true) => f.kept_by_reviewer += 1,
                    (ReviewDecision::Revoke, true) => f.revoked_by_reviewer += 1,
                    (ReviewDecision::Keep, false) => f.kept_at_due_time += 1,
                    (ReviewDecision::Revoke, false) => f.revoked_at_due_time += 1,
                },
                None => f.without_decision += 1,
            }
            if item.applied.as_ref().map(|a| a.outcome) == Some(Outcome::Removed) {
                f.removed += 1;
            }
        }
        for check in &e.checks {
            match check.result.as_str() {
                "Pass" => f.checks_pass += 1,
                "Fail" => f.checks_fail += 1,
                _ => f.checks_unknown += 1,
            }
        }
        f
    }

    fn kept(&self) -> usize {
        self.kept_by_reviewer + self.kept_at_due_time
    }

    fn revoked(&self) -> usize {
        self.revoked_by_reviewer + self.revoked_at_due_time
    }

    fn undecided(&self) -> usize {
        self.kept_at_due_time + self.revoked_at_due_time
    }
}

/// The record as a self-contained HTML5 report: a title naming the campaign, a summary
/// (policy, description, scope, reviewers, what happened to undecided items, phase, and the
/// snapshot, start, due and end times in UTC), the key figures, a chart of the decisions and
/// one of the checks, then tables of the checks, the grants active during the campaign, and
/// the items with their decisions and what was removed.
///
/// The key figures carry stable element ids: `items` (how many items), `kept`, `revoked`,
/// `undecided` (decided at the due time by the campaign's `undecided`, nobody having decided
/// them) and `removed` (revocations carried out in Tailscale). The decisions chart has one bar
/// per kind of decision, its height proportional to the count: kept by a reviewer
/// ([`KEPT_COLOUR`]), revoked by a reviewer ([`REVOKED_COLOUR`]), kept at the due time
/// ([`DEFAULT_KEPT_COLOUR`]) and revoked at the due time ([`DEFAULT_REVOKED_COLOUR`]); the
/// checks chart has one bar for passing, failing and unknown checks.
///
/// Every text of the record is HTML-escaped, and the page's content security policy forbids
/// scripts and any loading from elsewhere. The items are a plain table, so a campaign of
/// 10,000 items makes a report of a few megabytes.
pub fn to_html(e: &Evidence) -> String {
    let mut out = String::with_capacity(16 * 1024 + 600 * e.items.len());
    // Writing into a String cannot fail.
    let _ = write_html(e, &mut out);
    out
}

/// Text written into HTML with `&`, `<`, `>`, `"` and `'` escaped (safe in text and in quoted
/// attribute values).
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A time as shown in the report: `2026-01-31 14:05:00 UTC`.
fn utc(t: Timestamp) -> impl fmt::Display {
    t.strftime("%Y-%m-%d %H:%M:%S UTC")
}

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0 auto; padding: 24px 32px; max-width: 1240px; color: #212121; background: #ffffff;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; }
h1 { font-size: 24px; margin: 0 0 4px; }
p.muted { margin: 0 0 12px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #bdbdbd; padding-bottom: 4px; }
.summary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0 0 16px; }
.summary dt { font-weight: 600; }
.summary dd { margin: 0; overflow-wrap: anywhere; }
.overview { display: flex; flex-wrap: wrap; gap: 16px 40px; align-items: flex-start; }
.figures { display: flex; flex-wrap: wrap; gap: 12px 28px; margin: 4px 0 16px; }
.figure { min-width: 96px; }
.figure .n { display: block; font-size: 40px; font-weight: 700; line-height: 1.1; }
.figure .l { display: block; font-size: 13px; color: #424242; }
.charts { display: flex; flex-wrap: wrap; gap: 16px 40px; }
figure { margin: 0; }
figcaption { font-size: 13px; font-weight: 600; margin-bottom: 4px; }
svg text { font: 12px system-ui, "DejaVu Sans", Arial, sans-serif; fill: #212121; }
table { border-collapse: collapse; width: 100%; font-size: 12px; table-layout: fixed; }
th, td { border: 1px solid #d0d0d0; padding: 3px 6px; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
#checks .c-name { width: 24%; } #checks .c-result { width: 9%; } #checks .c-failing { width: 8%; }
#grants .g-name { width: 14%; } #grants .g-user { width: 17%; } #grants .g-access { width: 13%; }
#grants .g-phase { width: 8%; } #grants .g-by { width: 11%; } #grants .g-time { width: 13%; }
#item-table .i-user { width: 12%; } #item-table .i-person { width: 7%; }
#item-table .i-entitlement { width: 12%; } #item-table .i-how { width: 8%; }
#item-table .i-added { width: 7%; } #item-table .i-decision { width: 6.5%; }
#item-table .i-by { width: 7%; } #item-table .i-at { width: 8%; }
#item-table .i-outcome { width: 9%; }
th { background: #eeeeee; }
td.num { text-align: right; }
.muted { color: #616161; font-size: 11px; }
.none { color: #616161; font-style: italic; }
code { font: 11px ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; }
@page { size: A4; margin: 12mm; }
@page wide { size: A4 landscape; margin: 12mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 10pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h1 { font-size: 16pt; }
  h2 { font-size: 12pt; break-after: avoid; page-break-after: avoid; }
  .figures { gap: 8px 20px; }
  .figure { min-width: 0; }
  .figure .n { font-size: 22pt; }
  section.items { page: wide; }
  table { font-size: 7.5pt; }
  thead { display: table-header-group; }
  tr, figure, .summary { break-inside: avoid; page-break-inside: avoid; }
  code { font-size: 7pt; }
}
"#;

fn write_html(e: &Evidence, out: &mut String) -> fmt::Result {
    let f = Figures::of(e);
    let title = format!("Access review {}/{}", e.namespace, e.review);
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n\
         <p class=\"muted\">The evidence record of the campaign, for reading and printing; its \
         JSON export is the complete record.</p>\n",
        Esc(&title),
        Esc(&title),
    )?;

    // Summary.
    out.push_str("<dl class=\"summary\">\n");
    let mut row = |label: &str, value: &dyn fmt::Display| -> fmt::Result {
        writeln!(out, "<dt>{label}</dt><dd>{value}</dd>")
    };
    row("Policy", &Esc(&e.policy))?;
    if let Some(description) = &e.description {
        row("Description", &Esc(description))?;
    }
    row("Scope", &Esc(&e.scope))?;
    row("Reviewers", &Esc(&e.reviewers))?;
    row("Undecided items at the due time", &Esc(&e.undecided))?;
    row("Phase", &Esc(&e.phase))?;
    row("Snapshot", &utc(e.snapshot_at))?;
    row("Started", &utc(e.started_at))?;
    row("Due", &utc(e.due_at))?;
    row("Ended", &utc(e.ended_at))?;
    row("Record UID", &Esc(&e.uid))?;
    out.push_str("</dl>\n");

    // Key figures and charts.
    out.push_str("<section class=\"overview\">\n<div class=\"figures\">\n");
    let mut figure = |id: &str, n: usize, label: &str| -> fmt::Result {
        writeln!(
            out,
            "<div class=\"figure\"><span class=\"n\" id=\"{id}\">{n}</span>\
             <span class=\"l\">{label}</span></div>"
        )
    };
    figure("items", f.items, "items")?;
    figure("kept", f.kept(), "kept")?;
    figure("revoked", f.revoked(), "revoked")?;
    figure("undecided", f.undecided(), "undecided at the due time")?;
    figure("removed", f.removed, "removed from Tailscale")?;
    if f.without_decision > 0 {
        figure("without-decision", f.without_decision, "without a decision")?;
    }
    out.push_str("</div>\n<div class=\"charts\">\n");
    bar_chart(
        out,
        "decisions-chart",
        "Decisions",
        &[
            ("Kept by", "a reviewer", f.kept_by_reviewer, KEPT_COLOUR),
            (
                "Revoked by",
                "a reviewer",
                f.revoked_by_reviewer,
                REVOKED_COLOUR,
            ),
            (
                "Kept at",
                "due time",
                f.kept_at_due_time,
                DEFAULT_KEPT_COLOUR,
            ),
            (
                "Revoked at",
                "due time",
                f.revoked_at_due_time,
                DEFAULT_REVOKED_COLOUR,
            ),
        ],
    )?;
    bar_chart(
        out,
        "checks-chart",
        "Checks at the end",
        &[
            ("Pass", "", f.checks_pass, CHECK_PASS_COLOUR),
            ("Fail", "", f.checks_fail, CHECK_FAIL_COLOUR),
            ("Unknown", "", f.checks_unknown, CHECK_UNKNOWN_COLOUR),
        ],
    )?;
    out.push_str("</div>\n</section>\n");

    // Checks.
    out.push_str("<h2>Checks when the campaign ended</h2>\n");
    if e.checks.is_empty() {
        out.push_str("<p class=\"none\">No checks recorded.</p>\n");
    } else {
        out.push_str(
            "<table id=\"checks\">\n<colgroup><col class=\"c-name\"><col class=\"c-result\">\
             <col class=\"c-failing\"><col></colgroup>\n<thead><tr><th>Check</th>\
             <th>Result</th><th>Failing</th><th>Message</th></tr></thead>\n<tbody>\n",
        );
        for c in &e.checks {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                Esc(&c.name),
                Esc(&c.result),
                c.failing,
                Esc(&c.message),
            )?;
        }
        out.push_str("</tbody>\n</table>\n");
    }

    // Grants.
    out.push_str("<h2>Grants active during the campaign</h2>\n");
    if e.grants.is_empty() {
        out.push_str("<p class=\"none\">No grants were active.</p>\n");
    } else {
        out.push_str(
            "<table id=\"grants\">\n<colgroup><col class=\"g-name\"><col class=\"g-user\">\
             <col class=\"g-access\"><col class=\"g-phase\"><col class=\"g-by\">\
             <col class=\"g-by\"><col class=\"g-time\"><col class=\"g-time\"></colgroup>\n\
             <thead><tr><th>Grant</th><th>User</th><th>Access</th>\
             <th>Phase</th><th>Requested by</th><th>Approved by</th><th>Started</th>\
             <th>Ended</th></tr></thead>\n<tbody>\n",
        );
        for g in &e.grants {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                Esc(&g.name),
                Esc(&g.user),
                Esc(&g.access),
                Esc(&g.phase),
                Esc(g.requested_by.as_deref().unwrap_or("")),
                Esc(g.approved_by.as_deref().unwrap_or("")),
                OptionalTime(g.started_at),
                OptionalTime(g.ended_at),
            )?;
        }
        out.push_str("</tbody>\n</table>\n");
    }

    // Items.
    out.push_str("<section class=\"items\">\n<h2>Items</h2>\n");
    if e.items.is_empty() {
        out.push_str("<p class=\"none\">The campaign covered no items.</p>\n");
    } else {
        out.push_str(
            "<table id=\"item-table\">\n<colgroup><col class=\"i-user\">\
             <col class=\"i-person\"><col class=\"i-entitlement\"><col class=\"i-how\">\
             <col class=\"i-added\"><col class=\"i-decision\"><col class=\"i-by\">\
             <col class=\"i-at\"><col><col class=\"i-outcome\"><col></colgroup>\n\
             <thead><tr><th>User</th><th>Person</th>\
             <th>Entitlement</th><th>How held</th><th>Added by</th><th>Decision</th>\
             <th>By</th><th>At</th><th>Comment</th><th>Outcome</th><th>Removed</th>\
             </tr></thead>\n<tbody>\n",
        );
        for item in &e.items {
            item_row(out, item)?;
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out.push_str("</section>\n</body>\n</html>\n");
    Ok(())
}

/// An optional time in a table cell: the time in UTC, or nothing.
struct OptionalTime(Option<Timestamp>);

impl fmt::Display for OptionalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => write!(f, "{}", utc(t)),
            None => Ok(()),
        }
    }
}

fn item_row(out: &mut String, item: &Item) -> fmt::Result {
    write!(
        out,
        "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td>\
         <td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td>",
        Esc(&item.user),
        Esc(&item.id),
        Esc(item.person.as_deref().unwrap_or("")),
        Esc(&item.description),
        Esc(&item.entitlement),
        Esc(&item.via.to_string()),
        Esc(&item.added_by.to_string()),
    )?;
    match &item.decision {
        Some(d) => {
            write!(out, "<td>{}</td>", d.decision.as_str())?;
            if d.by_reviewer() {
                write!(out, "<td>{}</td>", Esc(&d.by))?;
            } else {
                out.push_str("<td class=\"none\">undecided at the due time</td>");
            }
            write!(
                out,
                "<td>{}</td><td>{}</td>",
                utc(d.at),
                Esc(d.comment.as_deref().unwrap_or(""))
            )?;
        }
        None => out.push_str("<td class=\"none\">none</td><td></td><td></td><td></td>"),
    }
    match &item.applied {
        Some(a) => {
            write!(
                out,
                "<td>{}<br><span class=\"muted\">{}</span><br><span class=\"muted\">{}</span></td><td>",
                outcome_str(a.outcome),
                utc(a.at),
                Esc(&a.message),
            )?;
            for (i, r) in a.removed.iter().enumerate() {
                if i > 0 {
                    out.push_str("<br>");
                }
                write!(out, "{}: <code>{}</code>", Esc(&r.location), Esc(&r.text))?;
            }
            out.push_str("</td></tr>\n");
        }
        None => out.push_str("<td></td><td></td></tr>\n"),
    }
    Ok(())
}

/// Height in pixels of the tallest bar of a chart.
const BAR_MAX_HEIGHT: u64 = 140;
const BAR_WIDTH: usize = 56;
const BAR_GAP: usize = 28;

/// A small SVG bar chart: one bar per `(label, second label line, count, colour)`, heights
/// proportional to the counts (the largest is [`BAR_MAX_HEIGHT`]; a non-zero count is at least
/// one pixel), each with its count above and its label below. Bars sit on whole pixels with
/// crisp edges, so that they are areas of exactly their colour.
fn bar_chart(
    out: &mut String,
    id: &str,
    caption: &str,
    bars: &[(&str, &str, usize, &str)],
) -> fmt::Result {
    let max = bars.iter().map(|b| b.2).max().unwrap_or(0) as u64;
    let top = 20usize; // room for the counts above the tallest bar
    let base = top + BAR_MAX_HEIGHT as usize;
    let width = BAR_GAP + bars.len() * (BAR_WIDTH + BAR_GAP);
    let height = base + 40;
    let description = bars
        .iter()
        .map(|(label, label2, n, _)| match label2.is_empty() {
            true => format!("{label}: {n}"),
            false => format!("{label} {label2}: {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    write!(
        out,
        "<figure id=\"{id}\"><figcaption>{caption}</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{caption}: {description}\">\n\
         <line x1=\"0\" y1=\"{base}\" x2=\"{width}\" y2=\"{base}\" stroke=\"#757575\" \
         stroke-width=\"1\" shape-rendering=\"crispEdges\"/>\n"
    )?;
    for (i, (label, label2, count, colour)) in bars.iter().enumerate() {
        let h = bar_height(*count as u64, max) as usize;
        let x = BAR_GAP + i * (BAR_WIDTH + BAR_GAP);
        let centre = x + BAR_WIDTH / 2;
        if h > 0 {
            writeln!(
                out,
                "<rect x=\"{x}\" y=\"{}\" width=\"{BAR_WIDTH}\" height=\"{h}\" fill=\"{colour}\" \
                 shape-rendering=\"crispEdges\"><title>{label} {label2}: {count}</title></rect>",
                base - h
            )?;
        }
        writeln!(
            out,
            "<text x=\"{centre}\" y=\"{}\" text-anchor=\"middle\">{count}</text>\n\
             <text x=\"{centre}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\n\
             <text x=\"{centre}\" y=\"{}\" text-anchor=\"middle\">{label2}</text>",
            base - h - 5,
            base + 16,
            base + 31,
        )?;
    }
    out.push_str("</svg></figure>\n");
    Ok(())
}

/// A bar's height for `count` when the largest count is `max`: proportional, rounded, and at
/// least one pixel for a non-zero count.
fn bar_height(count: u64, max: u64) -> u64 {
    if count == 0 || max == 0 {
        return 0;
    }
    // In u128 so that no count overflows; the result is at most BAR_MAX_HEIGHT.
    let (count, max) = (u128::from(count), u128::from(max));
    let height = (count * u128::from(BAR_MAX_HEIGHT) + max / 2) / max;
    u64::try_from(height).unwrap_or(BAR_MAX_HEIGHT).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::UndecidedAction;
    use crate::entitlements::{AddedBy, Kind, Via};
    use crate::reviews::{Applied, CheckRecord, Decided, GrantRecord, RemovedText};

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn item(n: usize) -> Item {
        Item {
            id: format!("i{n:012x}"),
            user: format!("user{n}@example.com"),
            person: Some(format!("Person {n}")),
            entitlement: "group:prod".into(),
            kind: Kind::Group,
            description: "group:prod → tag:db (tcp:5432)".into(),
            via: Via::Group("group:eng".into()),
            added_by: AddedBy::Person,
            reviewers: vec!["user:alice".into(), "group:security".into()],
            manager: None,
            decision: None,
            applied: None,
        }
    }

    fn decided(by: &str, decision: ReviewDecision, comment: Option<&str>) -> Decided {
        Decided {
            decision,
            by: by.into(),
            at: t("2026-03-10T09:30:00Z"),
            comment: comment.map(String::from),
            record: Some("alice-1".into()),
        }
    }

    fn sample() -> Evidence {
        let mut kept = item(1);
        kept.decision = Some(decided("alice", ReviewDecision::Keep, Some("still needed")));
        let mut revoked = item(2);
        revoked.decision = Some(decided("alice", ReviewDecision::Revoke, Some("left")));
        revoked.applied = Some(Applied {
            outcome: Outcome::Removed,
            at: t("2026-03-10T09:31:00Z"),
            removed: vec![
                RemovedText {
                    location: "groups[\"group:prod\"][2]".into(),
                    text: "\"user2@example.com\"".into(),
                },
                RemovedText {
                    location: "grants[4]".into(),
                    text: "{\"src\": [\"user2@example.com\"]}".into(),
                },
            ],
            message: "removed from group:prod".into(),
        });
        let mut by_default = item(3);
        by_default.person = None;
        by_default.decision = Some(Decided::by_default(
            UndecidedAction::Keep,
            t("2026-03-24T00:00:00Z"),
        ));
        Evidence {
            review: "q1-prod".into(),
            namespace: "security".into(),
            uid: "5f0c2a3e-0000-4000-8000-000000000001".into(),
            policy: "corp".into(),
            description: Some("Quarterly review of production access".into()),
            scope: "groups group:prod".into(),
            reviewers: "users alice; managers".into(),
            undecided: "Keep".into(),
            snapshot_at: t("2026-03-09T23:59:00Z"),
            started_at: t("2026-03-10T00:00:00Z"),
            due_at: t("2026-03-24T00:00:00Z"),
            ended_at: t("2026-03-24T00:00:05Z"),
            phase: "Overdue".into(),
            items: vec![kept, revoked, by_default],
            checks: vec![
                CheckRecord {
                    name: "UserIdentified".into(),
                    result: "Pass".into(),
                    message: "every user is a directory person".into(),
                    failing: 0,
                },
                CheckRecord {
                    name: "UserAccessValid".into(),
                    result: "Fail".into(),
                    message: "1 user holds access they should not".into(),
                    failing: 1,
                },
            ],
            grants: vec![GrantRecord {
                name: "frank-admin".into(),
                user: "frank@example.com".into(),
                access: "role:admin".into(),
                phase: "Expired".into(),
                requested_by: Some("frank".into()),
                approved_by: Some("erin".into()),
                started_at: Some(t("2026-03-12T10:00:00Z")),
                ended_at: Some(t("2026-03-12T12:00:00Z")),
            }],
        }
    }

    fn read_csv(text: &str) -> (csv::StringRecord, Vec<csv::StringRecord>) {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().expect("header").clone();
        let rows = reader
            .records()
            .collect::<Result<Vec<_>, _>>()
            .expect("records");
        (header, rows)
    }

    /// The cell of `row` under `column`.
    fn cell<'a>(header: &csv::StringRecord, row: &'a csv::StringRecord, column: &str) -> &'a str {
        let i = header
            .iter()
            .position(|h| h == column)
            .unwrap_or_else(|| panic!("no column {column}"));
        row.get(i).expect("cell")
    }

    #[test]
    fn csv_reads_back_one_row_per_item_with_a_decided_and_applied_item_in_full() {
        let mut e = sample();
        let awkward = "keep, \"needed\"\nfor the on-call; ok";
        if let Some(d) = &mut e.items[0].decision {
            d.comment = Some(awkward.into());
        }
        let (header, rows) = read_csv(&to_csv(&e));
        assert_eq!(header.iter().collect::<Vec<_>>(), CSV_HEADER);
        assert_eq!(rows.len(), e.items.len());
        for row in &rows {
            assert_eq!(row.len(), CSV_HEADER.len());
        }

        let r = &rows[1];
        let expected = [
            ("id", "i000000000002"),
            ("user", "user2@example.com"),
            ("person", "Person 2"),
            ("entitlement", "group:prod"),
            ("kind", "group"),
            ("description", "group:prod → tag:db (tcp:5432)"),
            ("how", "via group:eng"),
            ("addedBy", "person"),
            ("reviewers", "user:alice; group:security"),
            ("decision", "Revoke"),
            ("decidedBy", "alice"),
            ("decidedAt", "2026-03-10T09:30:00Z"),
            ("comment", "left"),
            ("outcome", "Removed"),
            (
                "removed",
                "groups[\"group:prod\"][2]: \"user2@example.com\"; \
                 grants[4]: {\"src\": [\"user2@example.com\"]}",
            ),
            ("appliedAt", "2026-03-10T09:31:00Z"),
            ("appliedMessage", "removed from group:prod"),
        ];
        for (column, value) in expected {
            assert_eq!(cell(&header, r, column), value, "column {column}");
        }

        // Kept: nothing applied. Decided by default: said so, no person.
        assert_eq!(cell(&header, &rows[0], "decision"), "Keep");
        assert_eq!(cell(&header, &rows[0], "comment"), awkward);
        assert_eq!(cell(&header, &rows[0], "outcome"), "");
        assert_eq!(cell(&header, &rows[0], "removed"), "");
        assert_eq!(cell(&header, &rows[2], "person"), "");
        assert_eq!(cell(&header, &rows[2], "decidedBy"), UNDECIDED_AT_DUE_TIME);
        assert_eq!(cell(&header, &rows[2], "decidedAt"), "2026-03-24T00:00:00Z");
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_as_formulas_get_a_leading_quote() {
        let mut e = sample();
        e.items[0].user = "=HYPERLINK(\"http://evil.example\",\"x\")".into();
        e.items[0].description = "+1+1".into();
        e.items[0].person = Some("-2".into());
        e.items[0].entitlement = "@SUM(A1)".into();
        e.items[1].user = "\t=1".into();
        e.items[1].person = Some("\r=1".into());
        e.items[2].description = "a = b, - c".into();
        let (header, rows) = read_csv(&to_csv(&e));
        assert_eq!(
            cell(&header, &rows[0], "user"),
            "'=HYPERLINK(\"http://evil.example\",\"x\")"
        );
        assert_eq!(cell(&header, &rows[0], "description"), "'+1+1");
        assert_eq!(cell(&header, &rows[0], "person"), "'-2");
        assert_eq!(cell(&header, &rows[0], "entitlement"), "'@SUM(A1)");
        assert_eq!(cell(&header, &rows[1], "user"), "'\t=1");
        assert_eq!(cell(&header, &rows[1], "person"), "'\r=1");
        // Only the first character counts.
        assert_eq!(cell(&header, &rows[2], "description"), "a = b, - c");
    }

    #[test]
    fn json_reads_back_into_an_equal_record() {
        let mut e = sample();
        e.items[0].manager = Some("boss@example.com".into());
        e.description = None;
        let text = to_json(&e);
        assert!(
            text.contains("\n  \"review\": \"q1-prod\""),
            "pretty:\n{text}"
        );
        let back: Evidence = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, e);
        let back: Evidence = serde_json::from_str(&to_json(&sample())).expect("parses");
        assert_eq!(back, sample());
    }

    #[test]
    fn html_escapes_every_string_of_the_record() {
        let hostile = "<script>alert('x')</script>\"&";
        let mut e = sample();
        e.review = format!("r{hostile}");
        e.namespace = format!("n{hostile}");
        e.uid = format!("u{hostile}");
        e.policy = format!("p{hostile}");
        e.description = Some(format!("d{hostile}"));
        e.scope = format!("s{hostile}");
        e.reviewers = format!("rv{hostile}");
        e.undecided = format!("ud{hostile}");
        e.phase = format!("ph{hostile}");
        let item = &mut e.items[1];
        item.id = format!("id{hostile}");
        item.user = format!("\"o'brien\"{hostile}@example.com");
        item.person = Some(format!("pe{hostile}"));
        item.entitlement = format!("en{hostile}");
        item.description = format!("de{hostile}");
        item.via = Via::Group(format!("group:{hostile}"));
        item.added_by = AddedBy::Tailkeeper {
            owner: None,
            grants: vec![format!("g{hostile}")],
        };
        if let Some(d) = &mut item.decision {
            d.by = format!("by{hostile}");
            d.comment = Some(format!("comment {hostile}"));
        }
        if let Some(a) = &mut item.applied {
            a.message = format!("m{hostile}");
            a.removed[0].location = format!("loc{hostile}");
            a.removed[0].text = format!("text{hostile}");
        }
        e.checks[0].name = format!("c{hostile}");
        e.checks[0].result = format!("res{hostile}");
        e.checks[0].message = format!("cm{hostile}");
        let g = &mut e.grants[0];
        g.name = format!("gn{hostile}");
        g.user = format!("gu{hostile}");
        g.access = format!("ga{hostile}");
        g.phase = format!("gp{hostile}");
        g.requested_by = Some(format!("rq{hostile}"));
        g.approved_by = Some(format!("ap{hostile}"));

        let html = to_html(&e);
        assert!(!html.contains("<script"), "a script tag got through");
        assert!(!html.contains(hostile));
        assert!(!html.contains("'x'"));
        let escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;";
        // Every field above, escaped: 32 copies (the title, with two, is in the page's
        // title and heading).
        assert_eq!(html.matches(escaped).count(), 32);
        assert!(html.contains(&format!("&quot;o&#39;brien&quot;{escaped}@example.com")));
        assert!(html.contains(&format!("comment {escaped}")));
        // No quote of the record is left raw.
        assert!(!html.contains("o'brien"));
    }

    /// The text of the element with `id` in `html` (up to its first tag).
    fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html
            .find(&format!("id=\"{id}\">"))
            .unwrap_or_else(|| panic!("no element {id}"))
            + id.len()
            + 6;
        let end = html[start..].find('<').expect("closing tag");
        &html[start..start + end]
    }

    #[test]
    fn html_shows_the_key_figures_the_chart_and_the_tables() {
        let html = to_html(&sample());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<h1>Access review security/q1-prod</h1>"));
        for (id, n) in [
            ("items", "3"),
            ("kept", "2"),
            ("revoked", "1"),
            ("undecided", "1"),
            ("removed", "1"),
        ] {
            assert_eq!(text_of(&html, id), n, "figure {id}");
        }
        assert!(!html.contains("id=\"without-decision\""));
        // Bars: kept by a reviewer 1, revoked by a reviewer 1, kept at due time 1, none
        // revoked at due time (no bar, no colour).
        for colour in [KEPT_COLOUR, REVOKED_COLOUR, DEFAULT_KEPT_COLOUR] {
            assert!(
                html.contains(&format!("height=\"140\" fill=\"{colour}\"")),
                "{colour}"
            );
        }
        assert!(!html.contains(DEFAULT_REVOKED_COLOUR));
        // Nothing but its bar has a chart colour.
        for colour in [KEPT_COLOUR, REVOKED_COLOUR, DEFAULT_KEPT_COLOUR] {
            assert_eq!(html.matches(colour).count(), 1, "{colour}");
        }
        assert!(html.contains(&format!("height=\"140\" fill=\"{CHECK_PASS_COLOUR}\"")));
        assert!(html.contains(&format!("height=\"140\" fill=\"{CHECK_FAIL_COLOUR}\"")));
        assert!(!html.contains(CHECK_UNKNOWN_COLOUR));
        // Times in UTC, the tables' contents.
        assert!(html.contains("<dt>Due</dt><dd>2026-03-24 00:00:00 UTC</dd>"));
        assert!(html.contains("<td>frank-admin</td><td>frank@example.com</td><td>role:admin</td>"));
        assert!(html.contains("<td>UserAccessValid</td><td>Fail</td><td class=\"num\">1</td>"));
        assert!(html.contains("undecided at the due time"));
        assert!(html.contains(
            "grants[4]: <code>{&quot;src&quot;: [&quot;user2@example.com&quot;]}</code>"
        ));
        // Self-contained: nothing loaded from elsewhere, no script.
        assert!(!html.contains("<script"));
        assert!(!html.contains("src="));
        assert!(!html.contains("href="));
        assert!(html.contains("@media print"));
    }

    #[test]
    fn bar_heights_are_proportional_to_the_counts() {
        assert_eq!(bar_height(5, 5), 140);
        assert_eq!(bar_height(4, 5), 112);
        assert_eq!(bar_height(2, 5), 56);
        assert_eq!(bar_height(1, 5), 28);
        assert_eq!(bar_height(0, 5), 0);
        assert_eq!(bar_height(0, 0), 0);
        // A single item among 10,000 still shows.
        assert_eq!(bar_height(1, 10_000), 1);
        assert_eq!(bar_height(usize::MAX as u64, usize::MAX as u64), 140);
    }

    #[test]
    fn a_report_of_ten_thousand_items_stays_a_plain_table() {
        let mut e = sample();
        let template = e.items[1].clone();
        e.items = (0..10_000)
            .map(|n| {
                let mut i = template.clone();
                i.id = format!("i{n:012x}");
                i.user = format!("user{n}@example.com");
                i
            })
            .collect();
        let started = std::time::Instant::now();
        let html = to_html(&e);
        let elapsed = started.elapsed();
        assert_eq!(text_of(&html, "items"), "10000");
        assert_eq!(text_of(&html, "removed"), "10000");
        assert_eq!(
            html.matches("<rect").count(),
            3,
            "one bar per kind, not per item"
        );
        assert!(
            html.len() < 10_000 * 1_000,
            "{} bytes for 10,000 items",
            html.len()
        );
        assert!(elapsed.as_secs() < 5, "took {elapsed:?}");
        assert_eq!(read_csv(&to_csv(&e)).1.len(), 10_000);
    }
}
