//! Human-readable text for posts, times, places and anything else an event
//! carries to a terminal. JSON output does not come through here: it prints
//! the service's own types as they are (JSON escapes them).
//!
//! Everything in an event was written by some member, and any member can be
//! hostile. So every piece of event text that a human output path prints
//! goes through [`line`] (single-line fields: titles, tags, names, labels,
//! reasons) or [`block`] (bodies), which make control characters visible
//! instead of letting them act on the terminal. See docs/decisions.md,
//! "Terminal output of event text".

use std::fmt::Write as _;
use std::io::{self, Write};

use hearth_proto::Location;

use crate::core::services::market::PostView;

/// What a tab becomes in a body: spaces, so a tab can neither reach a
/// terminal's tab stops nor be told apart from indentation by the reader.
const TAB_SPACES: &str = "    ";

/// Characters that reorder the text around them (Unicode bidi embeddings,
/// overrides and isolates, and the invisible direction marks): the
/// "Trojan Source" spoof makes a line read differently from its bytes.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` must not reach a terminal as itself: C0 and C1 controls
/// (ESC starts terminal escape sequences; U+009B is a one-byte CSI on some
/// terminals; CR returns to column 0 and overwrites), DEL, the bidi
/// controls, and the Unicode line and paragraph separators.
fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Appends `c` escaped visibly: `\n`, `\r`, `\e` (ESC), `\0`, else
/// `\u{7}`-style hex as Rust writes it.
fn push_visible(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\u{1b}' => out.push_str("\\e"),
        '\0' => out.push_str("\\0"),
        _ => {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// How [`escape`] treats line breaks.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// One line: every control character is escaped, and every run of
    /// whitespace (tabs included) becomes one space, so a field cannot pad
    /// itself out to wrap onto a terminal row that looks like the next line
    /// of the listing.
    Line,
    /// Several lines: `\n` stays a line break and the next line starts with
    /// this indent, so no line of the text starts at column 0, where headers
    /// and fields are printed; tabs become spaces.
    Block(&'a str),
}

/// The one escaping function; [`line`] and [`block`] name its modes.
fn escape(s: &str, mode: Mode<'_>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut after_space = false;
    for c in s.chars() {
        match mode {
            Mode::Line => {
                if c == '\t' || (c.is_whitespace() && !is_unsafe(c)) {
                    if !after_space {
                        out.push(' ');
                    }
                    after_space = true;
                    continue;
                }
                after_space = false;
                if is_unsafe(c) {
                    push_visible(&mut out, c);
                } else {
                    out.push(c);
                }
            }
            Mode::Block(indent) => match c {
                '\n' => {
                    out.push('\n');
                    out.push_str(indent);
                }
                '\t' => out.push_str(TAB_SPACES),
                c if is_unsafe(c) => push_visible(&mut out, c),
                c => out.push(c),
            },
        }
    }
    out
}

/// A single-line field from an event (title, tag, name, label, reason), safe
/// to print: control characters escaped visibly (`\n`, `\e`, `\u{202e}`),
/// whitespace runs collapsed to one space.
pub fn line(s: &str) -> String {
    escape(s, Mode::Line)
}

/// A multi-line text from an event (a body), safe to print: line breaks
/// kept, each continuation line starting with `indent`, tabs as spaces,
/// every other control character escaped visibly.
pub fn block(s: &str, indent: &str) -> String {
    escape(s, Mode::Block(indent))
}

/// A compact distance in time: `in 6d 23h`, `3m ago`.
pub fn relative(target_ms: u64, now_ms: u64) -> String {
    let (span_ms, future) = if target_ms >= now_ms {
        (target_ms - now_ms, true)
    } else {
        (now_ms - target_ms, false)
    };
    let s = span_ms / 1000;
    let text = match s {
        0..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m", s / 60),
        3_600..=86_399 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Microdegrees as decimal degrees, exactly (no floats): `-33.856784`.
pub fn degrees(micro: i64) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let abs = micro.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// A location as people read it; the label is event text, so escaped.
pub fn place(l: &Location) -> String {
    let at = format!("{}, {}", degrees(l.lat), degrees(l.lng));
    if l.label.is_empty() {
        at
    } else {
        format!("{} ({at})", line(&l.label))
    }
}

/// Hex characters of a node id shown where space is tight: 8 (32 bits)
/// tell apart the members of a neighbourhood; `member add` and `get` take
/// and show the full 64.
pub const SHORT_ID_CHARS: usize = 8;

/// Short form of a node id for lists (the full id is in `get` and `--json`).
pub fn short_id(hex: &str) -> &str {
    hex.get(..SHORT_ID_CHARS).unwrap_or(hex)
}

/// One post in two lines: what it is, then who, when and where.
pub fn post_line(w: &mut dyn Write, p: &PostView, now_ms: u64) -> io::Result<()> {
    let tags = if p.tags.is_empty() {
        String::new()
    } else {
        let tags: Vec<String> = p.tags.iter().map(|t| line(t)).collect();
        format!("  [{}]", tags.join(", "))
    };
    writeln!(
        w,
        "{}  {:<9} {}{tags}",
        p.id,
        p.category.as_str(),
        line(&p.title)
    )?;
    let mut facts = vec![
        format!("by {}", short_id(&p.author.to_hex())),
        expiry(p, now_ms),
    ];
    if let Some(l) = &p.location {
        facts.push(place(l));
    }
    writeln!(w, "{:28}{}", "", facts.join("  ·  "))
}

fn expiry(p: &PostView, now_ms: u64) -> String {
    match (&p.expired_reason, p.status.as_str()) {
        (Some(reason), _) => format!("ended: {}", line(&reason.to_string())),
        (None, "hidden") => "hidden (author is not a member)".to_owned(),
        _ if p.expires_at <= now_ms => format!("expired {}", relative(p.expires_at, now_ms)),
        _ => format!("expires {}", relative(p.expires_at, now_ms)),
    }
}

/// Every field of one post, one per line.
pub fn post_detail(w: &mut dyn Write, p: &PostView, now_ms: u64) -> io::Result<()> {
    let row = |w: &mut dyn Write, k: &str, v: &str| writeln!(w, "{k:<10}  {v}");
    row(w, "id", &p.id.to_string())?;
    row(w, "author", &p.author.to_hex())?;
    row(w, "category", p.category.as_str())?;
    row(w, "title", &line(&p.title))?;
    // Continuation lines start under the first one, never at column 0
    // where the field names are.
    row(w, "body", &block(&p.body, &" ".repeat(12)))?;
    let tags: Vec<String> = p.tags.iter().map(|t| line(t)).collect();
    row(w, "tags", &tags.join(", "))?;
    if let Some(l) = &p.location {
        row(w, "location", &place(l))?;
    }
    row(w, "status", &line(&p.status))?;
    if let (Some(reason), Some(by)) = (&p.expired_reason, &p.expired_by) {
        row(
            w,
            "ended",
            &format!(
                "{}, by {}",
                line(&reason.to_string()),
                short_id(&by.to_hex())
            ),
        )?;
    }
    row(
        w,
        "expires",
        &format!(
            "{} (at {} ms)",
            relative(p.expires_at, now_ms),
            p.expires_at
        ),
    )?;
    if let Some(c) = &p.client_id {
        row(w, "client id", &line(c))?;
    }
    row(
        w,
        "lamport",
        &format!("{} (created at {})", p.lamport, p.created_lamport),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Times print as the two largest units, forwards or back.
    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(61_000, 0), "in 1m");
        assert_eq!(relative(0, 7_200_000), "2h 0m ago");
        assert_eq!(relative(7 * 86_400_000, 0), "in 7d 0h");
    }

    /// A newline in a single-line field shows as `\n`, so a title cannot
    /// start a fake line of its own.
    #[test]
    fn line_escapes_newlines_and_carriage_returns() {
        assert_eq!(line("Ladder\nby 3f2a"), "Ladder\\nby 3f2a");
        assert_eq!(line("a\r\nb"), "a\\r\\nb");
        assert!(!line("x\ny\rz\u{85}w").contains(['\n', '\r', '\u{85}']));
    }

    /// Terminal escape sequences (SGR, OSC, a one-byte C1 CSI) print as
    /// visible text; no ESC, BEL or C1 byte is left.
    #[test]
    fn line_escapes_terminal_sequences() {
        assert_eq!(line("\u{1b}[8mhidden"), "\\e[8mhidden");
        assert_eq!(line("\u{1b}]0;pwned\u{7}"), "\\e]0;pwned\\u{7}");
        assert_eq!(line("\u{9b}2J\u{7f}\0"), "\\u{9b}2J\\u{7f}\\0");
        let all: String = (0u8..=0x1f).map(char::from).collect();
        assert!(line(&all).chars().all(|c| !c.is_control()));
    }

    /// Bidi embeddings, overrides, isolates and marks (Trojan Source), and
    /// the Unicode line separators, are escaped; ordinary non-ASCII text is not.
    #[test]
    fn line_escapes_bidi_controls_but_keeps_other_scripts() {
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}'] {
            assert_eq!(line(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
        }
        for c in [
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200f}', '\u{2028}',
        ] {
            assert!(!line(&format!("a{c}b")).contains(c), "{:x}", u32::from(c));
        }
        assert_eq!(
            line("Fahrrad für Kinder — שלום 👩‍👧"),
            "Fahrrad für Kinder — שלום 👩‍👧"
        );
    }

    /// Tabs and runs of whitespace in a single-line field become one space,
    /// so padding cannot push text onto a wrapped row of its own.
    #[test]
    fn line_collapses_whitespace_runs() {
        assert_eq!(line("a\tb"), "a b");
        assert_eq!(line(&format!("a{}by x", " ".repeat(200))), "a by x");
        assert_eq!(line("a \u{a0}\u{3000} b"), "a b");
    }

    /// A body keeps its line breaks, but every continuation line starts
    /// with the indent (never at column 0); tabs become spaces; CR and ESC
    /// are escaped.
    #[test]
    fn block_indents_continuation_lines_and_escapes_the_rest() {
        assert_eq!(block("one\ntwo", "  "), "one\n  two");
        assert_eq!(block("a\tb", ""), "a    b");
        assert_eq!(block("x\r\u{1b}[2Ky\u{202e}", "  "), "x\\r\\e[2Ky\\u{202e}");
        let shown = block("fine\nby 3f2a0c9e\nstatus      active", "    ");
        assert!(
            shown.lines().skip(1).all(|l| l.starts_with("    ")),
            "{shown}"
        );
    }

    /// Microdegrees print as exact decimal degrees, signs and leading zeros kept.
    #[test]
    fn microdegrees_print_exactly() {
        assert_eq!(degrees(-33_856_784), "-33.856784");
        assert_eq!(degrees(5), "0.000005");
        assert_eq!(degrees(-5), "-0.000005");
        assert_eq!(degrees(180_000_000), "180.000000");
    }
}
