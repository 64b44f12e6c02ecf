//! Reading rating events from a file or stdin, one record at a time, so
//! that an input of any size is validated and published in bounded memory.
//!
//! The input is read twice: [`Input::scan`] validates every record and
//! counts them, and only once the whole input is known to be publishable
//! does [`Input::replay`] read it again to hand the events over, checking
//! that it still holds what the first pass counted. An input that cannot be
//! read twice (stdin, a pipe) is first copied to an anonymous temporary
//! file.
//!
//! Two layouts are accepted, told apart by the first non-whitespace byte:
//! `[` a JSON array of events (the book's `ratingsdata.json`), `{` one JSON
//! object per line (NDJSON; blank lines are ignored). Rejections are
//! positioned by record number (1-based) in an array and by line number in
//! NDJSON. A record longer than [`MAX_RECORD_BYTES`] is refused without
//! being held in memory.
use std::{
    cell::Cell,
    fmt,
    fs::File,
    io::{self, BufRead, BufReader, Read, Seek, SeekFrom},
    ops::ControlFlow,
    path::{Path, PathBuf},
    rc::Rc,
    sync::mpsc,
    time::SystemTime,
};

use contract::{
    event::{EventError, RatingEvent},
    rating::RatingRange,
};
use serde::de::{Deserializer as _, SeqAccess, Visitor};

/// The longest record, in bytes of JSON: the most a single record makes the
/// ingester hold in memory. A valid event is a few hundred bytes at most
/// (its ids are at most 256 bytes each); in an array, a record is refused
/// somewhere between this and a read buffer (64 KiB) more.
pub const MAX_RECORD_BYTES: u64 = 1024 * 1024;

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Bytes read from the input at a time.
const READ_BUFFER: usize = 64 * 1024;

/// Where the events come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSource {
    Stdin,
    File(PathBuf),
}

impl InputSource {
    /// The marker that names stdin on the command line.
    pub const STDIN_MARKER: &str = "-";

    /// `-` is stdin, anything else a file path.
    pub fn from_argument(argument: &Path) -> Self {
        if argument.as_os_str() == Self::STDIN_MARKER {
            InputSource::Stdin
        } else {
            InputSource::File(argument.to_path_buf())
        }
    }
}

impl fmt::Display for InputSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputSource::Stdin => f.write_str("<stdin>"),
            InputSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why the input as a whole cannot be used. Shown after the source's name,
/// e.g. `ratingsdata.json: no such file`.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("no such file (name the events file as the first argument, or `-` for stdin)")]
    NotFound,
    #[error("cannot read: {0}")]
    Unreadable(io::Error),
    #[error("cannot copy the input to a temporary file, which it needs to be read twice: {0}")]
    Spool(io::Error),
    #[error("the input is empty: no rating events to publish")]
    Empty,
    #[error("the input is an empty JSON array: no rating events to publish")]
    EmptyArray,
    #[error(
        "the input is neither a JSON array of events (starting with '[') nor one JSON object per line (starting with '{{'): it starts with {found:?}"
    )]
    NotJson { found: char },
    #[error("the file changed while it was being validated; nothing was published")]
    Changed,
}

/// The layout of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A JSON array of event objects.
    JsonArray,
    /// One JSON event object per line.
    JsonLines,
}

/// Where in the input a rejected record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The n-th element of the array, from 1.
    Record(usize),
    /// A line of the input, from 1.
    Line(usize),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Record(number) => write!(f, "record {number}"),
            Position::Line(number) => write!(f, "line {number}"),
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("a record must be at most {limit} bytes of JSON")]
    TooLong { limit: u64 },
}

/// A record that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub position: Position,
    pub error: RecordError,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position, self.error)
    }
}

/// One record of the input, as a scan finds it.
pub type Record = Result<RatingEvent, Rejection>;

/// What a scan of the whole input counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scan {
    pub layout: Layout,
    /// Records read, valid or not.
    pub records: usize,
    /// Records refused.
    pub invalid: usize,
    /// A JSON syntax error broke the array itself (its last rejection says
    /// where), so records after it are unknown: the input must be refused as
    /// a whole, even when skipping invalid records.
    pub array_broken: bool,
}

impl Scan {
    fn new(layout: Layout) -> Self {
        Self { layout, records: 0, invalid: 0, array_broken: false }
    }

    /// The valid events.
    pub fn valid(&self) -> usize {
        self.records - self.invalid
    }

    fn count(&mut self, record: &Record) {
        self.records += 1;
        if record.is_err() {
            self.invalid += 1;
        }
    }

    /// How many events to publish: every event when all records are valid;
    /// with `skip_invalid`, the valid ones as long as the input could be read
    /// to its end and at least one is valid.
    pub fn events_to_publish(&self, skip_invalid: bool) -> Result<usize, Refusal> {
        let records = self.records;
        if self.array_broken {
            Err(Refusal::ArrayBroken)
        } else if self.invalid > 0 && !skip_invalid {
            Err(Refusal::InvalidRecords { invalid: self.invalid, records })
        } else if self.valid() == 0 {
            Err(Refusal::NothingValid { records })
        } else {
            Ok(self.valid())
        }
    }
}

