//! Human-readable text for posts, times and places. JSON output does not
//! come through here: it prints the service's own types as they are.

use std::io::{self, Write};

use hearth_proto::Location;

use crate::core::services::market::PostView;

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

pub fn place(l: &Location) -> String {
    let at = format!("{}, {}", degrees(l.lat), degrees(l.lng));
    if l.label.is_empty() {
        at
    } else {
        format!("{} ({at})", l.label)
    }
}

/// Short form of a node id for lists (the full id is in `get` and `--json`).
pub fn short_id(hex: &str) -> &str {
    hex.get(..12).unwrap_or(hex)
}

/// One post in two lines: what it is, then who, when and where.
pub fn post_line(w: &mut dyn Write, p: &PostView, now_ms: u64) -> io::Result<()> {
    let tags = if p.tags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", p.tags.join(", "))
    };
    writeln!(w, "{}  {:<9} {}{tags}", p.id, p.category.as_str(), p.title)?;
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
        (Some(reason), _) => format!("ended: {reason}"),
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
    row(w, "title", &p.title)?;
    let body = p.body.replace('\n', &format!("\n{:12}", ""));
    row(w, "body", &body)?;
    row(w, "tags", &p.tags.join(", "))?;
    if let Some(l) = &p.location {
        row(w, "location", &place(l))?;
    }
    row(w, "status", &p.status)?;
    if let (Some(reason), Some(by)) = (&p.expired_reason, &p.expired_by) {
        row(
            w,
            "ended",
            &format!("{reason}, by {}", short_id(&by.to_hex())),
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
        row(w, "client id", c)?;
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

    /// Microdegrees print as exact decimal degrees, signs and leading zeros kept.
    #[test]
    fn microdegrees_print_exactly() {
        assert_eq!(degrees(-33_856_784), "-33.856784");
        assert_eq!(degrees(5), "0.000005");
        assert_eq!(degrees(-5), "-0.000005");
        assert_eq!(degrees(180_000_000), "180.000000");
    }
}
