//! The published schema held to the codec: on fixtures, on the codec's
//! property-test generators, character by character for ids, and against
//! the released schema.
use std::sync::LazyLock;

use jsonschema::Validator;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{RATING_EVENT_SCHEMA, compatibility::incompatibilities};
use crate::{
    event::{
        DELETE, EventError, MAX_MESSAGE_BYTES, PUT, RatingEvent, field,
        tests::properties::{event_object, raw_id, valid_event},
    },
    rating::RatingRange,
    validation::{FieldError, MAX_ID_BYTES},
};

const RELEASED_SCHEMA: &str = include_str!("../../schemas/released/rating-event.schema.json");

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).expect("the schema is JSON")
}

fn validator(schema: &str) -> Validator {
    jsonschema::draft202012::new(&parsed(schema)).expect("the schema compiles")
}

static SCHEMA: LazyLock<Validator> = LazyLock::new(|| validator(RATING_EVENT_SCHEMA));
static RELEASED: LazyLock<Validator> = LazyLock::new(|| validator(RELEASED_SCHEMA));

/// The codec's verdict with the default range, which the schema states.
fn codec(event: &Value) -> Result<RatingEvent, EventError> {
    RatingEvent::from_value(event.clone(), RatingRange::default())
}

/// Whether the codec refused `event` for a reason no JSON Schema can see:
/// an id of at most 256 characters that is over 256 bytes, or an integer
/// in the range written with a fraction or an exponent (`5.0`, `5e0`),
/// which JSON Schema's data model does not tell from `5`.
fn invisible_to_the_schema(event: &Value, error: &EventError) -> bool {
    let range = RatingRange::default();
    match error {
        EventError::Invalid(FieldError { field, problem }) if problem.starts_with("must be at most") => {
            event[*field].as_str().is_some_and(|id| id.chars().count() <= MAX_ID_BYTES)
        }
        EventError::WrongType { field, expected: "an integer", .. } => event[*field].as_f64().is_some_and(|number| {
            number.fract() == 0.0 && (f64::from(range.min())..=f64::from(range.max())).contains(&number)
        }),
        _ => false,
    }
}

/// Asserts that the schema and the codec agree on `event`, and returns
/// whether the codec accepted it.
fn assert_agree(event: &Value) -> bool {
    let verdict = codec(event);
    let errors: Vec<String> = SCHEMA.iter_errors(event).map(|error| error.to_string()).collect();
    match &verdict {
        Ok(_) => assert!(errors.is_empty(), "the codec accepts {event}, the schema refuses it: {errors:?}"),
        Err(error) if invisible_to_the_schema(event, error) => {}
        Err(error) => assert!(!errors.is_empty(), "the codec refuses {event} ({error}), the schema accepts it"),
    }
    verdict.is_ok()
}

#[test]
fn the_schema_is_a_2020_12_schema() {
    let schema = parsed(RATING_EVENT_SCHEMA);
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
    jsonschema::meta::validate(&schema).expect("valid against the 2020-12 meta-schema");
}

