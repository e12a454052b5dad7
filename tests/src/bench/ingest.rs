//! `ingest`: received bytes through decode + verify + sled + view apply,
//! the way a running node takes a sync message's events
//! (`Node::receive_batch` with the driver's `VerifyAhead`, which verifies
//! on a second thread while the core stores), against the single-core
//! decode + `verify_strict` rate of the same bytes. Target ratio >= 0.6.
//!
//! The machine is noisy, so ingest and its ceiling are measured in
//! alternating rounds over the same slices of events, and the ratio is of
//! the summed times. A breakdown follows (same events): the same path on
//! one thread (no verifier), the log alone on sled (already verified), the
//! sled store alone, the log on the in-memory store (view apply with almost
//! no storage cost).
//!
//! The nodes and logs have answered a sync session's opening digest
//! before they take the events, as a running node has when a sync message
//! brings them: the store then keeps its fingerprints in memory and checks
//! duplicates against them. The bare store loops have not (no sync), so
//! they look each hash up in sled.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use ed25519_dalek::{Signature, VerifyingKey};
use hearth_node::core::log::FLUSH_BATCH_EVENTS;
use hearth_node::core::sync::EVENT_BATCH_BYTES_MAX;
use hearth_node::core::{Config, EventLog, Ingested, Node, Source};
use hearth_node::net::verify_ahead::VerifyAhead;
use hearth_node::store::{EventStore, MemoryStore, SledStore};
use hearth_proto::{SignedEvent, VerifiedEvent};
use serde_json::json;

use super::{dir_size, emit, figure, progress, round, sign_all, Fixture, Mix};

const ROUNDS: usize = 10;
const TARGET_RATIO: f64 = 0.6;

/// A log over a fresh sled store in `dir`, holding the fixture's history.
fn sled_log(fx: &Fixture, dir: &std::path::Path) -> anyhow::Result<EventLog<SledStore>> {
    let (mut log, _) = EventLog::open(SledStore::open(&dir.join("store"))?, fx.genesis())?;
    for h in fx.history() {
        log.append_received(h.clone())?;
    }
    log.flush()?;
    // Events come by sync after the session's opening digest, which makes
    // the store keep its fingerprints (and check duplicates against them).
    log.store().log_digest()?;
    Ok(log)
}

/// A node over a fresh sled store in `dir`, holding the fixture's history.
fn sled_node(fx: &Fixture, dir: &std::path::Path) -> anyhow::Result<Node<SledStore>> {
    let store = SledStore::open(&dir.join("store"))?;
    let mut node = Node::new(
        fx.members[0].clone(),
        fx.genesis(),
        store,
        Config::default(),
        1,
    )?;
    for h in fx.history() {
        node.log_mut().append_received(h.clone())?;
    }
    node.log_mut().flush()?;
    // As in `sled_log`: a sync session opened with the log's digest.
    node.log().store().log_digest()?;
    Ok(node)
}

