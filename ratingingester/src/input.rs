//! Reading rating events from a file or stdin and validating every one of
//! them before anything is published.
//!
//! Two layouts are accepted, told apart by the first non-whitespace byte:
//! `[` a JSON array of events (the book's `ratingsdata.json`), `{` one JSON
//! object per line (NDJSON, for large files; blank lines are ignored).
//! Rejections are positioned by record number (1-based) in an array and by
//! line number in NDJSON. Apart from [`read`], everything here is pure.
use std::{
    fmt,
    io::{self, Read},
    path::{Path, PathBuf},
};

use contract::{
    event::{EventError, RatingEvent},
    rating::RatingRange,
};
use serde::de::{Deserializer as _, SeqAccess, Visitor};

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
    #[error("the input is empty: no rating events to publish")]
    Empty,
    #[error("the input is an empty JSON array: no rating events to publish")]
    EmptyArray,
    #[error(
        "the input is neither a JSON array of events (starting with '[') nor one JSON object per line (starting with '{{'): it starts with {found:?}"
    )]
    NotJson { found: char },
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

/// A record that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub position: Position,
    pub error: EventError,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position, self.error)
    }
}

/// Every record of the input, sorted into valid events and rejections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub layout: Layout,
    /// The valid events, in input order.
    pub events: Vec<RatingEvent>,
    /// The refused records, in input order.
    pub rejected: Vec<Rejection>,
    /// A JSON syntax error broke the array itself (its last rejection says
    /// where), so records after it are unknown: the input must be refused as
    /// a whole, even when skipping invalid records.
    pub array_broken: bool,
}

impl Validated {
    /// How many records were read, valid or not.
    pub fn records(&self) -> usize {
        self.events.len() + self.rejected.len()
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

/// Reads the whole input into memory.
pub fn read(source: &InputSource) -> Result<Vec<u8>, InputError> {
    let result = match source {
        InputSource::Stdin => {
            let mut bytes = Vec::new();
            io::stdin().lock().read_to_end(&mut bytes).map(|_| bytes)
        }
        InputSource::File(path) => std::fs::read(path),
    };
    result.map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => InputError::NotFound,
        _ => InputError::Unreadable(error),
    })
}

/// Parses and validates every record of `bytes`. Fails only when the input
/// as a whole is unusable; refused records are listed in the result.
pub fn validate(bytes: &[u8], range: RatingRange) -> Result<Validated, InputError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let Some(first) = bytes.iter().position(|byte| !byte.is_ascii_whitespace()) else {
        return Err(InputError::Empty);
    };
    let validated = match bytes[first] {
        b'[' => validate_array(bytes, range),
        b'{' => validate_lines(bytes, range),
        _ => {
            // A character is at most 4 bytes; no need to decode the rest.
            let start = &bytes[first..bytes.len().min(first + 4)];
            let found = String::from_utf8_lossy(start).chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
            return Err(InputError::NotJson { found });
        }
    };
    if validated.records() == 0 && !validated.array_broken {
        return Err(InputError::EmptyArray);
    }
    Ok(validated)
}

/// What to publish: every event when all records are valid; with
/// `skip_invalid`, the valid ones as long as the input could be read to its
/// end and at least one is valid.
pub fn events_to_publish(validated: Validated, skip_invalid: bool) -> Result<Vec<RatingEvent>, Refusal> {
    let records = validated.records();
    if validated.array_broken {
        Err(Refusal::ArrayBroken)
    } else if !validated.rejected.is_empty() && !skip_invalid {
        Err(Refusal::InvalidRecords { invalid: validated.rejected.len(), records })
    } else if validated.events.is_empty() {
        Err(Refusal::NothingValid { records })
    } else {
        Ok(validated.events)
    }
}

fn validate_lines(bytes: &[u8], range: RatingRange) -> Validated {
    let mut validated =
        Validated { layout: Layout::JsonLines, events: Vec::new(), rejected: Vec::new(), array_broken: false };
    for (index, line) in bytes.split(|byte| *byte == b'\n').enumerate() {
        if line.trim_ascii().is_empty() {
            continue;
        }
        match RatingEvent::from_json(line, range) {
            Ok(event) => validated.events.push(event),
            Err(error) => validated.rejected.push(Rejection { position: Position::Line(index + 1), error }),
        }
    }
    validated
}

fn validate_array(bytes: &[u8], range: RatingRange) -> Validated {
    let mut validated =
        Validated { layout: Layout::JsonArray, events: Vec::new(), rejected: Vec::new(), array_broken: false };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let outcome = match deserializer.deserialize_seq(ArrayVisitor { range, validated: &mut validated }) {
        // Inside the array: the record being read is the broken one.
        Err(error) => Err((Position::Record(validated.records() + 1), error)),
        // After its closing bracket.
        Ok(()) => deserializer.end().map_err(|error| (Position::Line(error.line()), error)),
    };
    if let Err((position, error)) = outcome {
        validated.rejected.push(Rejection { position, error: EventError::MalformedJson(error.to_string()) });
        validated.array_broken = true;
    }
    validated
}

