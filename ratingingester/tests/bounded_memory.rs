//! Both passes over the input hold a bounded amount of memory, whatever the
//! size of the input: the heap of this test process is counted while files
//! many times larger than the bound are validated and replayed. Alone in its
//! test binary, so that no other test allocates meanwhile.
use std::{
    alloc::{GlobalAlloc, Layout, System},
    fs::File,
    io::{BufWriter, Write},
    ops::ControlFlow,
    path::PathBuf,
    sync::atomic::{AtomicUsize, Ordering},
};

use contract::rating::RatingRange;
use ratingingester::input::{self, InputSource};

/// The system allocator, counting the bytes it holds and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are `System`'s.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by `System` with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `pointer` was allocated by `System` with `layout`.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most heap both passes may add, whatever the input's size.
const BOUND: usize = 1024 * 1024;
const EVENTS: usize = 100_000;

/// Writes `EVENTS` events, an array or one per line, without holding them.
fn write_events(name: &str, array: bool) -> PathBuf {
    let path = std::env::temp_dir().join(format!("ratingingester-bounded-{}-{name}", std::process::id()));
    let mut out = BufWriter::new(File::create(&path).unwrap());
    let (open, separator, close) = if array { ("[\n", ",\n", "\n]\n") } else { ("", "\n", "\n") };
    out.write_all(open.as_bytes()).unwrap();
    for event in 0..EVENTS {
        if event > 0 {
            out.write_all(separator.as_bytes()).unwrap();
        }
        let kind = if event % 10 == 9 { r#""eventType": "delete""# } else { r#""eventType": "put""# };
        write!(
            out,
            r#"{{"recordId": "{}", "recordType": "movie", "userId": "user-{event}", "ratingValue": {}, {kind}}}"#,
            event % 997,
            event % 5 + 1
        )
        .unwrap();
    }
    out.write_all(close.as_bytes()).unwrap();
    out.into_inner().unwrap().sync_all().unwrap();
    path
}

#[test]
fn both_passes_hold_a_bounded_heap_whatever_the_input_size() {
    let range = RatingRange::default();
    for (name, array) in [("events.json", true), ("events.ndjson", false)] {
        let path = write_events(name, array);
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        assert!(size > 8 * BOUND, "the input ({size} bytes) is many times the bound");

        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let mut input = input::open(&InputSource::File(path.clone())).unwrap();
        let first = input.scan(range, |_| ControlFlow::Continue(())).unwrap();
        // As the ingester publishes: the second pass on its own thread.
        let replayed = input.replay_alongside(&first, range, |events| events.map(Result::unwrap).count());
        let added = PEAK.load(Ordering::Relaxed) - before;
        let _ = std::fs::remove_file(&path);

        assert_eq!((first.records, first.invalid, replayed), (EVENTS, 0, EVENTS), "{name}");
        assert!(added < BOUND, "{name}: both passes over {size} bytes held {added} bytes of heap at most");
        eprintln!("{name}: both passes over {size} bytes held {added} bytes of heap at most");
    }
}
