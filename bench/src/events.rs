//! A deterministic stream of rating events, as ratingingester reads them
//! (one JSON object per line), ending with a *probe* that tells a harness
//! when a rating instance has applied all of them.
//!
//! The body is `events` events over `movies` movies and `users` users: puts
//! of a random rating, and (with probability `delete_share`, once there is
//! something to delete) deletes of a rating put earlier. The same spec gives
//! the same bytes: the generator is a ChaCha8 stream seeded from the spec.
//!
//! **The probe.** After the body come [`PROBE_USERS`] puts on record
//! [`PROBE_RECORD`]: user `probe-0` rates 5, the 63 others rate 1. The
//! average is 68/64 = 1.0625 (exact in binary floating point) only when all
//! 64 are applied: with k of them applied it is (4 + k)/k if `probe-0` is
//! among them, else 1. Kafka keys are `movie/bench-probe/probe-N`, 64 keys
//! that land on every partition of a 3-partition topic (see the tests), and
//! every partition is applied in order. So once the average reads 1.0625, the
//! probe event of every partition has been applied, and so has everything
//! published before it.
use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The record the probe users rate.
pub const PROBE_RECORD: &str = "bench-probe";
/// How many users rate the probe record.
pub const PROBE_USERS: u32 = 64;
/// The probe record's average once every probe event is applied: (5 + 63) / 64.
pub const PROBE_AVERAGE: f64 = 1.0625;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventSpec {
    /// Events before the probe.
    pub events: u64,
    /// Movie ids are `0..movies`.
    pub movies: u32,
    /// User ids are `0..users`.
    pub users: u32,
    /// The share of events that delete an earlier put.
    pub delete_share: f64,
    pub seed: u64,
}

impl Default for EventSpec {
    fn default() -> Self {
        Self { events: 1_000_000, movies: 10_000, users: 100_000, delete_share: 0.1, seed: 1 }
    }
}

/// One line of the output, in ratingingester's format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLine {
    pub record_id: String,
    pub record_type: &'static str,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating_value: Option<i32>,
    pub event_type: &'static str,
}

impl EventLine {
    fn put(record_id: String, user_id: String, value: i32) -> Self {
        Self { record_id, record_type: "movie", user_id, rating_value: Some(value), event_type: "put" }
    }

    fn delete(record_id: String, user_id: String) -> Self {
        Self { record_id, record_type: "movie", user_id, rating_value: None, event_type: "delete" }
    }
}

/// The events of a spec, body then probe.
pub struct Events {
    spec: EventSpec,
    rng: ChaCha8Rng,
    emitted: u64,
    /// (movie, user) pairs put and not deleted since, the candidates of a delete.
    live: Vec<(u32, u32)>,
    probe_emitted: u32,
}

impl Events {
    pub fn new(spec: EventSpec) -> Self {
        Self { spec, rng: ChaCha8Rng::seed_from_u64(spec.seed), emitted: 0, live: Vec::new(), probe_emitted: 0 }
    }
}

impl Iterator for Events {
    type Item = EventLine;

    fn next(&mut self) -> Option<EventLine> {
        if self.emitted < self.spec.events {
            self.emitted += 1;
            if !self.live.is_empty() && self.rng.random_bool(self.spec.delete_share) {
                let index = self.rng.random_range(0..self.live.len());
                let (movie, user) = self.live.swap_remove(index);
                return Some(EventLine::delete(movie.to_string(), user.to_string()));
            }
            let movie = self.rng.random_range(0..self.spec.movies.max(1));
            let user = self.rng.random_range(0..self.spec.users.max(1));
            let value = self.rng.random_range(1..=5);
            self.live.push((movie, user));
            return Some(EventLine::put(movie.to_string(), user.to_string(), value));
        }
        if self.probe_emitted < PROBE_USERS {
            let user = self.probe_emitted;
            self.probe_emitted += 1;
            let value = if user == 0 { 5 } else { 1 };
            return Some(EventLine::put(PROBE_RECORD.to_owned(), format!("probe-{user}"), value));
        }
        None
    }
}

