//! Rating events as they travel through Kafka: the JSON a data provider
//! sends, parsed once into validated domain types, and the canonical JSON and
//! message key the ingester publishes.
//!
//! The accepted JSON is the book's `RatingEvent`:
//! `{"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5, "eventType": "put"}`.
//! Leniencies, all from the book's own data: `value` may spell `ratingValue`,
//! a missing (or `null`) `eventType` means `put`, and unknown fields such as
//! `providerId` are ignored. A `delete` needs no value; one that has a value
//! (of any type) is still a valid delete, and the value is ignored.
//!
//! Everything else is refused with an [`EventError`] that names the field and
//! the rule it broke, e.g. `recordType must be a string, got 1` (the book's
//! `ratingsdata.json` has that bug).
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    id::{RecordId, RecordKey, RecordType, UserId},
    rating::{RatingRange, RatingValue},
    validation::FieldError,
};

/// The wire names of the event's fields.
pub(crate) mod field {
    pub const RECORD_ID: &str = "recordId";
    pub const RECORD_TYPE: &str = "recordType";
    pub const USER_ID: &str = "userId";
    pub const RATING_VALUE: &str = "ratingValue";
    /// The book's alternative spelling of `ratingValue`.
    pub const VALUE: &str = "value";
    pub const EVENT_TYPE: &str = "eventType";
}

pub(crate) const PUT: &str = "put";
pub(crate) const DELETE: &str = "delete";

/// A validated rating event: a user set or withdrew their rating of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RatingEvent {
    /// `user` rates `key` with `value`, replacing any earlier rating of theirs.
    Put { key: RecordKey, user: UserId, value: RatingValue },
    /// `user` withdraws their rating of `key`.
    Delete { key: RecordKey, user: UserId },
}

/// Why a rating event was refused. The message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all; the text is serde_json's, with line and column.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("an event must be a JSON object, got {found}")]
    NotAnObject { found: String },
    #[error("{field} is missing")]
    MissingField { field: &'static str },
    #[error("{field} must be {expected}, got {found}")]
    WrongType { field: &'static str, expected: &'static str, found: String },
    /// A field of the right type whose value a domain type refused (an empty
    /// id, a rating outside the range).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("ratingValue is missing: a put event needs a rating value")]
    MissingValue,
    #[error("eventType must be \"put\" or \"delete\", got {found}")]
    UnknownEventType { found: String },
    #[error("ratingValue {rating_value} and value {value} disagree: give only one")]
    ConflictingValues { rating_value: i128, value: i128 },
}

impl EventError {
    /// The rule broken, as a short fixed name: a metric label that does not
    /// grow with the values refused.
    pub fn kind(&self) -> &'static str {
        match self {
            EventError::MalformedJson(_) => "malformed_json",
            EventError::NotAnObject { .. } => "not_an_object",
            EventError::MissingField { .. } => "missing_field",
            EventError::WrongType { .. } => "wrong_type",
            EventError::Invalid(_) => "invalid_value",
            EventError::MissingValue => "missing_value",
            EventError::UnknownEventType { .. } => "unknown_event_type",
            EventError::ConflictingValues { .. } => "conflicting_values",
        }
    }
}

impl RatingEvent {
    /// `put` or `delete`, as `eventType` spells it.
    pub fn event_type(&self) -> &'static str {
        match self {
            RatingEvent::Put { .. } => PUT,
            RatingEvent::Delete { .. } => DELETE,
        }
    }
}

/// Whether an event sets or withdraws a rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Put,
    Delete,
}