/// Validates the array's elements one at a time, so a large file is never
/// held as a tree of JSON values.
struct ArrayVisitor<'a> {
    range: RatingRange,
    validated: &'a mut Validated,
}

impl<'de> Visitor<'de> for ArrayVisitor<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON array of rating events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut elements: A) -> Result<(), A::Error> {
        while let Some(element) = elements.next_element::<serde_json::Value>()? {
            let number = self.validated.records() + 1;
            match RatingEvent::from_value(element, self.range) {
                Ok(event) => self.validated.events.push(event),
                Err(error) => self.validated.rejected.push(Rejection { position: Position::Record(number), error }),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const VALID_ARRAY: &str = r#"[
        {"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5, "eventType": "put"},
        {"recordId": "1", "recordType": "movie", "userId": "106", "value": 4, "providerId": "imdb"},
        {"recordId": "2", "recordType": "movie", "userId": "105", "eventType": "delete"}
    ]"#;

    #[test]
    fn a_valid_array_yields_its_events_in_order() {
        let validated = validate_text(VALID_ARRAY);
        assert_eq!(validated.layout, Layout::JsonArray);
        assert!(validated.rejected.is_empty());
        assert_eq!(keys(&validated.events), ["movie/1/105", "movie/1/106", "movie/2/105"]);
        assert!(matches!(validated.events[2], RatingEvent::Delete { .. }));
        assert_eq!(events_to_publish(validated, false).unwrap().len(), 3);
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
        assert_eq!(validated.layout, Layout::JsonLines);
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
        assert!(!validated.array_broken);
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
        let refusal = events_to_publish(validated.clone(), false).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "1 of 3 records are invalid; nothing was published (--skip-invalid publishes the valid ones)"
        );
        assert_eq!(keys(&events_to_publish(validated, true).unwrap()), ["movie/1/105", "movie/2/106"]);
    }

    #[test]
    fn all_invalid_is_refused_even_when_skipping() {
        let validated = validate_text(r#"[{"recordId": "1"}, {"recordId": "2"}]"#);
        assert_eq!(rejections(&validated), ["record 1: recordType is missing", "record 2: recordType is missing"]);
        assert_eq!(
            events_to_publish(validated, true).unwrap_err().to_string(),
            "none of the 2 records is valid; nothing to publish"
        );
    }

    #[test]
    fn a_broken_array_names_the_record_and_is_refused_even_when_skipping() {
        let text = "[\n{\"recordId\": \"1\", \"recordType\": \"movie\", \"userId\": \"1\", \"ratingValue\": 5},\n{\"recordId\": \"2\" \"userId\": \"1\"}\n]";
        let validated = validate_text(text);
        assert_eq!(rejections(&validated), ["record 2: malformed JSON: expected `,` or `}` at line 3 column 18"]);
        assert!(validated.array_broken);
        assert_eq!(events_to_publish(validated, true).unwrap_err(), Refusal::ArrayBroken);
    }

    #[test]
    fn an_unterminated_array_and_trailing_text_are_broken_arrays() {
        let unterminated =
            validate_text(r#"[{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 5},"#);
        assert_eq!(
            rejections(&unterminated),
            ["record 2: malformed JSON: EOF while parsing a value at line 1 column 75"]
        );
        assert!(unterminated.array_broken);

        let trailing = validate_text(
            "[{\"recordId\": \"1\", \"recordType\": \"movie\", \"userId\": \"1\", \"ratingValue\": 5}]\n]",
        );
        assert_eq!(rejections(&trailing), ["line 2: malformed JSON: trailing characters at line 2 column 1"]);
        assert!(trailing.array_broken);
        assert_eq!(trailing.events.len(), 1);
        assert_eq!(events_to_publish(trailing, true).unwrap_err(), Refusal::ArrayBroken);

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
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice(VALID_ARRAY.as_bytes());
        assert_eq!(validate(&bytes, RatingRange::default()).unwrap().events.len(), 3);
    }

    #[test]
    fn the_range_is_the_configured_one() {
        let text = r#"[{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 8}]"#;
        assert!(validate(text.as_bytes(), RatingRange::new(1, 10).unwrap()).unwrap().rejected.is_empty());
        assert_eq!(rejections(&validate_text(text)), ["record 1: ratingValue must be between 1 and 5, got 8"]);
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
            read(&missing).unwrap_err().to_string(),
            "no such file (name the events file as the first argument, or `-` for stdin)"
        );
        let directory = InputSource::File(std::env::temp_dir());
        assert!(read(&directory).unwrap_err().to_string().starts_with("cannot read: "));
    }

    #[test]
    fn the_repositorys_ratingsdata_json_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ratingsdata.json");
        let bytes = read(&InputSource::File(path)).unwrap();
        let validated = validate(&bytes, RatingRange::default()).unwrap();
        assert_eq!(rejections(&validated), Vec::<String>::new());
        assert_eq!(validated.layout, Layout::JsonArray);
        let events = events_to_publish(validated, false).unwrap();
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