/// Consecutive events of at most one sync message's event bytes.
fn sync_batches(part: &[Vec<u8>]) -> Vec<&[Vec<u8>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, b) in part.iter().enumerate() {
        if bytes + b.len() > EVENT_BATCH_BYTES_MAX && i > start {
            out.push(&part[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b.len();
    }
    if start < part.len() {
        out.push(&part[start..]);
    }
    out
}

/// Takes a batch the way the core takes a sync message's events.
fn take_batch(node: &mut Node<SledStore>, batch: &[Vec<u8>], from: Source) {
    node.receive_batch(batch, from);
    while node.poll_output().is_some() {}
}

fn expect_stored(r: Ingested) -> anyhow::Result<()> {
    match r {
        Ingested::Stored(_) => Ok(()),
        Ingested::Pending => Err(anyhow!("a member's event was held pending")),
    }
}

pub fn ingest(n: usize) -> anyhow::Result<()> {
    let fx = Fixture::new(20)?;
    let mut mix = Mix::new(&fx, 0x1e57);
    progress(format_args!("ingest: signing {n} events"));
    let events = sign_all(&fx.signers(), mix.plan(n))?;
    let bytes: Vec<Vec<u8>> = events.iter().map(|e| e.bytes().to_vec()).collect();
    let avg_bytes = bytes.iter().map(Vec::len).sum::<usize>() / n.max(1);
    // Raw ed25519-dalek inputs, prepared outside the timing: the signed
    // bytes as the receiver cuts them out, the signature, the author key.
    let dalek: Vec<([u8; 32], Vec<u8>, [u8; 64])> = bytes
        .iter()
        .zip(&events)
        .map(|(b, e)| {
            Ok((
                e.event().author.0,
                SignedEvent::decode(b)?.signing_input(),
                *e.signature(),
            ))
        })
        .collect::<anyhow::Result<_>>()?;

    let dir = tempfile::tempdir()?;
    let mut node = sled_node(&fx, dir.path())?;
    node.share_verified(VerifyAhead::spawn()?);
    let from = Source::Sync(fx.members[1].node_id());
    let (mut t_ingest, mut t_ceiling, mut t_dalek) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let chunk = n.div_ceil(ROUNDS).max(1);
    progress("ingest: measuring (ingest and its ceiling in alternating rounds)");
    for (round_no, part) in bytes.chunks(chunk).enumerate() {
        let start = round_no * chunk;
        let ceiling = |t: &mut Duration| -> anyhow::Result<()> {
            let t0 = Instant::now();
            for b in part {
                black_box(VerifiedEvent::decode(b)?);
            }
            *t += t0.elapsed();
            Ok(())
        };
        if round_no % 2 == 0 {
            ceiling(&mut t_ceiling)?;
        }
        let t0 = Instant::now();
        for batch in sync_batches(part) {
            take_batch(&mut node, batch, from);
        }
        if start + part.len() == n {
            node.log_mut().flush()?;
        }
        t_ingest += t0.elapsed();
        if round_no % 2 == 1 {
            ceiling(&mut t_ceiling)?;
        }
        let t0 = Instant::now();
        for (key, msg, sig) in &dalek[start..start + part.len()] {
            let ok = VerifyingKey::from_bytes(key)
                .is_ok_and(|k| k.verify_strict(msg, &Signature::from_bytes(sig)).is_ok());
            ensure!(ok, "a fixture signature failed verify_strict");
        }
        t_dalek += t0.elapsed();
    }
    let stored = node.log().store().len();
    ensure!(
        stored as usize == n + fx.history().len() + 1,
        "stored {stored} events, expected {}",
        n + fx.history().len() + 1
    );
    drop(node);
    // Disk (issue 15 item 2: <= 1.5x the events' own bytes), after the
    // handle is closed so sled's files are complete.
    let own_bytes: usize = bytes.iter().map(Vec::len).sum::<usize>()
        + fx.history().iter().map(|e| e.bytes().len()).sum::<usize>()
        + fx.genesis().bytes().len();
    let disk_bytes = dir_size(dir.path());

    progress("ingest: breakdown (one thread, log alone, sled alone, log on the memory store)");
    // The same path on one thread: no verifier, the core decodes itself.
    let dir1 = tempfile::tempdir()?;
    let mut node1 = sled_node(&fx, dir1.path())?;
    let t0 = Instant::now();
    for batch in sync_batches(&bytes) {
        take_batch(&mut node1, batch, from);
    }
    node1.log_mut().flush()?;
    let one_thread = t0.elapsed();
    ensure!(
        node1.log().store().len() == stored,
        "the one-thread run missed events"
    );
    drop(node1);
    // The log alone on sled: store + view apply + batched flush.
    let dir2 = tempfile::tempdir()?;
    let mut log2 = sled_log(&fx, dir2.path())?;
    let t0 = Instant::now();
    for e in events.iter().cloned() {
        expect_stored(log2.append_received(e)?)?;
    }
    log2.flush()?;
    let log_sled = t0.elapsed();
    drop(log2);
    // The sled store alone, flushed as often as the log flushes.
    let dir3 = tempfile::tempdir()?;
    let mut store = SledStore::open(&dir3.path().join("store"))?;
    let t0 = Instant::now();
    for (i, e) in events.iter().enumerate() {
        store.insert(e)?;
        if (i + 1) % FLUSH_BATCH_EVENTS == 0 {
            store.flush()?;
        }
    }
    store.flush()?;
    let sled_only = t0.elapsed();
    drop(store);
    // The sled store alone, never flushed (sled's 500 ms flusher still runs).
    let dir4 = tempfile::tempdir()?;
    let mut store = SledStore::open(&dir4.path().join("store"))?;
    let t0 = Instant::now();
    for e in &events {
        store.insert(e)?;
    }
    let sled_no_flush = t0.elapsed();
    drop(store);
    // Raw sled, for comparison: only the event record (no indexes, no
    // batch), then the store's three records as separate inserts (no batch).
    let dir5 = tempfile::tempdir()?;
    let store = SledStore::open(&dir5.path().join("store"))?;
    let t0 = Instant::now();
    for e in &events {
        let mut k = vec![b'e'];
        k.extend_from_slice(&e.key().to_bytes());
        store
            .raw_tree()
            .ok_or_else(|| anyhow!("store closed"))?
            .insert(k, e.bytes())?;
    }
    let raw_event_only = t0.elapsed();
    drop(store);
    let dir6 = tempfile::tempdir()?;
    let store = SledStore::open(&dir6.path().join("store"))?;
    let t0 = Instant::now();
    for (i, e) in events.iter().enumerate() {
        let key = e.key().to_bytes();
        let tree = store.raw_tree().ok_or_else(|| anyhow!("store closed"))?;
        let pre = |p: u8, rest: &[&[u8]]| {
            let mut k = vec![p];
            for r in rest {
                k.extend_from_slice(r);
            }
            k
        };
        tree.insert(pre(b'e', &[&key]), e.bytes())?;
        tree.insert(pre(b'h', &[&e.hash().0]), &key[..])?;
        tree.insert(pre(b's', &[&(i as u64).to_be_bytes()]), &key[..])?;
    }
    let raw_three = t0.elapsed();
    drop(store);
    // The log on the in-memory store: mostly the view apply.
    let (mut log3, _) = EventLog::open(MemoryStore::new(), fx.genesis())?;
    for h in fx.history() {
        log3.append_received(h.clone())?;
    }
    let t0 = Instant::now();
    for e in events.iter().cloned() {
        expect_stored(log3.append_received(e)?)?;
    }
    let log_memory = t0.elapsed();

    let per_s = |d: Duration| round(n as f64 / d.as_secs_f64(), 0);
    let ratio = t_ceiling.as_secs_f64() / t_ingest.as_secs_f64();
    emit(figure(
        "ingest",
        json!({
            "events": n,
            "authors": fx.members.len(),
            "mix": mix.counts.to_json(),
            "avg_event_bytes": avg_bytes,
            "events_per_s": per_s(t_ingest),
            "ceiling": "decode_verify_strict_per_s (VerifiedEvent::decode of the same bytes, one core)",
            "ceiling_value": per_s(t_ceiling),
            "ratio": round(ratio, 3),
            "target_ratio": TARGET_RATIO,
            "pass": ratio >= TARGET_RATIO,
            "ed25519_dalek_verify_strict_per_s": per_s(t_dalek),
            "verifier": "a second thread (VerifyAhead), as in a running node",
            "sync_batch_bytes_max": EVENT_BATCH_BYTES_MAX,
            "flush_every_events": FLUSH_BATCH_EVENTS,
            "events_own_bytes": own_bytes,
            "store_bytes_on_disk": disk_bytes,
            "disk_per_event_byte": round(disk_bytes as f64 / own_bytes.max(1) as f64, 2),
            "breakdown_per_s": {
                "same_path_one_thread": per_s(one_thread),
                "log_on_sled_preverified": per_s(log_sled),
                "sled_insert_flush_every_batch": per_s(sled_only),
                "sled_insert_no_flush": per_s(sled_no_flush),
                "raw_sled_event_record_only_no_flush": per_s(raw_event_only),
                "raw_sled_three_records_unbatched_no_flush": per_s(raw_three),
                "log_on_memory_store_preverified": per_s(log_memory),
            },
        }),
    ));
    Ok(())
}