impl RatingEvent {
    /// Parses one event from its JSON text, checking the value against `range`.
    pub fn from_json(bytes: &[u8], range: RatingRange) -> Result<RatingEvent, EventError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|error| EventError::MalformedJson(error.to_string()))?;
        Self::from_value(value, range)
    }

    /// Parses one event from an already decoded JSON value, checking the value
    /// against `range`. The first broken rule is reported, fields checked in
    /// the order `recordId`, `recordType`, `userId`, `eventType`, value.
    pub fn from_value(value: Value, range: RatingRange) -> Result<RatingEvent, EventError> {
        let Value::Object(mut fields) = value else {
            return Err(EventError::NotAnObject { found: describe(&value) });
        };
        let record_id = RecordId::parse(field::RECORD_ID, required_string(&mut fields, field::RECORD_ID)?)?;
        let record_type = RecordType::parse(field::RECORD_TYPE, required_string(&mut fields, field::RECORD_TYPE)?)?;
        let user = UserId::parse(field::USER_ID, required_string(&mut fields, field::USER_ID)?)?;
        let key = RecordKey { record_type, record_id };
        match event_kind(&mut fields)? {
            EventKind::Delete => Ok(RatingEvent::Delete { key, user }),
            EventKind::Put => {
                let value = rating_value(&mut fields, range)?;
                Ok(RatingEvent::Put { key, user, value })
            }
        }
    }

    /// The canonical JSON form: `recordId, recordType, userId, ratingValue,
    /// eventType` in that order; a delete has no `ratingValue`.
    pub fn to_json(&self) -> Vec<u8> {
        let (key, user, rating_value, event_type) = match self {
            RatingEvent::Put { key, user, value } => (key, user, Some(value.get()), PUT),
            RatingEvent::Delete { key, user } => (key, user, None, DELETE),
        };
        let wire = CanonicalEvent {
            record_id: key.record_id.as_str(),
            record_type: key.record_type.as_str(),
            user_id: user.as_str(),
            rating_value,
            event_type,
        };
        // Strings and an integer into a Vec: serde_json cannot fail on these
        // (it fails only on non-string map keys and failing custom impls).
        serde_json::to_vec(&wire).expect("a struct of strings and integers always serializes to JSON")
    }

    /// The Kafka message key: `{recordType}/{recordId}/{userId}`, one key per
    /// (record, user), so one user's events for a record stay in order on one
    /// partition and a compacted topic keeps each user's latest event.
    ///
    /// Each part is escaped so the key is unambiguous even for ids that
    /// contain `/`: `%` is written `%25` and `/` is written `%2F`, nothing
    /// else changes. Ids without those two characters appear verbatim
    /// (`movie/1/105`), and splitting the key on `/` always gives back the
    /// three escaped parts; [`KafkaKey::parse`] reads a key back.
    pub fn kafka_key(&self) -> String {
        encode_key(self.key(), self.user())
    }

    /// The record the event is about.
    pub fn key(&self) -> &RecordKey {
        match self {
            RatingEvent::Put { key, .. } | RatingEvent::Delete { key, .. } => key,
        }
    }

    /// The user whose rating the event sets or withdraws.
    pub fn user(&self) -> &UserId {
        match self {
            RatingEvent::Put { user, .. } | RatingEvent::Delete { user, .. } => user,
        }
    }
}

impl fmt::Display for RatingEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RatingEvent::Put { key, user, value } => {
                write!(f, "put {key} by {user}: {}", value.get())
            }
            RatingEvent::Delete { key, user } => write!(f, "delete {key} by {user}"),
        }
    }
}

/// The canonical wire form; field order is the serialization order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CanonicalEvent<'a> {
    record_id: &'a str,
    record_type: &'a str,
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rating_value: Option<i32>,
    event_type: &'static str,
}

/// The most bytes (key and payload together) of a Kafka message that
/// carries one rating event. The largest valid event, three ids of 256
/// bytes each, every character JSON-escaped, is under 5 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why a Kafka message of the ratings topic was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message is {bytes} bytes, over the limit of {MAX_MESSAGE_BYTES} bytes for a rating event")]
    TooLarge { bytes: usize },
    #[error("the message has no payload")]
    NoPayload,
    #[error(transparent)]
    Event(#[from] EventError),
    #[error("the message has no key; this event's key is {expected:?}")]
    NoKey { expected: String },
    #[error("the message's key {found:?} is not this event's key {expected:?}")]
    WrongKey { found: String, expected: String },
}

impl MessageError {
    /// Every name [`MessageError::kind`] gives, so that a counter labelled
    /// with it can start at 0 for each (Prometheus' `increase()` misses the
    /// first count of a series that appears at 1).
    pub const KINDS: [&'static str; 12] = [
        "too_large",
        "no_payload",
        "malformed_json",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "invalid_value",
        "missing_value",
        "unknown_event_type",
        "conflicting_values",
        "no_key",
        "wrong_key",
    ];

    /// The rule broken, as a short fixed name (a metric label).
    pub fn kind(&self) -> &'static str {
        match self {
            MessageError::TooLarge { .. } => "too_large",
            MessageError::NoPayload => "no_payload",
            MessageError::Event(error) => error.kind(),
            MessageError::NoKey { .. } => "no_key",
            MessageError::WrongKey { .. } => "wrong_key",
        }
    }
}

/// How a message's key compares with its event's canonical key,
/// [`RatingEvent::kafka_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMatch {
    Canonical,
    /// The message has no key (the book's Go producer, `kcat` without `-k`).
    Missing,
    /// Another key: the user id or the record id alone keeps one rating's
    /// events on one partition too; anything else may not.
    Other,
}

impl KeyMatch {
    /// A short fixed name (a metric label).
    pub fn kind(self) -> &'static str {
        match self {
            KeyMatch::Canonical => "canonical",
            KeyMatch::Missing => "none",
            KeyMatch::Other => "other",
        }
    }
}

/// Which message keys a consumer of the ratings topic accepts.
///
/// One rating's events are applied in order only when they reach one
/// partition in order, and only the producer decides that: a consumer cannot
/// restore an order it never received. So by default every key is accepted,
/// none included, and the producer's choice of key is its ordering contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyPolicy {
    #[default]
    Any,
    /// Only the canonical key; a message without it is refused.
    Canonical,
}

/// An event read from a Kafka message, and how the message was keyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedEvent {
    pub event: RatingEvent,
    pub key: KeyMatch,
}

