//! Abuse limits of the HTTP API: per-client token buckets on writes and on
//! searches, and the JSON nesting bound checked before a body is parsed.
//!
//! A client is its peer IP; on loopback, where every local program shares
//! one address, a request carrying a bearer token is keyed by (a hash of)
//! that token instead, so a page paired with its own device token does not
//! share a bucket with a script. The table of clients is bounded
//! ([`CLIENTS_MAX`]); when full, the client seen longest ago is dropped
//! (its bucket has refilled most, so forgetting it costs least).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// Writes a client may make at once before the rate applies: a household
/// posting a few offers in a row never waits.
pub const WRITE_BURST: u32 = 20;
/// Writes a client may make per minute once its burst is spent: far more
/// than a person types, far fewer than a flood that would fill the log.
pub const WRITES_PER_MINUTE: u32 = 30;
/// Searches at once: a page typing ahead sends one per key stroke.
pub const SEARCH_BURST: u32 = 30;
/// Searches per minute once the burst is spent: each scans every post.
pub const SEARCHES_PER_MINUTE: u32 = 120;
/// Clients remembered. Each entry is a few dozen bytes; 4096 is more
/// clients than a household LAN holds, and bounds the table a spoofing
/// flood could grow.
pub const CLIENTS_MAX: usize = 4096;
/// Deepest nesting of arrays and objects a request body may have. The
/// deepest real request (a batch of calls with a location) is 4 deep; the
/// bound refuses a deeply nested body before any recursive parser sees it.
pub const JSON_DEPTH_MAX: usize = 32;

/// A token bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Calls allowed at once.
    pub burst: u32,
    /// Calls regained per minute.
    pub per_minute: u32,
}

/// What is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Write,
    Search,
}

impl Kind {
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Write => "writes",
            Kind::Search => "searches",
        }
    }
}

/// Who is calling, for the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Client {
    Ip(IpAddr),
    /// The first 16 bytes of SHA-256 of the bearer token (the table never
    /// holds a token).
    Token([u8; 16]),
}

impl Client {
    /// The client of a request from `ip` with this `Authorization` value.
    pub fn of(ip: IpAddr, authorization: Option<&str>) -> Client {
        match authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            Some(token) if ip.is_loopback() => {
                let digest = Sha256::digest(token.trim().as_bytes());
                let mut key = [0u8; 16];
                key.copy_from_slice(&digest[..16]);
                Client::Token(key)
            }
            _ => Client::Ip(ip),
        }
    }
}

/// A refusal: how long until the calls asked for would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub kind: Kind,
    pub rate: Rate,
    /// Whole seconds, at least 1 (the `Retry-After` value).
    pub retry_after_s: u64,
}