/// Why validated input is not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{invalid} of {records} records are invalid; nothing was published (--skip-invalid publishes the valid ones)"
    )]
    InvalidRecords { invalid: usize, records: usize },
    #[error("the JSON array is broken; nothing was published")]
    ArrayBroken,
    #[error("none of the {records} records is valid; nothing to publish")]
    NothingValid { records: usize },
}

/// Why the second pass stopped before handing over every event.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("the file changed while it was being published")]
    Changed,
    #[error("cannot read the input again: {0}")]
    Input(InputError),
}

/// An opened input that can be read from its start as often as needed.
#[derive(Debug)]
pub struct Input {
    file: File,
    /// Length and modification time of a file read in place, to notice a
    /// change between the passes; `None` for a private temporary copy.
    fingerprint: Option<(u64, Option<SystemTime>)>,
}

/// Opens the input: a regular file is read in place; stdin, a pipe or any
/// other stream is copied to an anonymous temporary file first.
pub fn open(source: &InputSource) -> Result<Input, InputError> {
    let unreadable = |error: io::Error| match error.kind() {
        io::ErrorKind::NotFound => InputError::NotFound,
        _ => InputError::Unreadable(error),
    };
    match source {
        InputSource::Stdin => spool(&mut io::stdin().lock()),
        InputSource::File(path) => {
            let mut file = File::open(path).map_err(unreadable)?;
            let metadata = file.metadata().map_err(unreadable)?;
            if metadata.is_file() {
                Ok(Input { fingerprint: Some((metadata.len(), metadata.modified().ok())), file })
            } else if metadata.is_dir() {
                Err(InputError::Unreadable(io::ErrorKind::IsADirectory.into()))
            } else {
                spool(&mut file)
            }
        }
    }
}

/// Copies a stream that cannot be rewound into a temporary file, removed
/// when it is closed.
fn spool(stream: &mut impl Read) -> Result<Input, InputError> {
    let mut file = tempfile::tempfile().map_err(InputError::Spool)?;
    io::copy(stream, &mut file).map_err(InputError::Spool)?;
    Ok(Input { file, fingerprint: None })
}