#[test]
fn the_schema_states_the_codecs_fields_and_limits() {
    let schema = parsed(RATING_EVENT_SCHEMA);
    let fields: Vec<&str> = schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut expected = vec![
        field::RECORD_ID,
        field::RECORD_TYPE,
        field::USER_ID,
        field::EVENT_TYPE,
        field::RATING_VALUE,
        field::VALUE,
    ];
    expected.sort_unstable();
    assert_eq!(fields, expected, "serde_json keeps object keys sorted");
    assert_eq!(schema["required"], json!([field::RECORD_ID, field::RECORD_TYPE, field::USER_ID]));
    assert_eq!(schema["properties"][field::EVENT_TYPE]["enum"], json!([PUT, DELETE, null]));

    assert_eq!(schema["$defs"]["id"]["maxLength"], MAX_ID_BYTES);
    assert_eq!(schema["x-max-message-bytes"], MAX_MESSAGE_BYTES);
    let description = schema["description"].as_str().unwrap();
    for limit in [MAX_MESSAGE_BYTES, MAX_ID_BYTES] {
        assert!(description.contains(&limit.to_string()), "the description does not mention {limit}");
    }

    let range = RatingRange::default();
    for name in [field::RATING_VALUE, field::VALUE] {
        let value = &schema["$defs"]["putValue"]["properties"][name];
        assert_eq!((&value["minimum"], &value["maximum"]), (&json!(range.min()), &json!(range.max())), "{name}");
    }
    // ratingValue and value must agree: one branch for each value of the range.
    let agreeing: Vec<i64> = schema["$defs"]["agreeingValues"]["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|branch| branch["properties"][field::RATING_VALUE]["const"].as_i64())
        .collect();
    assert_eq!(agreeing, (range.min()..=range.max()).map(i64::from).collect::<Vec<_>>());
}

#[test]
fn fixtures_get_the_same_verdict_from_the_schema_and_the_codec() {
    let event = |extra: Value| {
        let mut event = json!({"recordId": "1", "recordType": "movie", "userId": "105"});
        event.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        event
    };
    let accepted = [
        event(json!({"ratingValue": 5, "eventType": "put"})),
        event(json!({"ratingValue": 1})),
        event(json!({"value": 4, "providerId": "test-provider"})),
        event(json!({"value": 3, "ratingValue": 3, "eventType": null})),
        event(json!({"value": null, "ratingValue": 2})),
        event(json!({"eventType": "delete"})),
        event(json!({"eventType": "delete", "ratingValue": "five"})),
        event(json!({"eventType": "delete", "ratingValue": 99, "value": 4.5})),
        event(json!({"ratingValue": 5, "meta": {"a": [1, 2]}})),
        json!({"recordId": "a/b%2F", "recordType": "tv show", "userId": "zoë 🎬", "ratingValue": 5}),
        json!({"recordId": "x".repeat(MAX_ID_BYTES), "recordType": "movie", "userId": "1", "ratingValue": 5}),
    ];
    let refused = [
        json!([1, 2, 3]),
        json!("movie/1/105"),
        json!({"recordType": "movie", "userId": "1", "ratingValue": 5}),
        json!({"recordId": "1", "userId": "1", "ratingValue": 5}),
        json!({"recordId": "1", "recordType": "movie", "ratingValue": 5}),
        json!({"recordId": 1, "recordType": "movie", "userId": "1", "ratingValue": 5}),
        json!({"recordId": "1", "recordType": 1, "userId": "105", "value": 5}),
        json!({"recordId": "", "recordType": "movie", "userId": "1", "ratingValue": 5}),
        json!({"recordId": " \t", "recordType": "movie", "userId": "1", "ratingValue": 5}),
        json!({"recordId": "1", "recordType": "movie", "userId": "b\nob", "ratingValue": 5}),
        json!({"recordId": "1", "recordType": "movie", "userId": "da\u{0}ve", "ratingValue": 5}),
        json!({"recordId": "1", "recordType": "movie", "userId": "x\u{85}", "ratingValue": 5}),
        json!({"recordId": "y".repeat(MAX_ID_BYTES + 1), "recordType": "movie", "userId": "1", "ratingValue": 5}),
        event(json!({})),
        event(json!({"eventType": "put"})),
        event(json!({"ratingValue": null})),
        event(json!({"ratingValue": 6})),
        event(json!({"ratingValue": 0})),
        event(json!({"value": -3})),
        event(json!({"ratingValue": 18_446_744_073_709_551_615_u64})),
        event(json!({"ratingValue": "5"})),
        event(json!({"ratingValue": 4.5})),
        event(json!({"ratingValue": true})),
        event(json!({"ratingValue": 4, "value": 5})),
        event(json!({"ratingValue": 4, "value": 9})),
        event(json!({"ratingValue": 5, "eventType": "undo"})),
        event(json!({"ratingValue": 5, "eventType": "PUT"})),
        event(json!({"ratingValue": 5, "eventType": 1})),
    ];
    for event in &accepted {
        assert!(assert_agree(event), "the codec refuses {event}: {:?}", codec(event));
    }
    for event in &refused {
        assert!(!assert_agree(event), "the codec accepts {event}");
        assert!(!SCHEMA.is_valid(event), "the schema accepts {event}");
    }
    // The repository's own events: the demo's file.
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let demo: Value =
        serde_json::from_str(&std::fs::read_to_string(workspace.join("ratingsdata.json")).unwrap()).unwrap();
    let demo = demo.as_array().unwrap();
    assert!(!demo.is_empty());
    for event in demo {
        assert!(assert_agree(event), "ratingsdata.json holds {event}, which the codec refuses");
    }
}

#[test]
fn what_the_schema_cannot_see_is_what_its_description_says() {
    // Accepted by the schema, refused by the codec; each is named in the
    // schema's description. Should one start to agree, that text is wrong.
    let cases = [
        (json!({"recordId": "é".repeat(129), "recordType": "movie", "userId": "1", "ratingValue": 5}), "258"),
        (json!({"recordId": "1", "recordType": "movie", "userId": "1", "ratingValue": 5.0}), "must be an integer"),
        (
            serde_json::from_str(r#"{"recordId": "1", "recordType": "movie", "userId": "1", "value": 5e0}"#).unwrap(),
            "must be an integer",
        ),
    ];
    for (event, reason) in cases {
        assert!(SCHEMA.is_valid(&event), "{event}");
        let error = codec(&event).unwrap_err();
        assert!(error.to_string().contains(reason), "{event}: {error}");
        assert!(invisible_to_the_schema(&event, &error), "{event}: {error}");
    }
}

#[test]
fn ids_agree_character_by_character() {
    // The id rules as the schema states them (every id field refers to
    // them, as the fixtures show) against the codec's: every character of
    // the Basic Multilingual Plane, alone and after a letter, and the first
    // of each other plane.
    let ids = validator(&parsed(RATING_EVENT_SCHEMA)["$defs"]["id"].to_string());
    let characters = (0..=0xFFFF_u32).chain((1..=16).map(|plane| plane << 16)).filter_map(char::from_u32);
    let mut refused = 0;
    for character in characters {
        for id in [character.to_string(), format!("x{character}")] {
            let codec = FieldError::require_id(field::USER_ID, id.clone());
            assert_eq!(ids.is_valid(&json!(id)), codec.is_ok(), "{id:?}: the codec says {codec:?}");
            refused += usize::from(codec.is_err());
        }
    }
    // The 65 control characters (Cc), alone and after a letter, and the 19
    // other white-space characters alone.
    assert_eq!(refused, 65 * 2 + 19);
}

#[test]
fn the_schema_stays_compatible_with_the_released_one() {
    let found = incompatibilities(&parsed(RELEASED_SCHEMA), &parsed(RATING_EVENT_SCHEMA));
    assert!(
        found.is_empty(),
        "contract/schemas/rating-event.schema.json would refuse events that the released schema \
         (contract/schemas/released/rating-event.schema.json) accepts, and break producers written against it:\n  {}\n\
         Make the change compatible, or, deliberately, replace the released copy (the rule: the `contract::schema` docs).",
        found.join("\n  ")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_events_get_the_same_verdict_from_the_schema_and_the_codec(object in event_object()) {
        assert_agree(&Value::Object(object));
    }

    #[test]
    fn every_valid_event_in_the_default_range_validates((event, _) in valid_event()) {
        let canonical: Value = serde_json::from_slice(&event.to_json()).unwrap();
        let in_default_range = match &event {
            RatingEvent::Put { value, .. } => {
                let range = RatingRange::default();
                (range.min()..=range.max()).contains(&value.get())
            }
            RatingEvent::Delete { .. } => true,
        };
        prop_assert_eq!(SCHEMA.is_valid(&canonical), in_default_range, "{}", canonical);
        prop_assert!(assert_agree(&canonical) == in_default_range);
    }

    #[test]
    fn events_valid_under_the_released_schema_stay_valid(object in event_object(), id in raw_id()) {
        let mut with_id = object.clone();
        with_id.insert(field::USER_ID.to_owned(), Value::from(id));
        for event in [Value::Object(object), Value::Object(with_id)] {
            if RELEASED.is_valid(&event) {
                prop_assert!(SCHEMA.is_valid(&event), "{}", event);
            }
        }
    }
}

/// The generated corpus reaches both verdicts often enough to mean something.
#[test]
fn the_generated_corpus_holds_accepted_and_refused_events() {
    use proptest::{strategy::ValueTree, test_runner::TestRunner};
    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..512 {
        let object: Map<String, Value> = event_object().new_tree(&mut runner).unwrap().current();
        if assert_agree(&Value::Object(object)) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    assert!(accepted > 50 && refused > 50, "{accepted} accepted, {refused} refused of 512");
}