/// Writes the events of `spec` as NDJSON; returns how many lines.
pub fn write_events(spec: EventSpec, out: impl Write) -> io::Result<u64> {
    let mut out = io::BufWriter::new(out);
    let mut lines = 0;
    for event in Events::new(spec) {
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
        lines += 1;
    }
    out.flush()?;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap, HashSet};

    use contract::{event::RatingEvent, rating::RatingRange};

    use super::*;

    fn spec(events: u64, seed: u64) -> EventSpec {
        EventSpec { events, movies: 50, users: 200, delete_share: 0.1, seed }
    }

    fn generate(spec: EventSpec) -> Vec<u8> {
        let mut out = Vec::new();
        write_events(spec, &mut out).unwrap();
        out
    }

    fn parse(ndjson: &[u8]) -> Vec<RatingEvent> {
        let range = RatingRange::new(1, 5).unwrap();
        ndjson
            .split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                RatingEvent::from_json(line, range)
                    .unwrap_or_else(|error| panic!("{}: {error}", String::from_utf8_lossy(line)))
            })
            .collect()
    }

    /// What a rating store holds after applying `events` in order: one
    /// rating per (record, user).
    fn apply<'a>(events: impl IntoIterator<Item = &'a RatingEvent>) -> HashMap<(String, String), i32> {
        let mut store = HashMap::new();
        for event in events {
            match event {
                RatingEvent::Put { key, user, value } => {
                    store.insert((key.record_id.as_str().to_owned(), user.as_str().to_owned()), value.get());
                }
                RatingEvent::Delete { key, user } => {
                    store.remove(&(key.record_id.as_str().to_owned(), user.as_str().to_owned()));
                }
            }
        }
        store
    }

    fn average(store: &HashMap<(String, String), i32>, record: &str) -> Option<f64> {
        let values: Vec<i32> = store.iter().filter(|((id, _), _)| id == record).map(|(_, value)| *value).collect();
        (!values.is_empty()).then(|| values.iter().sum::<i32>() as f64 / values.len() as f64)
    }

    #[test]
    fn the_same_spec_gives_the_same_bytes_and_another_seed_others() {
        assert_eq!(generate(spec(5_000, 7)), generate(spec(5_000, 7)));
        assert_ne!(generate(spec(5_000, 7)), generate(spec(5_000, 8)));
    }

    #[test]
    fn every_line_is_an_event_ratingingester_accepts() {
        let ndjson = generate(spec(5_000, 1));
        let first = ndjson.split(|byte| *byte == b'\n').next().unwrap();
        let first = String::from_utf8_lossy(first);
        assert!(
            first.starts_with(r#"{"recordId":""#) && first.contains(r#""recordType":"movie","userId":""#),
            "{first}"
        );
        assert_eq!(parse(&ndjson).len(), 5_000 + PROBE_USERS as usize);
        assert_eq!(write_events(spec(5_000, 1), io::sink()).unwrap(), 5_064);
    }

    #[test]
    fn about_a_tenth_are_deletes_each_of_a_rating_put_before() {
        let events = parse(&generate(spec(20_000, 3)));
        let mut put = HashSet::new();
        let mut deletes = 0;
        for event in &events {
            let pair = (event.key().clone(), event.user().clone());
            match event {
                RatingEvent::Put { .. } => {
                    put.insert(pair);
                }
                RatingEvent::Delete { .. } => {
                    assert!(put.contains(&pair), "a delete of {pair:?}, never put");
                    deletes += 1;
                }
            }
        }
        assert!((1_700..=2_300).contains(&deletes), "{deletes} deletes of 20000");
    }

    #[test]
    fn the_probe_average_is_reached_only_when_every_probe_event_is_applied() {
        let events = parse(&generate(spec(2_000, 5)));
        let (body, probe) = events.split_at(2_000);
        assert_eq!(probe.len(), PROBE_USERS as usize);
        assert_eq!(average(&apply(&events), PROBE_RECORD), Some(PROBE_AVERAGE));
        assert_eq!(average(&apply(body), PROBE_RECORD), None);
        // Any probe event missing, the average is another.
        for missing in 0..probe.len() {
            let applied = body.iter().chain(probe.iter().enumerate().filter(|(i, _)| *i != missing).map(|(_, e)| e));
            assert_ne!(average(&apply(applied), PROBE_RECORD), Some(PROBE_AVERAGE), "without probe event {missing}");
        }
        // Any prefix of the probe block, likewise.
        for applied in 1..probe.len() {
            let store = apply(body.iter().chain(&probe[..applied]));
            assert_ne!(average(&store, PROBE_RECORD), Some(PROBE_AVERAGE), "{applied} probe events");
        }
    }

    /// Kafka's murmur2 (the Java client's `Utils.murmur2`, which librdkafka's
    /// `murmur2_random` partitioner matches for keyed messages).
    fn murmur2(data: &[u8]) -> i32 {
        const M: u32 = 0x5bd1_e995;
        let mut hash: u32 = 0x9747_b28c ^ data.len() as u32;
        let chunks = data.chunks_exact(4);
        let tail = chunks.remainder();
        for chunk in chunks {
            let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            k = k.wrapping_mul(M);
            k ^= k >> 24;
            k = k.wrapping_mul(M);
            hash = hash.wrapping_mul(M) ^ k;
        }
        if !tail.is_empty() {
            for (i, byte) in tail.iter().enumerate().rev() {
                hash ^= u32::from(*byte) << (8 * i);
            }
            hash = hash.wrapping_mul(M);
        }
        hash ^= hash >> 13;
        hash = hash.wrapping_mul(M);
        hash ^= hash >> 15;
        hash as i32
    }

    #[test]
    fn murmur2_matches_kafkas_test_vectors() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58_897_971);
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn the_probe_keys_land_on_every_partition_of_the_ratings_topic() {
        assert_eq!(contract::kafka::PARTITIONER, "murmur2_random");
        let probe = parse(&generate(spec(0, 1)));
        for partitions in 1..=3 {
            let covered: BTreeSet<i32> =
                probe.iter().map(|event| (murmur2(event.kafka_key().as_bytes()) & 0x7fff_ffff) % partitions).collect();
            assert_eq!(covered.len(), partitions as usize, "{partitions} partitions");
        }
    }
}