impl Input {
    /// The first pass: reads every record from the start, calling
    /// `on_record` for each one, valid or not, until the end of the input or
    /// until `on_record` breaks. Fails only when the input as a whole is
    /// unusable.
    pub fn scan(
        &mut self,
        range: RatingRange,
        on_record: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<Scan, InputError> {
        scan(&mut self.file, range, on_record)
    }

    /// Fails when the file was changed since it was opened.
    pub fn ensure_unchanged(&self) -> Result<(), InputError> {
        let Some(opened) = self.fingerprint else { return Ok(()) };
        let metadata = self.file.metadata().map_err(InputError::Unreadable)?;
        if (metadata.len(), metadata.modified().ok()) == opened { Ok(()) } else { Err(InputError::Changed) }
    }

    /// The second pass: hands every valid event to `on_event`, in input
    /// order, until the end or until `on_event` breaks. Each record is
    /// validated again, so nothing invalid is handed over even if the input
    /// changed since `first` scanned it; a change is noticed as soon as the
    /// input holds more valid or invalid records than `first` counted, and
    /// at the end.
    pub fn replay(
        &mut self,
        first: &Scan,
        range: RatingRange,
        mut on_event: impl FnMut(RatingEvent) -> ControlFlow<()>,
    ) -> Result<(), ReplayError> {
        self.ensure_unchanged().map_err(|error| match error {
            InputError::Changed => ReplayError::Changed,
            other => ReplayError::Input(other),
        })?;
        let (mut valid, mut invalid) = (0, 0);
        let mut outcome = ControlFlow::Continue(());
        let mut changed = false;
        let second = self
            .scan(range, |record| {
                match record {
                    Ok(event) => {
                        valid += 1;
                        changed = valid > first.valid();
                        if !changed {
                            outcome = on_event(event);
                        }
                    }
                    Err(_) => {
                        invalid += 1;
                        changed = invalid > first.invalid;
                    }
                }
                if changed { ControlFlow::Break(()) } else { outcome }
            })
            .map_err(ReplayError::Input)?;
        if changed || (outcome.is_continue() && second != *first) {
            return Err(ReplayError::Changed);
        }
        Ok(())
    }
}

/// Events of the second pass in small batches, queued between the thread that
/// reads them and the one that takes them: enough to keep both busy, few
/// enough to hold a few hundred KB.
const REPLAY_BATCH: usize = 1024;
const REPLAY_BATCHES_QUEUED: usize = 4;

/// The events of [`Input::replay_alongside`], in input order, then the error
/// that stopped the second pass early, if any.
pub type Replayed = std::iter::Flatten<mpsc::IntoIter<Vec<Result<RatingEvent, ReplayError>>>>;

impl Input {
    /// [`Input::replay`] on a thread of its own, its events handed to
    /// `consume` through a short queue: reading the input and taking its
    /// events (publishing them) proceed side by side, in bounded memory.
    /// The second pass stops when `consume` returns.
    pub fn replay_alongside<T>(mut self, first: &Scan, range: RatingRange, consume: impl FnOnce(Replayed) -> T) -> T {
        std::thread::scope(|scope| {
            let (batches, received) = mpsc::sync_channel(REPLAY_BATCHES_QUEUED);
            scope.spawn(move || {
                let mut batch = Vec::with_capacity(REPLAY_BATCH);
                let result = self.replay(first, range, |event| {
                    batch.push(Ok(event));
                    if batch.len() < REPLAY_BATCH {
                        return ControlFlow::Continue(());
                    }
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(REPLAY_BATCH));
                    if batches.send(full).is_ok() { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
                });
                if let Err(error) = result {
                    batch.push(Err(error));
                }
                if !batch.is_empty() {
                    let _ = batches.send(batch);
                }
            });
            // `consume` owns the receiving end: once it returns, the end is
            // dropped and the reading thread stops at its next batch.
            consume(received.into_iter().flatten())
        })
    }
}

/// Reads every record of `reader` from its start; see [`Input::scan`].
pub fn scan<R: Read + Seek>(
    mut reader: R,
    range: RatingRange,
    on_record: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<Scan, InputError> {
    let (start, first) = sniff(&mut reader).map_err(InputError::Unreadable)?;
    reader.seek(SeekFrom::Start(start)).map_err(InputError::Unreadable)?;
    match first.first() {
        None => Err(InputError::Empty),
        Some(b'[') => scan_array(reader, range, on_record),
        Some(b'{') => scan_lines(reader, range, on_record),
        Some(_) => {
            let found = String::from_utf8_lossy(&first).chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
            Err(InputError::NotJson { found })
        }
    }
}

/// Where the content starts (after a byte order mark), and its first
/// non-whitespace bytes: up to 4, enough for one character.
fn sniff(reader: &mut (impl Read + Seek)) -> io::Result<(u64, Vec<u8>)> {
    reader.rewind()?;
    let mut buffered = BufReader::new(reader);
    let mut start = Vec::with_capacity(BYTE_ORDER_MARK.len());
    buffered.by_ref().take(BYTE_ORDER_MARK.len() as u64).read_to_end(&mut start)?;
    let content_start = if start == BYTE_ORDER_MARK { BYTE_ORDER_MARK.len() } else { 0 };
    let mut rest = (&start[content_start..]).chain(buffered).bytes();
    let mut first = Vec::with_capacity(4);
    for byte in rest.by_ref() {
        let byte = byte?;
        if !byte.is_ascii_whitespace() {
            first.push(byte);
            break;
        }
    }
    for byte in rest.take(if first.is_empty() { 0 } else { 3 }) {
        first.push(byte?);
    }
    Ok((content_start as u64, first))
}

fn scan_lines(
    reader: impl Read,
    range: RatingRange,
    mut on_record: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<Scan, InputError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut scan = Scan::new(Layout::JsonLines);
    let mut line = Vec::new();
    for number in 1.. {
        line.clear();
        let read = reader.by_ref().take(MAX_RECORD_BYTES + 1).read_until(b'\n', &mut line);
        if read.map_err(InputError::Unreadable)? == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        let text = if complete { &line[..line.len() - 1] } else { &line[..] };
        let record = if text.len() as u64 > MAX_RECORD_BYTES {
            if !complete {
                skip_line(&mut reader).map_err(InputError::Unreadable)?;
            }
            Err(Rejection { position: Position::Line(number), error: RecordError::TooLong { limit: MAX_RECORD_BYTES } })
        } else if text.trim_ascii().is_empty() {
            continue;
        } else {
            RatingEvent::from_json(text, range)
                .map_err(|error| Rejection { position: Position::Line(number), error: error.into() })
        };
        scan.count(&record);
        if on_record(record).is_break() {
            break;
        }
    }
    Ok(scan)
}

/// Consumes the rest of a line without keeping it.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buffer = reader.fill_buf()?;
        if buffer.is_empty() {
            return Ok(());
        }
        match buffer.iter().position(|byte| *byte == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let length = buffer.len();
                reader.consume(length);
            }
        }
    }
}