impl Limited {
    /// The sentence for the person: what was limited, the rule, and when
    /// to try again.
    pub fn message(&self) -> String {
        format!(
            "too many {} from this client: {} at once, then {} a minute; retry in {} s",
            self.kind.plural(),
            self.rate.burst,
            self.rate.per_minute,
            self.retry_after_s
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
struct Entry {
    buckets: BTreeMap<Kind, Bucket>,
    seen: Instant,
}

/// The per-client buckets.
#[derive(Debug)]
pub struct Limiter {
    writes: Rate,
    searches: Rate,
    clients: Mutex<BTreeMap<Client, Entry>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(
            Rate {
                burst: WRITE_BURST,
                per_minute: WRITES_PER_MINUTE,
            },
            Rate {
                burst: SEARCH_BURST,
                per_minute: SEARCHES_PER_MINUTE,
            },
        )
    }
}

impl Limiter {
    pub fn new(writes: Rate, searches: Rate) -> Limiter {
        Limiter {
            writes,
            searches,
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    fn rate(&self, kind: Kind) -> Rate {
        match kind {
            Kind::Write => self.writes,
            Kind::Search => self.searches,
        }
    }

    /// Takes `n` calls of `kind` from `client`'s bucket, or says how long
    /// until it holds them (taking nothing). `n == 0` always passes.
    pub fn take(&self, client: Client, kind: Kind, n: u32) -> Result<(), Limited> {
        self.take_all(client, &[(kind, n)])
    }

    /// [`Limiter::take`] for several kinds at once (a batch of writes and
    /// searches): all are taken, or none.
    pub fn take_all(&self, client: Client, wants: &[(Kind, u32)]) -> Result<(), Limited> {
        self.take_at(client, wants, Instant::now())
    }

    fn take_at(&self, client: Client, wants: &[(Kind, u32)], now: Instant) -> Result<(), Limited> {
        if wants.iter().all(|(_, n)| *n == 0) {
            return Ok(());
        }
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !clients.contains_key(&client) && clients.len() >= CLIENTS_MAX {
            let oldest = clients.iter().min_by_key(|(_, e)| e.seen).map(|(c, _)| *c);
            if let Some(oldest) = oldest {
                clients.remove(&oldest);
            }
        }
        let entry = clients.entry(client).or_insert_with(|| Entry {
            buckets: BTreeMap::new(),
            seen: now,
        });
        entry.seen = now;
        // Refill every bucket asked of, and refuse before taking any.
        for &(kind, n) in wants.iter().filter(|(_, n)| *n > 0) {
            let rate = self.rate(kind);
            let bucket = entry.buckets.entry(kind).or_insert(Bucket {
                tokens: f64::from(rate.burst),
                at: now,
            });
            let per_second = f64::from(rate.per_minute) / 60.0;
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * per_second).min(f64::from(rate.burst));
            bucket.at = now;
            let wanted = f64::from(n);
            if bucket.tokens < wanted {
                // More than the burst at once never fits: the wait given is
                // the time to a full bucket, and the message says the burst.
                let missing = wanted.min(f64::from(rate.burst)) - bucket.tokens;
                let retry_after_s = if per_second > 0.0 {
                    (missing / per_second).ceil().max(1.0) as u64
                } else {
                    u64::from(u32::MAX)
                };
                return Err(Limited {
                    kind,
                    rate,
                    retry_after_s,
                });
            }
        }
        for &(kind, n) in wants {
            if let Some(bucket) = entry.buckets.get_mut(&kind) {
                bucket.tokens -= f64::from(n);
            }
        }
        Ok(())
    }

    /// Clients remembered now.
    pub fn clients(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// Why a body's nesting was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the JSON nests arrays and objects over {max} deep; requests need a handful of levels")]
pub struct TooDeep {
    pub max: usize,
}

/// Refuses a body whose arrays and objects nest deeper than `max`, by one
/// pass over its bytes (brackets inside strings do not count). Malformed
/// JSON passes: the parser after this says what is wrong with it.
pub fn check_depth(body: &[u8], max: usize) -> Result<(), TooDeep> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(TooDeep { max });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SLOW: Rate = Rate {
        burst: 2,
        per_minute: 60,
    };

    fn ip(n: u8) -> Client {
        Client::Ip(IpAddr::from([10, 0, 0, n]))
    }

    /// A bucket allows its burst, then refuses with the seconds until one
    /// call is back, and allows again once that time has passed.
    #[test]
    fn burst_then_refusal_then_refill() {
        let l = Limiter::new(SLOW, SLOW);
        let t0 = Instant::now();
        assert!(l.take_at(ip(1), &[(Kind::Write, 2)], t0).is_ok());
        let refused = l.take_at(ip(1), &[(Kind::Write, 1)], t0).unwrap_err();
        assert_eq!(refused.retry_after_s, 1);
        assert!(
            refused.message().contains("retry in 1 s"),
            "{}",
            refused.message()
        );
        // Searches have their own bucket; other clients too.
        assert!(l.take_at(ip(1), &[(Kind::Search, 1)], t0).is_ok());
        assert!(l.take_at(ip(2), &[(Kind::Write, 1)], t0).is_ok());
        assert!(l
            .take_at(
                ip(1),
                &[(Kind::Write, 1)],
                t0 + Duration::from_millis(1_100)
            )
            .is_ok());
    }

    /// Asking for more than the burst at once is refused without taking
    /// anything (a batch of more writes than the burst is never served),
    /// and so is a batch whose searches do not fit though its writes do.
    #[test]
    fn more_than_the_burst_at_once_is_refused_whole() {
        let l = Limiter::new(SLOW, SLOW);
        let t0 = Instant::now();
        assert!(l.take_at(ip(1), &[(Kind::Write, 3)], t0).is_err());
        let both = [(Kind::Write, 1), (Kind::Search, 3)];
        assert_eq!(
            l.take_at(ip(1), &both, t0).map_err(|e| e.kind),
            Err(Kind::Search)
        );
        assert!(l.take_at(ip(1), &[(Kind::Write, 2)], t0).is_ok());
    }

    /// The table never holds more than [`CLIENTS_MAX`] clients; the one
    /// seen longest ago is the one forgotten.
    #[test]
    fn the_client_table_is_bounded_and_evicts_the_oldest() {
        let l = Limiter::new(SLOW, SLOW);
        let t0 = Instant::now();
        for i in 0..=CLIENTS_MAX {
            let c = Client::Ip(IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]));
            let at = t0 + Duration::from_millis(i as u64);
            assert!(l.take_at(c, &[(Kind::Write, 2)], at).is_ok());
        }
        assert_eq!(l.clients(), CLIENTS_MAX);
        // The first (oldest) was forgotten: its bucket is full again.
        let first = Client::Ip(IpAddr::from([10, 0, 0, 0]));
        let later = t0 + Duration::from_millis(CLIENTS_MAX as u64 + 1);
        assert!(l.take_at(first, &[(Kind::Write, 2)], later).is_ok());
    }

    /// Loopback clients with a token are keyed by the token; others (and
    /// loopback without one) by IP.
    #[test]
    fn loopback_clients_are_told_apart_by_token() {
        let lo = IpAddr::from([127, 0, 0, 1]);
        let a = Client::of(lo, Some("Bearer aaa"));
        let b = Client::of(lo, Some("Bearer bbb"));
        assert_ne!(a, b);
        assert_eq!(Client::of(lo, None), Client::Ip(lo));
        let lan = IpAddr::from([192, 168, 1, 2]);
        assert_eq!(Client::of(lan, Some("Bearer aaa")), Client::Ip(lan));
    }

    /// Nesting is counted outside strings only, and the bound is exact.
    #[test]
    fn depth_is_counted_outside_strings() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(check_depth(deep.as_bytes(), 32), Err(TooDeep { max: 32 }));
        let ok = format!("{}{}", "[".repeat(32), "]".repeat(32));
        assert!(check_depth(ok.as_bytes(), 32).is_ok());
        let quoted = format!("{{\"a\": \"{}\\\"[\"}}", "[".repeat(100));
        assert!(check_depth(quoted.as_bytes(), 2).is_ok());
    }
}