impl RatingEvent {
    /// Reads the event a Kafka message carries: at most
    /// [`MAX_MESSAGE_BYTES`], a valid event, and, under
    /// [`KeyPolicy::Canonical`], keyed as [`kafka_key`](Self::kafka_key)
    /// keys it.
    pub fn from_message(
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        range: RatingRange,
        policy: KeyPolicy,
    ) -> Result<KeyedEvent, MessageError> {
        let bytes = key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len);
        if bytes > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge { bytes });
        }
        let event = Self::from_json(payload.ok_or(MessageError::NoPayload)?, range)?;
        let expected = event.kafka_key();
        let matched = match key {
            None => KeyMatch::Missing,
            Some(key) if key != expected.as_bytes() => KeyMatch::Other,
            Some(_) => KeyMatch::Canonical,
        };
        match (policy, matched, key) {
            (KeyPolicy::Canonical, KeyMatch::Missing, _) => Err(MessageError::NoKey { expected }),
            (KeyPolicy::Canonical, KeyMatch::Other, Some(key)) => {
                Err(MessageError::WrongKey { found: String::from_utf8_lossy(key).into_owned(), expected })
            }
            _ => Ok(KeyedEvent { event, key: matched }),
        }
    }
}

/// The record and the user a Kafka message key names: what
/// [`RatingEvent::kafka_key`] writes, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaKey {
    pub record: RecordKey,
    pub user: UserId,
}

/// Why a Kafka message key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is not UTF-8")]
    NotUtf8,
    #[error("the key must have three parts, recordType/recordId/userId, got {found}")]
    Parts { found: usize },
    #[error("{field} in the key has a '%' that starts neither %25 nor %2F")]
    Escape { field: &'static str },
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

impl KafkaKey {
    /// Reads a key written by [`RatingEvent::kafka_key`]. Strict: exactly
    /// three parts, escaped only as `kafka_key` escapes, each a valid id; so
    /// every key accepted is the one `kafka_key` writes for what it names.
    pub fn parse(bytes: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NotUtf8)?;
        let parts: Vec<&str> = text.split('/').collect();
        let [record_type, record_id, user] = parts[..] else {
            return Err(KeyError::Parts { found: parts.len() });
        };
        let record_type = RecordType::parse(field::RECORD_TYPE, unescape(field::RECORD_TYPE, record_type)?)?;
        let record_id = RecordId::parse(field::RECORD_ID, unescape(field::RECORD_ID, record_id)?)?;
        let user = UserId::parse(field::USER_ID, unescape(field::USER_ID, user)?)?;
        Ok(KafkaKey { record: RecordKey { record_type, record_id }, user })
    }
}

impl fmt::Display for KafkaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(&self.record, &self.user))
    }
}

fn encode_key(record: &RecordKey, user: &UserId) -> String {
    let mut encoded = String::new();
    push_escaped(&mut encoded, record.record_type.as_str());
    encoded.push('/');
    push_escaped(&mut encoded, record.record_id.as_str());
    encoded.push('/');
    push_escaped(&mut encoded, user.as_str());
    encoded
}

fn push_escaped(out: &mut String, part: &str) {
    for character in part.chars() {
        match character {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            other => out.push(other),
        }
    }
}

/// The inverse of [`push_escaped`]: `%25` and `%2F` only.
fn unescape(field: &'static str, part: &str) -> Result<String, KeyError> {
    let mut pieces = part.split('%');
    let mut out = pieces.next().unwrap_or_default().to_owned();
    for piece in pieces {
        let (character, rest) = if let Some(rest) = piece.strip_prefix("25") {
            ('%', rest)
        } else if let Some(rest) = piece.strip_prefix("2F") {
            ('/', rest)
        } else {
            return Err(KeyError::Escape { field });
        };
        out.push(character);
        out.push_str(rest);
    }
    Ok(out)
}

/// Takes a field that must be present and a string.
fn required_string(fields: &mut Map<String, Value>, name: &'static str) -> Result<String, EventError> {
    match fields.remove(name) {
        None => Err(EventError::MissingField { field: name }),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(EventError::WrongType { field: name, expected: "a string", found: describe(&other) }),
    }
}

/// `eventType`: absent or `null` means put.
fn event_kind(fields: &mut Map<String, Value>) -> Result<EventKind, EventError> {
    match fields.remove(field::EVENT_TYPE) {
        None | Some(Value::Null) => Ok(EventKind::Put),
        Some(Value::String(kind)) => match kind.as_str() {
            PUT => Ok(EventKind::Put),
            DELETE => Ok(EventKind::Delete),
            _ => Err(EventError::UnknownEventType { found: describe(&Value::String(kind)) }),
        },
        Some(other) => {
            Err(EventError::WrongType { field: field::EVENT_TYPE, expected: "a string", found: describe(&other) })
        }
    }
}

/// The value of a put, from `ratingValue` or its spelling `value`.
fn rating_value(fields: &mut Map<String, Value>, range: RatingRange) -> Result<RatingValue, EventError> {
    let rating_value = optional_integer(fields, field::RATING_VALUE)?;
    let value = optional_integer(fields, field::VALUE)?;
    let (name, raw) = match (rating_value, value) {
        (None, None) => return Err(EventError::MissingValue),
        (Some(rating_value), Some(value)) if rating_value != value => {
            return Err(EventError::ConflictingValues { rating_value, value });
        }
        (Some(rating_value), _) => (field::RATING_VALUE, rating_value),
        (None, Some(value)) => (field::VALUE, value),
    };
    Ok(RatingValue::parse_wide(name, raw, range)?)
}