fn scan_array(
    reader: impl Read,
    range: RatingRange,
    mut on_record: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<Scan, InputError> {
    let allowance = Rc::new(Allowance::default());
    let mut scan = Scan::new(Layout::JsonArray);
    let mut stopped = false;
    let limited = BufReader::with_capacity(READ_BUFFER, Limited { inner: reader, allowance: Rc::clone(&allowance) });
    let mut deserializer = serde_json::Deserializer::from_reader(limited);
    let walk =
        ArrayWalk { range, scan: &mut scan, on_record: &mut on_record, allowance: &allowance, stopped: &mut stopped };
    let outcome = match deserializer.deserialize_seq(walk) {
        // Inside the array: the record being read is the broken one.
        Err(error) => Err((Position::Record(scan.records + 1), error)),
        // After its closing bracket.
        Ok(()) if !stopped => {
            // Only whitespace may follow, skipped without being held.
            allowance.left.set(u64::MAX);
            deserializer.end().map_err(|error| (Position::Line(error.line()), error))
        }
        Ok(()) => Ok(()),
    };
    if stopped {
        return Ok(scan);
    }
    if let Err((position, error)) = outcome {
        let error = if allowance.exceeded.get() {
            RecordError::TooLong { limit: MAX_RECORD_BYTES }
        } else if error.is_io() {
            return Err(InputError::Unreadable(error.into()));
        } else {
            EventError::MalformedJson(error.to_string()).into()
        };
        let record = Err(Rejection { position, error });
        scan.count(&record);
        scan.array_broken = true;
        let _ = on_record(record);
    }
    if scan.records == 0 && !scan.array_broken {
        return Err(InputError::EmptyArray);
    }
    Ok(scan)
}

/// How much more of the current array element may be read.
#[derive(Debug)]
struct Allowance {
    left: Cell<u64>,
    exceeded: Cell<bool>,
}

impl Default for Allowance {
    fn default() -> Self {
        Self { left: Cell::new(MAX_RECORD_BYTES), exceeded: Cell::new(false) }
    }
}

impl Allowance {
    fn renew(&self) {
        self.left.set(MAX_RECORD_BYTES);
    }
}

/// A reader that fails once its [`Allowance`] is spent, so that one huge
/// array element is refused instead of read into memory.
struct Limited<R> {
    inner: R,
    allowance: Rc<Allowance>,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let left = self.allowance.left.get();
        if left == 0 {
            self.allowance.exceeded.set(true);
            return Err(io::Error::new(io::ErrorKind::InvalidData, "record too long"));
        }
        let wanted = buffer.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buffer[..wanted])?;
        self.allowance.left.set(left - read as u64);
        Ok(read)
    }
}

/// Validates the array's elements one at a time, so a large file is never
/// held as a tree of JSON values.
struct ArrayWalk<'a, F> {
    range: RatingRange,
    scan: &'a mut Scan,
    on_record: &'a mut F,
    allowance: &'a Allowance,
    stopped: &'a mut bool,
}