/// Takes a field that may be absent or `null`, and otherwise must be an
/// integer (no strings, no fractions, no `5.0`). `i128` holds every JSON
/// integer serde_json can decode (`i64` and `u64`).
fn optional_integer(fields: &mut Map<String, Value>, name: &'static str) -> Result<Option<i128>, EventError> {
    let wrong_type =
        |found: &Value| EventError::WrongType { field: name, expected: "an integer", found: describe(found) };
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => match (number.as_i64(), number.as_u64()) {
            (Some(signed), _) => Ok(Some(i128::from(signed))),
            (None, Some(unsigned)) => Ok(Some(i128::from(unsigned))),
            (None, None) => Err(wrong_type(&Value::Number(number))),
        },
        Some(other) => Err(wrong_type(&other)),
    }
}

/// A JSON value as it appeared, shortened so one huge field cannot flood the
/// error report.
fn describe(value: &Value) -> String {
    const LIMIT: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<RatingEvent, EventError> {
        RatingEvent::from_json(text.as_bytes(), RatingRange::default())
    }

    fn refusal(text: &str) -> String {
        match parse(text) {
            Ok(event) => panic!("{text} was accepted as {event:?}"),
            Err(error) => error.to_string(),
        }
    }

    fn put(record_type: &str, record_id: &str, user: &str, value: i32) -> RatingEvent {
        RatingEvent::Put {
            key: RecordKey::parse(record_type.into(), record_id.into()).unwrap(),
            user: UserId::parse("userId", user.into()).unwrap(),
            value: RatingValue::parse("ratingValue", value, RatingRange::new(i32::MIN, i32::MAX).unwrap()).unwrap(),
        }
    }

    fn delete(record_type: &str, record_id: &str, user: &str) -> RatingEvent {
        RatingEvent::Delete {
            key: RecordKey::parse(record_type.into(), record_id.into()).unwrap(),
            user: UserId::parse("userId", user.into()).unwrap(),
        }
    }

    #[test]
    fn each_refusal_has_a_fixed_kind_for_metrics() {
        let kind = |text: &str| {
            let kind = parse(text).unwrap_err().kind();
            assert!(MessageError::KINDS.contains(&kind), "{kind} is missing from MessageError::KINDS");
            kind
        };
        assert_eq!(kind("{not json"), "malformed_json");
        assert_eq!(kind("[1]"), "not_an_object");
        assert_eq!(kind(r#"{"recordType": "movie", "userId": "1", "ratingValue": 5}"#), "missing_field");
        assert_eq!(kind(r#"{"recordId": 1, "recordType": "movie", "userId": "1", "ratingValue": 5}"#), "wrong_type");
        assert_eq!(
            kind(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 9}"#),
            "invalid_value"
        );
        assert_eq!(kind(r#"{"recordId": "1", "recordType": "movie", "userId": "1"}"#), "missing_value");
        assert_eq!(
            kind(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "eventType": "undo"}"#),
            "unknown_event_type"
        );
        assert_eq!(
            kind(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "value": 2, "ratingValue": 3}"#),
            "conflicting_values"
        );
        assert_eq!(put("movie", "1", "u", 1).event_type(), "put");
        assert_eq!(delete("movie", "1", "u").event_type(), "delete");
    }

    #[test]
    fn the_canonical_put_is_accepted() {
        let event =
            parse(r#"{"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": 5, "eventType": "put"}"#)
                .unwrap();
        assert_eq!(event, put("movie", "1", "105", 5));
        assert_eq!(event.key().to_string(), "movie/1");
        assert_eq!(event.user().as_str(), "105");
    }

    #[test]
    fn a_delete_needs_no_value_and_ignores_one_it_has() {
        let expected = delete("movie", "1", "105");
        assert_eq!(
            parse(r#"{"recordId": "1", "recordType": "movie", "userId": "105", "eventType": "delete"}"#).unwrap(),
            expected
        );
        for value in [r#"5"#, r#"99"#, r#""five""#, r#"4.5"#, r#"null"#] {
            let text = format!(
                r#"{{"recordId": "1", "recordType": "movie", "userId": "105", "ratingValue": {value}, "eventType": "delete"}}"#
            );
            assert_eq!(parse(&text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn the_books_variants_are_accepted() {
        // `value` for `ratingValue`, no `eventType` (a put), `providerId` ignored.
        let books =
            r#"{"recordId": "2", "recordType": "movie", "userId": "7", "value": 4, "providerId": "test-provider"}"#;
        assert_eq!(parse(books).unwrap(), put("movie", "2", "7", 4));
        // A null eventType is a put too, and both spellings may agree.
        let both = r#"{"recordId": "2", "recordType": "movie", "userId": "7", "value": 3, "ratingValue": 3, "eventType": null}"#;
        assert_eq!(parse(both).unwrap(), put("movie", "2", "7", 3));
        // Unknown fields of any shape are ignored.
        let extra =
            r#"{"recordId": "2", "recordType": "movie", "userId": "7", "ratingValue": 1, "meta": {"a": [1, 2]}}"#;
        assert_eq!(parse(extra).unwrap(), put("movie", "2", "7", 1));
    }

    #[test]
    fn the_range_is_the_configured_one() {
        let imdb = RatingRange::new(1, 10).unwrap();
        let text = br#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 9}"#;
        assert_eq!(RatingEvent::from_json(text, imdb).unwrap(), put("movie", "1", "1", 9));
        assert_eq!(
            RatingEvent::from_json(text, RatingRange::default()).unwrap_err().to_string(),
            "ratingValue must be between 1 and 5, got 9"
        );
    }

    #[test]
    fn from_value_takes_decoded_json() {
        let value = json!({"recordId": "3", "recordType": "movie", "userId": "u", "ratingValue": 2});
        assert_eq!(RatingEvent::from_value(value, RatingRange::default()).unwrap(), put("movie", "3", "u", 2));
        assert_eq!(
            RatingEvent::from_value(json!(["not", "an", "object"]), RatingRange::default()).unwrap_err().to_string(),
            r#"an event must be a JSON object, got ["not","an","object"]"#
        );
    }

    #[test]
    fn malformed_json_is_refused_with_its_position() {
        assert_eq!(refusal(r#"{"recordId": "1", "#), "malformed JSON: EOF while parsing a value at line 1 column 18");
        assert_eq!(refusal(""), "malformed JSON: EOF while parsing a value at line 1 column 0");
        assert_eq!(refusal("42"), "an event must be a JSON object, got 42");
    }

    #[test]
    fn ids_must_be_present_and_non_empty() {
        assert_eq!(refusal(r#"{"recordType": "movie", "userId": "1", "ratingValue": 5}"#), "recordId is missing");
        assert_eq!(refusal(r#"{"recordId": "1", "userId": "1", "ratingValue": 5}"#), "recordType is missing");
        assert_eq!(refusal(r#"{"recordId": "1", "recordType": "movie", "ratingValue": 5}"#), "userId is missing");
        assert_eq!(
            refusal(r#"{"recordId": "", "recordType": "movie", "userId": "1", "ratingValue": 5}"#),
            "recordId must not be empty"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "  ", "userId": "1", "ratingValue": 5}"#),
            "recordType must not be empty"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "", "eventType": "delete"}"#),
            "userId must not be empty"
        );
    }

    #[test]
    fn a_number_where_a_string_belongs_is_refused() {
        // The book's own ratingsdata.json has this bug.
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": 1, "userId": "105", "value": 5}"#),
            "recordType must be a string, got 1"
        );
        assert_eq!(
            refusal(r#"{"recordId": 1, "recordType": "movie", "userId": "105", "value": 5}"#),
            "recordId must be a string, got 1"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": null, "value": 5}"#),
            "userId must be a string, got null"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "value": 5, "eventType": 1}"#),
            "eventType must be a string, got 1"
        );
    }

    #[test]
    fn a_put_needs_a_value() {
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "eventType": "put"}"#),
            "ratingValue is missing: a put event needs a rating value"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": null}"#),
            "ratingValue is missing: a put event needs a rating value"
        );
    }

    #[test]
    fn values_outside_the_range_are_refused_under_the_name_used() {
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 6}"#),
            "ratingValue must be between 1 and 5, got 6"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "value": 0}"#),
            "value must be between 1 and 5, got 0"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": -3}"#),
            "ratingValue must be between 1 and 5, got -3"
        );
        // Beyond i32 and beyond i64: still a range error, not a wrap-around.
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4294967301}"#),
            "ratingValue must be between 1 and 5, got 4294967301"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 18446744073709551615}"#),
            "ratingValue must be between 1 and 5, got 18446744073709551615"
        );
    }

    #[test]
    fn the_value_must_be_an_integer() {
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": "5"}"#),
            r#"ratingValue must be an integer, got "5""#
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4.5}"#),
            "ratingValue must be an integer, got 4.5"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "value": 5.0}"#),
            "value must be an integer, got 5.0"
        );
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": true}"#),
            "ratingValue must be an integer, got true"
        );
    }

    #[test]
    fn both_spellings_with_different_values_are_refused() {
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4, "value": 5}"#),
            "ratingValue 4 and value 5 disagree: give only one"
        );
    }

    #[test]
    fn unknown_event_types_are_named() {
        assert_eq!(
            refusal(
                r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4, "eventType": "upsert"}"#
            ),
            r#"eventType must be "put" or "delete", got "upsert""#
        );
        // Event types are case-sensitive, as in the book.
        assert_eq!(
            refusal(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 4, "eventType": "PUT"}"#),
            r#"eventType must be "put" or "delete", got "PUT""#
        );
    }

    #[test]
    fn long_offending_values_are_shortened() {
        let long = "x".repeat(500);
        let text = format!(r#"{{"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": "{long}"}}"#);
        let message = refusal(&text);
        assert_eq!(message, format!(r#"ratingValue must be an integer, got "{}…"#, "x".repeat(59)));
    }

    #[test]
    fn to_json_writes_the_canonical_form_and_round_trips() {
        let event = put("movie", "1", "105", 5);
        assert_eq!(
            String::from_utf8(event.to_json()).unwrap(),
            r#"{"recordId":"1","recordType":"movie","userId":"105","ratingValue":5,"eventType":"put"}"#
        );
        let withdrawn = delete("movie", "1", "105");
        assert_eq!(
            String::from_utf8(withdrawn.to_json()).unwrap(),
            r#"{"recordId":"1","recordType":"movie","userId":"105","eventType":"delete"}"#
        );
        let awkward = put("movie", "a \"quoted\"/id", "ü\\ \u{2028}", 3);
        for event in [event, withdrawn, awkward] {
            assert_eq!(RatingEvent::from_json(&event.to_json(), RatingRange::default()).unwrap(), event);
        }
    }

    #[test]
    fn a_message_must_be_small_and_carry_an_event_under_any_key_by_default() {
        let range = RatingRange::default();
        let event = br#"{"recordId": "1", "recordType": "movie", "userId": "bob", "ratingValue": 4}"#;
        let read =
            |key: Option<&[u8]>, payload: Option<&[u8]>| RatingEvent::from_message(key, payload, range, KeyPolicy::Any);
        let bob = put("movie", "1", "bob", 4);
        for (key, matched) in [
            (Some(&b"movie/1/bob"[..]), KeyMatch::Canonical),
            (None, KeyMatch::Missing),
            (Some(b"bob"), KeyMatch::Other),
            (Some(b"movie/1/eve"), KeyMatch::Other),
        ] {
            assert_eq!(read(key, Some(event)).unwrap(), KeyedEvent { event: bob.clone(), key: matched }, "{key:?}");
        }
        let refusal = |key: Option<&[u8]>, payload: Option<&[u8]>| {
            let error = read(key, payload).unwrap_err();
            assert!(
                MessageError::KINDS.contains(&error.kind()),
                "{} is missing from MessageError::KINDS",
                error.kind()
            );
            (error.kind(), error.to_string())
        };
        assert_eq!(refusal(Some(b"k"), None), ("no_payload", "the message has no payload".to_string()));
        assert_eq!(refusal(None, Some(b"\xff\x00")).0, "malformed_json");
        let large = vec![b' '; MAX_MESSAGE_BYTES];
        assert_eq!(
            refusal(Some(b"k"), Some(&large)),
            ("too_large", "the message is 65537 bytes, over the limit of 65536 bytes for a rating event".to_string())
        );
    }

    #[test]
    fn a_strict_consumer_refuses_a_message_not_keyed_as_kafka_key_keys_it() {
        let range = RatingRange::default();
        let event = br#"{"recordId": "1", "recordType": "movie", "userId": "bob", "ratingValue": 4}"#;
        let read = |key: Option<&[u8]>| RatingEvent::from_message(key, Some(event), range, KeyPolicy::Canonical);
        assert_eq!(
            read(Some(b"movie/1/bob")).unwrap(),
            KeyedEvent { event: put("movie", "1", "bob", 4), key: KeyMatch::Canonical }
        );
        let refusal = |key: Option<&[u8]>| {
            let error = read(key).unwrap_err();
            assert!(
                MessageError::KINDS.contains(&error.kind()),
                "{} is missing from MessageError::KINDS",
                error.kind()
            );
            (error.kind(), error.to_string())
        };
        assert_eq!(
            refusal(None),
            ("no_key", r#"the message has no key; this event's key is "movie/1/bob""#.to_string())
        );
        assert_eq!(
            refusal(Some(b"movie/1/eve")),
            ("wrong_key", r#"the message's key "movie/1/eve" is not this event's key "movie/1/bob""#.to_string())
        );
    }

    #[test]
    fn kafka_keys_name_record_type_id_and_user() {
        assert_eq!(put("movie", "1", "105", 5).kafka_key(), "movie/1/105");
        // A delete has the same key as the put it withdraws, so they stay ordered.
        assert_eq!(delete("movie", "1", "105").kafka_key(), "movie/1/105");
    }

    #[test]
    fn kafka_keys_stay_unambiguous_when_ids_contain_slashes() {
        // Without escaping both would be "movie/a/b/c".
        let first = put("movie", "a/b", "c", 1).kafka_key();
        let second = put("movie", "a", "b/c", 1).kafka_key();
        assert_eq!(first, "movie/a%2Fb/c");
        assert_eq!(second, "movie/a/b%2Fc");
        // The escape character is escaped too, so "%2F" in an id is not a slash.
        assert_eq!(put("movie", "a%2Fb", "c", 1).kafka_key(), "movie/a%252Fb/c");
        // Every key reads back as the ids it was written from.
        for (record_type, record_id, user) in
            [("movie", "a/b", "c"), ("movie", "a", "b/c"), ("tv/show", "%", "%2F"), ("movie", "/", "/")]
        {
            let event = put(record_type, record_id, user, 1);
            let key = KafkaKey::parse(event.kafka_key().as_bytes()).unwrap();
            assert_eq!(key, KafkaKey { record: event.key().clone(), user: event.user().clone() });
            assert_eq!(key.to_string(), event.kafka_key());
        }
    }

    #[test]
    fn only_keys_kafka_key_writes_are_read_back() {
        let refusal = |key: &[u8]| KafkaKey::parse(key).unwrap_err().to_string();
        assert_eq!(refusal(b"movie/1"), "the key must have three parts, recordType/recordId/userId, got 2");
        assert_eq!(refusal(b"movie/1/2/3"), "the key must have three parts, recordType/recordId/userId, got 4");
        assert_eq!(refusal(b"movie/\xFF/1"), "the key is not UTF-8");
        assert_eq!(refusal(b"movie/a%2fb/1"), "recordId in the key has a '%' that starts neither %25 nor %2F");
        assert_eq!(refusal(b"movie/1/50%"), "userId in the key has a '%' that starts neither %25 nor %2F");
        assert_eq!(refusal(b"movie//1"), "recordId must not be empty");
        assert_eq!(refusal(b"movie/1/a\0"), "userId must not contain a NUL character");
    }

    /// Properties of the decoder, the validator and the key, over generated
    /// input: what a data provider might send, and plain garbage. The
    /// schema's tests (`crate::schema`) draw from the same generators.
    pub(crate) mod properties {
        use proptest::prelude::*;
        use serde_json::{Map, Value, json};

        use super::*;
        use crate::validation::MAX_ID_BYTES;

        /// The rules an accepted id must follow, written out here rather
        /// than taken from the code under test.
        fn is_valid_id(id: &str) -> bool {
            !id.trim().is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
        }

        /// Ids as they may come: short ones of the characters the key escapes
        /// and JSON must quote, any text, and both sides of the length limit.
        pub(crate) fn raw_id() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => r#"[a%/2F5 é"\\\n\t\x00]{0,8}"#,
                4 => ".{0,40}",
                1 => ".{80,300}",
                1 => Just("x".repeat(MAX_ID_BYTES)),
                1 => Just("y".repeat(MAX_ID_BYTES + 1)),
            ]
        }

        fn valid_id() -> impl Strategy<Value = String> {
            raw_id().prop_filter("a valid id", |id| is_valid_id(id))
        }

        /// A JSON value of any type, leaning towards those an event holds.
        fn any_value() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter_map("a finite number", |float| serde_json::Number::from_f64(float).map(Value::Number)),
                (-3_i64..12).prop_map(Value::from),
                raw_id().prop_map(Value::from),
                // Around the length at which a refusal shortens what it quotes.
                ".{50,80}".prop_map(Value::from),
                prop_oneof![Just("put"), Just("delete"), Just("PUT"), Just("")].prop_map(Value::from),
                Just(json!([1, "a"])),
                Just(json!({"recordId": "1"})),
            ]
        }

        /// An object with each event field absent or of some type; often
        /// enough an event that is accepted.
        pub(crate) fn event_object() -> impl Strategy<Value = Map<String, Value>> {
            let id = || {
                let id = prop_oneof![
                    8 => valid_id().prop_map(Value::from),
                    1 => raw_id().prop_map(Value::from),
                    1 => any_value(),
                ];
                proptest::option::weighted(0.95, id)
            };
            let number = |presence| {
                proptest::option::weighted(
                    presence,
                    prop_oneof![4 => (-1_i64..8).prop_map(Value::from), 1 => any_value()],
                )
            };
            let event_type = proptest::option::weighted(
                0.6,
                prop_oneof![3 => Just(Value::from("put")), 2 => Just(Value::from("delete")), 1 => any_value()],
            );
            let extra = proptest::collection::btree_map("[a-zA-Z]{1,10}", any_value(), 0..3);
            (id(), id(), id(), number(0.7), number(0.3), event_type, extra).prop_map(
                |(record_id, record_type, user_id, rating_value, value, event_type, extra)| {
                    let mut object: Map<String, Value> = extra.into_iter().collect();
                    for (name, field) in [
                        (field::RECORD_ID, record_id),
                        (field::RECORD_TYPE, record_type),
                        (field::USER_ID, user_id),
                        (field::RATING_VALUE, rating_value),
                        (field::VALUE, value),
                        (field::EVENT_TYPE, event_type),
                    ] {
                        match field {
                            Some(field) => object.insert(name.to_owned(), field),
                            None => object.remove(name),
                        };
                    }
                    object
                },
            )
        }

        /// The default range, or another one (a single value at times).
        fn any_range() -> impl Strategy<Value = RatingRange> {
            let other = (-5_i32..8, 0_i32..6).prop_map(|(min, span)| RatingRange::new(min, min + span).unwrap());
            prop_oneof![Just(RatingRange::default()), other]
        }

        pub(crate) fn valid_event() -> impl Strategy<Value = (RatingEvent, RatingRange)> {
            (valid_id(), valid_id(), valid_id(), any_range(), any::<bool>(), any::<u32>()).prop_map(
                |(record_type, record_id, user, range, is_put, pick)| {
                    let key = RecordKey::parse(record_type, record_id).unwrap();
                    let user = UserId::parse("userId", user).unwrap();
                    let span = (range.max() - range.min()) as u32 + 1;
                    let value = range.min() + (pick % span) as i32;
                    let event = if is_put {
                        RatingEvent::Put { key, user, value: RatingValue::parse("ratingValue", value, range).unwrap() }
                    } else {
                        RatingEvent::Delete { key, user }
                    };
                    (event, range)
                },
            )
        }

        /// The canonical JSON of a valid event with some of its bytes replaced.
        fn damaged_event() -> impl Strategy<Value = Vec<u8>> {
            let damage = proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4);
            (valid_event(), damage).prop_map(|((event, _), damage)| {
                let mut bytes = event.to_json();
                for (index, byte) in damage {
                    let at = index.index(bytes.len());
                    bytes[at] = byte;
                }
                bytes
            })
        }

        /// A key as the key is written (three parts, escapes), or garbage.
        fn key_like() -> impl Strategy<Value = Vec<u8>> {
            let part = || "[a%25Ff/]{1,6}";
            prop_oneof![
                (part(), part(), part()).prop_map(|(a, b, c)| format!("{a}/{b}/{c}").into_bytes()),
                "[a%/25Ff ]{0,16}".prop_map(String::into_bytes),
                ".{0,20}".prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..32),
            ]
        }

        fn key_of(event: &RatingEvent) -> KafkaKey {
            KafkaKey { record: event.key().clone(), user: event.user().clone() }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn arbitrary_bytes_never_panic_the_decoder(
                bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), damaged_event()],
                range in any_range(),
            ) {
                let _ = RatingEvent::from_json(&bytes, range);
            }

            #[test]
            fn everything_accepted_is_valid(object in event_object(), range in any_range()) {
                let text = serde_json::to_vec(&object).unwrap();
                let decoded = RatingEvent::from_json(&text, range);
                // The same verdict from the text as from the decoded value
                // (the ingester reads arrays as values); the words may differ
                // only in how a float is printed back.
                let from_value = RatingEvent::from_value(Value::Object(object.clone()), range);
                prop_assert_eq!(decoded.clone().map_err(|error| error.kind()), from_value.map_err(|error| error.kind()));
                let Ok(event) = decoded else { return Ok(()) };

                let ids = [
                    (field::RECORD_TYPE, event.key().record_type.as_str()),
                    (field::RECORD_ID, event.key().record_id.as_str()),
                    (field::USER_ID, event.user().as_str()),
                ];
                for (name, id) in ids {
                    prop_assert_eq!(object.get(name), Some(&Value::from(id)), "{} is the one sent", name);
                    prop_assert!(is_valid_id(id), "{} {:?} is not a valid id", name, id);
                }
                let event_type = object.get(field::EVENT_TYPE).filter(|kind| !kind.is_null());
                match &event {
                    RatingEvent::Put { value, .. } => {
                        let value = value.get();
                        prop_assert!((range.min()..=range.max()).contains(&value), "{} is outside {}", value, range);
                        prop_assert!(event_type.is_none() || event_type == Some(&json!("put")), "{:?}", event_type);
                        let given: Vec<&Value> = [field::RATING_VALUE, field::VALUE]
                            .into_iter()
                            .filter_map(|name| object.get(name).filter(|given| !given.is_null()))
                            .collect();
                        prop_assert!(!given.is_empty());
                        prop_assert!(given.iter().all(|given| given.as_i64() == Some(i64::from(value))), "{:?}", given);
                    }
                    RatingEvent::Delete { .. } => prop_assert_eq!(event_type, Some(&json!("delete"))),
                }

                // Valid again, and the same event, once written canonically.
                prop_assert_eq!(RatingEvent::from_json(&event.to_json(), range), Ok(event.clone()));
                prop_assert_eq!(KafkaKey::parse(event.kafka_key().as_bytes()), Ok(key_of(&event)));
            }

            #[test]
            fn refusals_quote_a_short_excerpt(text in ".{0,200}") {
                let objects = [
                    json!({"recordId": [text.clone()]}),
                    json!({"recordId": "1", "recordType": "movie", "userId": "1", "eventType": text}),
                ];
                for object in objects {
                    if let Err(error) = RatingEvent::from_value(object, RatingRange::default()) {
                        let message = error.to_string();
                        prop_assert!(message.chars().count() <= 110, "{}", message);
                    }
                }
            }

            #[test]
            fn every_valid_event_round_trips((event, range) in valid_event()) {
                prop_assert_eq!(RatingEvent::from_json(&event.to_json(), range), Ok(event.clone()));
            }

            #[test]
            fn keys_round_trip((event, _) in valid_event()) {
                let key = event.kafka_key();
                prop_assert_eq!(key.split('/').count(), 3, "{}", key);
                prop_assert_eq!(KafkaKey::parse(key.as_bytes()), Ok(key_of(&event)));
            }

            #[test]
            fn arbitrary_bytes_never_panic_the_key_decoder(bytes in key_like()) {
                // What is read back is written back the same: one key per (record, user).
                if let Ok(key) = KafkaKey::parse(&bytes) {
                    prop_assert_eq!(key.to_string().into_bytes(), bytes);
                }
            }
        }
    }
}