impl<'de, F: FnMut(Record) -> ControlFlow<()>> Visitor<'de> for ArrayWalk<'_, F> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON array of rating events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut elements: A) -> Result<(), A::Error> {
        loop {
            self.allowance.renew();
            let Some(element) = elements.next_element::<serde_json::Value>()? else { return Ok(()) };
            let position = Position::Record(self.scan.records + 1);
            let record = RatingEvent::from_value(element, self.range)
                .map_err(|error| Rejection { position, error: error.into() });
            self.scan.count(&record);
            if (self.on_record)(record).is_break() {
                *self.stopped = true;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

    use super::*;

    /// Every record of one scan, sorted as the ingester sorts them.
    #[derive(Debug, Clone)]
    struct Validated {
        scan: Scan,
        events: Vec<RatingEvent>,
        rejected: Vec<Rejection>,
    }

    fn validate(bytes: &[u8], range: RatingRange) -> Result<Validated, InputError> {
        let (mut events, mut rejected) = (Vec::new(), Vec::new());
        let scan = scan(Cursor::new(bytes), range, |record| {
            match record {
                Ok(event) => events.push(event),
                Err(rejection) => rejected.push(rejection),
            }
            ControlFlow::Continue(())
        })?;
        Ok(Validated { scan, events, rejected })
    }

    fn validate_text(text: &str) -> Validated {
        validate(text.as_bytes(), RatingRange::default()).unwrap()
    }

    /// Each rejection as the binary reports it after the source name.
    fn rejections(validated: &Validated) -> Vec<String> {
        validated.rejected.iter().map(ToString::to_string).collect()
    }

    fn keys(events: &[RatingEvent]) -> Vec<String> {
        events.iter().map(RatingEvent::kafka_key).collect()
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn with(name: &str, bytes: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!("ratingingester-input-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            Self(path)
        }

        fn source(&self) -> InputSource {
            InputSource::File(self.0.clone())
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Both passes over `input`: what the first counted, what the second handed over.
    fn both_passes(input: &mut Input) -> (Scan, Vec<RatingEvent>, Result<(), ReplayError>) {
        let range = RatingRange::default();
        let first = input.scan(range, |_| ControlFlow::Continue(())).unwrap();
        let mut replayed = Vec::new();
        let result = input.replay(&first, range, |event| {
            replayed.push(event);
            ControlFlow::Continue(())
        });
        (first, replayed, result)
    }

    fn event_line(user: usize, value: i32) -> String {
        format!(r#"{{"recordId": "{}", "recordType": "movie", "userId": "{user}", "ratingValue": {value}}}"#, user % 7)
    }

    const VALID_ARRAY: &str = r#"[
        {"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5, "eventType": "put"},
        {"recordId": "1", "recordType": "movie", "userId": "106", "value": 4, "providerId": "imdb"},
        {"recordId": "2", "recordType": "movie", "userId": "105", "eventType": "delete"}
    ]"#;

    #[test]
    fn a_valid_array_yields_its_events_in_order() {
        let validated = validate_text(VALID_ARRAY);
        assert_eq!(validated.scan, Scan { layout: Layout::JsonArray, records: 3, invalid: 0, array_broken: false });
        assert!(validated.rejected.is_empty());
        assert_eq!(keys(&validated.events), ["movie/1/105", "movie/1/106", "movie/2/105"]);
        assert!(matches!(validated.events[2], RatingEvent::Delete { .. }));
        assert_eq!(validated.scan.events_to_publish(false).unwrap(), 3);
    }

    #[test]
    fn ndjson_yields_one_event_per_non_blank_line() {
        let text = concat!(
            "\n",
            r#"{"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5}"#,
            "\r\n   \n",
            r#"{"recordId": "3", "recordType": "movie", "userId": "7", "ratingValue": 2, "eventType": "put"}"#,
            "\n",
        );
        let validated = validate_text(text);
        assert_eq!(validated.scan.layout, Layout::JsonLines);
        assert!(validated.rejected.is_empty());
        assert_eq!(keys(&validated.events), ["movie/1/105", "movie/3/7"]);
    }

    #[test]
    fn every_bad_array_record_is_reported_by_number() {
        let text = r#"[
            {"recordId": "1", "recordType": 1, "userId": "105", "value": 5},
            {"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5},
            {"recordId": "1", "recordType": "movie", "userId": "106", "ratingValue": 9},
            "not an event",
            {"recordId": "1", "recordType": "movie", "userId": "107", "ratingValue": 3, "eventType": "upsert"}
        ]"#;
        let validated = validate_text(text);
        assert_eq!(
            rejections(&validated),
            [
                "record 1: recordType must be a string, got 1",
                "record 3: ratingValue must be between 1 and 5, got 9",
                r#"record 4: an event must be a JSON object, got "not an event""#,
                r#"record 5: eventType must be "put" or "delete", got "upsert""#,
            ]
        );
        assert_eq!(keys(&validated.events), ["movie/1/105"]);
        assert_eq!(validated.scan, Scan { layout: Layout::JsonArray, records: 5, invalid: 4, array_broken: false });
    }

    #[test]
    fn every_bad_ndjson_line_is_reported_by_line_number() {
        let text = concat!(
            r#"{"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5}"#,
            "\n\n",
            r#"{"recordId": "1", "recordType": "movie", "userId": "105""#,
            "\n",
            r#"{"recordId": "1", "recordType": "movie", "userId": "106", "ratingValue": "4"}"#,
            "\n",
            r#"{"recordId": "1", "recordType": "movie", "userId": "107", "ratingValue": 4}"#,
            "\n",
        );
        let validated = validate_text(text);
        assert_eq!(
            rejections(&validated),
            [
                "line 3: malformed JSON: EOF while parsing an object at line 1 column 56",
                r#"line 4: ratingValue must be an integer, got "4""#,
            ]
        );
        assert_eq!(keys(&validated.events), ["movie/1/105", "movie/1/107"]);
    }

    #[test]
    fn invalid_records_stop_publication_unless_skipped() {
        let text = r#"[
            {"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5},
            {"recordId": "", "recordType": "movie", "userId": "106", "ratingValue": 4},
            {"recordId": "2", "recordType": "movie", "userId": "106", "ratingValue": 4}
        ]"#;
        let validated = validate_text(text);
        assert_eq!(rejections(&validated), ["record 2: recordId must not be empty"]);
        let refusal = validated.scan.events_to_publish(false).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "1 of 3 records are invalid; nothing was published (--skip-invalid publishes the valid ones)"
        );
        assert_eq!(validated.scan.events_to_publish(true).unwrap(), 2);
        assert_eq!(keys(&validated.events), ["movie/1/105", "movie/2/106"]);
    }

    #[test]
    fn all_invalid_is_refused_even_when_skipping() {
        let validated = validate_text(r#"[{"recordId": "1"}, {"recordId": "2"}]"#);
        assert_eq!(rejections(&validated), ["record 1: recordType is missing", "record 2: recordType is missing"]);
        assert_eq!(
            validated.scan.events_to_publish(true).unwrap_err().to_string(),
            "none of the 2 records is valid; nothing to publish"
        );
    }

    #[test]
    fn a_broken_array_names_the_record_and_is_refused_even_when_skipping() {
        let text = "[\n{\"recordId\": \"1\", \"recordType\": \"movie\", \"userId\": \"1\", \"ratingValue\": 5},\n{\"recordId\": \"2\" \"userId\": \"1\"}\n]";
        let validated = validate_text(text);
        assert_eq!(rejections(&validated), ["record 2: malformed JSON: expected `,` or `}` at line 3 column 18"]);
        assert!(validated.scan.array_broken);
        assert_eq!(validated.scan.events_to_publish(true).unwrap_err(), Refusal::ArrayBroken);
    }

    #[test]
    fn an_unterminated_array_and_trailing_text_are_broken_arrays() {
        let unterminated =
            validate_text(r#"[{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 5},"#);
        assert_eq!(
            rejections(&unterminated),
            ["record 2: malformed JSON: EOF while parsing a value at line 1 column 75"]
        );
        assert!(unterminated.scan.array_broken);

        let trailing = validate_text(
            "[{\"recordId\": \"1\", \"recordType\": \"movie\", \"userId\": \"1\", \"ratingValue\": 5}]\n]",
        );
        // Whitespace after the array is skipped, however long.
        let padded = format!("{}{}", &VALID_ARRAY, " ".repeat(2 * MAX_RECORD_BYTES as usize));
        assert_eq!(rejections(&validate_text(&padded)), Vec::<String>::new());
        assert_eq!(rejections(&trailing), ["line 2: malformed JSON: trailing characters at line 2 column 1"]);
        assert!(trailing.scan.array_broken);
        assert_eq!(trailing.events.len(), 1);
        assert_eq!(trailing.scan.events_to_publish(true).unwrap_err(), Refusal::ArrayBroken);

        let trailing_comma =
            validate_text(r#"[{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 5},]"#);
        assert_eq!(rejections(&trailing_comma), ["record 2: malformed JSON: trailing comma at line 1 column 76"]);
    }

    #[test]
    fn empty_inputs_are_refused() {
        let range = RatingRange::default();
        assert_eq!(validate(b"", range).unwrap_err().to_string(), "the input is empty: no rating events to publish");
        assert_eq!(
            validate(b" \n\t\r\n", range).unwrap_err().to_string(),
            "the input is empty: no rating events to publish"
        );
        assert_eq!(
            validate(b" [ \n ] ", range).unwrap_err().to_string(),
            "the input is an empty JSON array: no rating events to publish"
        );
    }

    #[test]
    fn input_that_is_not_json_is_refused_with_what_it_starts_with() {
        let error = validate(b"\n  recordId,recordType\n1,movie\n", RatingRange::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the input is neither a JSON array of events (starting with '[') nor one JSON object per line (starting with '{'): it starts with 'r'"
        );
        let error = validate(" \u{e9}t\u{e9}".as_bytes(), RatingRange::default()).unwrap_err();
        assert!(error.to_string().ends_with("it starts with '\u{e9}'"), "{error}");
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(VALID_ARRAY.as_bytes());
        assert_eq!(validate(&bytes, RatingRange::default()).unwrap().events.len(), 3);
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        // Columns count from after the mark.
        bytes.extend_from_slice(b"{\"recordId\": \"1\" 2}\n");
        assert_eq!(
            rejections(&validate(&bytes, RatingRange::default()).unwrap()),
            ["line 1: malformed JSON: expected `,` or `}` at line 1 column 18"]
        );
    }

    #[test]
    fn the_range_is_the_configured_one() {
        let text = r#"[{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 8}]"#;
        assert!(validate(text.as_bytes(), RatingRange::new(1, 10).unwrap()).unwrap().rejected.is_empty());
        assert_eq!(rejections(&validate_text(text)), ["record 1: ratingValue must be between 1 and 5, got 8"]);
    }

    #[test]
    fn an_over_long_line_is_refused_and_the_next_lines_are_read() {
        let huge = format!(
            r#"{{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4, "note": "{}"}}"#,
            "x".repeat(MAX_RECORD_BYTES as usize)
        );
        let text = [event_line(1, 5), huge, event_line(2, 3)].join("\n");
        let validated = validate_text(&text);
        assert_eq!(rejections(&validated), ["line 2: a record must be at most 1048576 bytes of JSON"]);
        assert_eq!(keys(&validated.events), ["movie/1/1", "movie/2/2"]);
        assert_eq!(validated.scan.events_to_publish(true).unwrap(), 2);

        // At the limit exactly, a line is read; its newline is not counted.
        let padding = MAX_RECORD_BYTES as usize - event_line(3, 4).len() - r#", "note": """#.len();
        let longest = event_line(3, 4).replace('}', &format!(r#", "note": "{}"}}"#, "y".repeat(padding)));
        assert_eq!(longest.len() as u64, MAX_RECORD_BYTES);
        let validated = validate_text(&format!("{longest}\n{}\n", event_line(4, 1)));
        assert_eq!(rejections(&validated), Vec::<String>::new());
        assert_eq!(validated.events.len(), 2);
    }

    #[test]
    fn an_over_long_array_element_breaks_the_array_without_being_read_whole() {
        // 64 MiB of one string: refused after about a MiB.
        let text = format!(
            r#"[{}, {{"recordId": "{}"}}, {}]"#,
            event_line(1, 5),
            "z".repeat(64 * MAX_RECORD_BYTES as usize),
            event_line(2, 3)
        );
        let validated = validate_text(&text);
        assert_eq!(rejections(&validated), ["record 2: a record must be at most 1048576 bytes of JSON"]);
        assert!(validated.scan.array_broken);
        assert_eq!(keys(&validated.events), ["movie/1/1"]);
        // Records as long as the limit are read.
        let long_id = format!(
            r#"{{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4, "note": "{}"}}"#,
            "n".repeat(MAX_RECORD_BYTES as usize - 200)
        );
        let validated = validate_text(&format!("[{long_id}, {long_id}, {long_id}]"));
        assert_eq!(rejections(&validated), Vec::<String>::new());
        assert_eq!(validated.events.len(), 3);
    }

    #[test]
    fn a_scan_stops_when_told_to() {
        for text in [
            format!("[{}, {}, {}]", event_line(1, 5), event_line(2, 5), event_line(3, 5)),
            [event_line(1, 5), event_line(2, 5), event_line(3, 5)].join("\n"),
        ] {
            let mut seen = 0;
            let scan = scan(Cursor::new(text.as_bytes()), RatingRange::default(), |_| {
                seen += 1;
                if seen == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            })
            .unwrap();
            assert_eq!((seen, scan.records, scan.array_broken), (2, 2, false), "{text}");
        }
    }

    #[test]
    fn the_second_pass_hands_over_exactly_the_valid_events_of_the_first() {
        let mut lines: Vec<String> = (0..2000).map(|user| event_line(user, (user % 5) as i32 + 1)).collect();
        lines[17] = event_line(17, 0);
        lines[1999] = r#"{"recordId": "1"}"#.into();
        let expected: Vec<RatingEvent> = lines
            .iter()
            .filter_map(|line| RatingEvent::from_json(line.as_bytes(), RatingRange::default()).ok())
            .collect();
        assert_eq!(expected.len(), 1998);
        let array = TempFile::with("agree.json", format!("[{}]", lines.join(",\n")).as_bytes());
        let ndjson = TempFile::with("agree.ndjson", lines.join("\n").as_bytes());
        for file in [array, ndjson] {
            let (first, replayed, result) = both_passes(&mut open(&file.source()).unwrap());
            result.unwrap();
            assert_eq!((first.records, first.invalid), (2000, 2));
            assert_eq!(replayed, expected, "{}", file.0.display());
        }
    }

    #[test]
    fn an_invalid_record_at_the_end_of_a_big_file_refuses_the_whole_file() {
        let mut text: String = (0..100_000).map(|user| event_line(user, 4) + "\n").collect();
        text.push_str(&event_line(100_000, 6));
        let file = TempFile::with("late.ndjson", text.as_bytes());
        let mut reported = Vec::new();
        let first = open(&file.source())
            .unwrap()
            .scan(RatingRange::default(), |record| {
                if let Err(rejection) = record {
                    reported.push(rejection.to_string());
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(reported, ["line 100001: ratingValue must be between 1 and 5, got 6"]);
        assert_eq!(
            first.events_to_publish(false).unwrap_err(),
            Refusal::InvalidRecords { invalid: 1, records: 100_001 }
        );
    }

    #[test]
    fn a_file_changed_between_the_passes_is_noticed() {
        let lines: Vec<String> = (0..10).map(|user| event_line(user, 3)).collect();
        let file = TempFile::with("changing.ndjson", lines.join("\n").as_bytes());
        let range = RatingRange::default();
        let mut input = open(&file.source()).unwrap();
        let first = input.scan(range, |_| ControlFlow::Continue(())).unwrap();
        input.ensure_unchanged().unwrap();

        // A longer file: noticed before anything is handed over.
        std::fs::OpenOptions::new().append(true).open(&file.0).unwrap().write_all(b"\n{}").unwrap();
        assert!(matches!(input.ensure_unchanged(), Err(InputError::Changed)));
        let mut handed_over = 0;
        let result = input.replay(&first, range, |_| {
            handed_over += 1;
            ControlFlow::Continue(())
        });
        assert!(matches!(result, Err(ReplayError::Changed)), "{result:?}");
        assert_eq!(handed_over, 0);
        assert_eq!(result.unwrap_err().to_string(), "the file changed while it was being published");
    }

    #[test]
    fn the_second_pass_notices_a_change_the_file_metadata_hides() {
        // Same length, same modification time: only the records tell.
        let lines: Vec<String> = (0..10).map(|user| event_line(user, 3)).collect();
        let range = RatingRange::default();
        let mut original = Input { file: tempfile::tempfile().unwrap(), fingerprint: None };
        original.file.write_all(lines.join("\n").as_bytes()).unwrap();
        let first = original.scan(range, |_| ControlFlow::Continue(())).unwrap();

        let mut changed = lines.clone();
        changed[4] = event_line(4, 7);
        original.file.set_len(0).unwrap();
        original.file.rewind().unwrap();
        original.file.write_all(changed.join("\n").as_bytes()).unwrap();
        let mut handed_over = 0;
        let result = original.replay(&first, range, |_| {
            handed_over += 1;
            ControlFlow::Continue(())
        });
        // Stopped at the first record the first pass counted otherwise.
        assert!(matches!(result, Err(ReplayError::Changed)), "{result:?}");
        assert_eq!(handed_over, 4);
    }

    #[test]
    fn the_second_pass_alongside_stops_when_its_consumer_does_and_ends_with_its_error() {
        let lines: Vec<String> = (0..5000).map(|user| event_line(user, 2)).collect();
        let file = TempFile::with("alongside.ndjson", lines.join("\n").as_bytes());
        let range = RatingRange::default();
        let mut input = open(&file.source()).unwrap();
        let first = input.scan(range, |_| ControlFlow::Continue(())).unwrap();
        // Taking 10 of 5000 returns at once: the reading thread is not left
        // waiting on a full queue.
        assert_eq!(input.replay_alongside(&first, range, |events| events.take(10).count()), 10);

        let mut input = open(&file.source()).unwrap();
        let first = input.scan(range, |_| ControlFlow::Continue(())).unwrap();
        let shorter = Scan { records: first.records - 1, ..first };
        let replayed: Vec<Result<RatingEvent, ReplayError>> =
            input.replay_alongside(&shorter, range, |events| events.collect());
        assert_eq!(replayed.len(), 5000);
        assert!(replayed[..4999].iter().all(Result::is_ok));
        assert!(matches!(replayed[4999], Err(ReplayError::Changed)), "{:?}", replayed[4999]);
    }

    #[test]
    fn dash_means_stdin_and_anything_else_is_a_path() {
        assert_eq!(InputSource::from_argument(Path::new("-")), InputSource::Stdin);
        assert_eq!(InputSource::Stdin.to_string(), "<stdin>");
        let file = InputSource::from_argument(Path::new("data/ratings.json"));
        assert_eq!(file, InputSource::File(PathBuf::from("data/ratings.json")));
        assert_eq!(file.to_string(), "data/ratings.json");
        assert_eq!(InputSource::from_argument(Path::new("./-")), InputSource::File(PathBuf::from("./-")));
    }

    #[test]
    fn a_missing_file_is_reported_as_such() {
        let missing = InputSource::File(PathBuf::from("/nonexistent/ratings.json"));
        assert_eq!(
            open(&missing).unwrap_err().to_string(),
            "no such file (name the events file as the first argument, or `-` for stdin)"
        );
        let directory = InputSource::File(std::env::temp_dir());
        assert_eq!(open(&directory).unwrap_err().to_string(), "cannot read: is a directory");
    }

    #[test]
    fn a_stream_is_copied_so_it_can_be_read_twice() {
        let text = [event_line(1, 5), event_line(2, 4)].join("\n");
        let mut input = spool(&mut text.as_bytes()).unwrap();
        let (first, replayed, result) = both_passes(&mut input);
        result.unwrap();
        assert_eq!((first.records, replayed.len()), (2, 2));
    }

    #[test]
    fn the_repositorys_ratingsdata_json_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ratingsdata.json");
        let mut input = open(&InputSource::File(path)).unwrap();
        let (first, events, result) = both_passes(&mut input);
        result.unwrap();
        assert_eq!(first.invalid, 0);
        assert_eq!(first.layout, Layout::JsonArray);
        assert_eq!(first.events_to_publish(false).unwrap(), events.len());
        assert!((15..=25).contains(&events.len()), "{} events", events.len());
        assert!(events.iter().any(|event| matches!(event, RatingEvent::Delete { .. })));
        // Some user rates the same movie twice with different values.
        let puts: Vec<(String, i32)> = events
            .iter()
            .filter_map(|event| match event {
                RatingEvent::Put { value, .. } => Some((event.kafka_key(), value.get())),
                RatingEvent::Delete { .. } => None,
            })
            .collect();
        assert!(
            puts.iter().any(|(key, value)| { puts.iter().any(|(other, changed)| other == key && changed != value) })
        );
        for movie in ["1", "2", "3"] {
            assert!(events.iter().any(|event| event.key().record_id.as_str() == movie), "no event for movie {movie}");
        }
    }
}
