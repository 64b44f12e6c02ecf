//! Whether a JSON Schema still accepts everything an earlier version
//! accepted, judged keyword by keyword: the rule of the module docs of
//! [`crate::schema`]. Conservative: a change it cannot judge is reported.
use serde_json::{Map, Value};

/// Keywords that say what a value means without constraining it.
const ANNOTATIONS: &[&str] = &["$schema", "$id", "$comment", "title", "description", "examples", "default"];
/// Lower bounds: a change may only lower them.
const LOWER_BOUNDS: &[&str] = &["minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"];
/// Upper bounds: a change may only raise them.
const UPPER_BOUNDS: &[&str] =
    &["maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "x-max-message-bytes"];
/// Keywords whose value, when present in the released schema, must be kept
/// or dropped, never changed.
const KEPT_OR_DROPPED: &[&str] = &["const", "pattern", "$ref"];

/// Every change from `released` to `current` that may refuse a value the
/// released schema accepted, each as `at /json/pointer: what changed`.
pub fn incompatibilities(released: &Value, current: &Value) -> Vec<String> {
    let mut found = Vec::new();
    compare(released, current, "", &mut found);
    found
}

fn compare(released: &Value, current: &Value, at: &str, found: &mut Vec<String>) {
    match (released, current) {
        (_, Value::Bool(true)) => {}
        (Value::Object(released), Value::Object(current)) => compare_objects(released, current, at, found),
        (Value::Bool(true), Value::Object(current))
            if current.keys().all(|key| ANNOTATIONS.contains(&key.as_str())) => {}
        _ => found.push(format!("at {at}: the schema {released} became {current}")),
    }
}

fn compare_objects(released: &Map<String, Value>, current: &Map<String, Value>, at: &str, found: &mut Vec<String>) {
    let keywords = released.keys().chain(current.keys().filter(|key| !released.contains_key(*key)));
    for keyword in keywords {
        let here = format!("{at}/{keyword}");
        let (old, new) = (released.get(keyword), current.get(keyword));
        let keyword = keyword.as_str();
        match (keyword, old, new) {
            (_, _, _) if ANNOTATIONS.contains(&keyword) => {}
            // Fields and definitions, gone with the keyword: each one removed.
            ("properties", Some(old), None) => {
                compare_named(old, &Value::Object(Map::new()), &here, "the field", found)
            }
            ("$defs", Some(old), None) => {
                compare_named(old, &Value::Object(Map::new()), &here, "the definition", found)
            }
            // Any other keyword absent in the current schema: no constraint any more.
            (_, Some(_), None) => {}
            (_, None, Some(new)) => {
                let constraining = match keyword {
                    "properties" | "$defs" => false,
                    "required" => new.as_array().is_some_and(|required| !required.is_empty()),
                    "additionalProperties" => *new != Value::Bool(true),
                    _ => true,
                };
                if constraining {
                    found.push(format!("at {here}: added {new}"));
                }
            }
            (_, None, None) => unreachable!("a keyword of one of the two schemas"),
            ("properties", Some(old), Some(new)) => compare_named(old, new, &here, "the field", found),
            ("$defs", Some(old), Some(new)) => compare_named(old, new, &here, "the definition", found),
            ("required", Some(old), Some(new)) => {
                for field in members(new) {
                    if !members(old).contains(&field) {
                        found.push(format!("at {here}: {field} became required"));
                    }
                }
            }
            ("type", Some(old), Some(new)) => {
                let accepted = types(new);
                let number = Value::from("number");
                for kind in types(old) {
                    if !(accepted.contains(&kind) || (kind == "integer" && accepted.contains(&number))) {
                        found.push(format!("at {here}: values of type {kind} are no longer accepted"));
                    }
                }
            }
            ("enum", Some(old), Some(new)) => {
                for value in members(old) {
                    if !members(new).contains(&value) {
                        found.push(format!("at {here}: the value {value} was removed"));
                    }
                }
            }
            (_, Some(old), Some(new)) if LOWER_BOUNDS.contains(&keyword) => {
                if new.as_f64() > old.as_f64() {
                    found.push(format!("at {here}: raised from {old} to {new}"));
                }
            }
            (_, Some(old), Some(new)) if UPPER_BOUNDS.contains(&keyword) => {
                if new.as_f64() < old.as_f64() {
                    found.push(format!("at {here}: lowered from {old} to {new}"));
                }
            }
            (_, Some(old), Some(new)) if KEPT_OR_DROPPED.contains(&keyword) => {
                if old != new {
                    found.push(format!("at {here}: changed from {old} to {new}"));
                }
            }
            ("additionalProperties" | "then" | "else" | "items" | "contains", Some(old), Some(new)) => {
                compare(old, new, &here, found)
            }
            // `not`: the current schema may refuse less, so its inner schema
            // may accept less: the comparison the other way round.
            ("not", Some(old), Some(new)) => compare(new, old, &here, found),
            ("anyOf", Some(old), Some(new)) => compare_branches(old, new, &here, true, found),
            ("allOf" | "oneOf", Some(old), Some(new)) => compare_branches(old, new, &here, false, found),
            (_, Some(old), Some(new)) => {
                if old != new {
                    found.push(format!("at {here}: changed from {old} to {new}, which this check cannot judge"));
                }
            }
        }
    }
}

/// `properties` or `$defs`: each one released is still there, and accepts
/// what it accepted.
fn compare_named(old: &Value, new: &Value, at: &str, what: &str, found: &mut Vec<String>) {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        found.push(format!("at {at}: not an object"));
        return;
    };
    for (name, released) in old {
        match new.get(name) {
            Some(current) => compare(released, current, &format!("{at}/{name}"), found),
            None => found.push(format!("at {at}: {what} {name} was removed or renamed")),
        }
    }
}

/// Subschemas matched by position: `anyOf` may gain branches at its end
/// (`may_grow`); `allOf` and `oneOf` keep their length (one branch more in
/// a `oneOf` can make a value match two).
fn compare_branches(old: &Value, new: &Value, at: &str, may_grow: bool, found: &mut Vec<String>) {
    let (old, new) = (members(old), members(new));
    if new.len() < old.len() || (!may_grow && new.len() != old.len()) {
        found.push(format!("at {at}: {} branches became {}", old.len(), new.len()));
        return;
    }
    for (index, (released, current)) in old.iter().zip(&new).enumerate() {
        compare(released, current, &format!("{at}/{index}"), found);
    }
}

fn members(value: &Value) -> Vec<&Value> {
    value.as_array().map(|items| items.iter().collect()).unwrap_or_default()
}

/// `type` as a list, whether written as one name or several.
fn types(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(kinds) => kinds.clone(),
        kind => vec![kind.clone()],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::schema::RATING_EVENT_SCHEMA;

    /// An edit of the schema.
    type Edit = Box<dyn FnOnce(&mut Value)>;

    fn schema() -> Value {
        serde_json::from_str(RATING_EVENT_SCHEMA).unwrap()
    }

    /// The incompatibilities found once `change` is applied to the schema.
    fn after(change: impl FnOnce(&mut Value)) -> Vec<String> {
        let mut changed = schema();
        change(&mut changed);
        incompatibilities(&schema(), &changed)
    }

    fn at<'a>(schema: &'a mut Value, pointer: &str) -> &'a mut Value {
        schema.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer} in the schema"))
    }

    #[test]
    fn a_schema_is_compatible_with_itself() {
        assert_eq!(incompatibilities(&schema(), &schema()), Vec::<String>::new());
    }

    #[test]
    fn breaking_changes_are_named() {
        let properties = "/properties";
        let rating_value = "/$defs/putValue/properties/ratingValue";
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "a field removed",
                Box::new(|schema| {
                    at(schema, properties).as_object_mut().unwrap().remove("userId");
                }),
                "at /properties: the field userId was removed or renamed",
            ),
            (
                "a field renamed",
                Box::new(|schema| {
                    let fields = at(schema, properties).as_object_mut().unwrap();
                    let value = fields.remove("value").unwrap();
                    fields.insert("rating".into(), value);
                }),
                "at /properties: the field value was removed or renamed",
            ),
            (
                "a type narrowed",
                Box::new(move |schema| *at(schema, &format!("{rating_value}/type")) = json!("integer")),
                "at /$defs/putValue/properties/ratingValue/type: values of type \"null\" are no longer accepted",
            ),
            (
                "a type changed",
                Box::new(|schema| *at(schema, "/$defs/id/type") = json!("integer")),
                "at /$defs/id/type: values of type \"string\" are no longer accepted",
            ),
            (
                "an enum value removed",
                Box::new(|schema| *at(schema, "/properties/eventType/enum") = json!(["put", null])),
                "at /properties/eventType/enum: the value \"delete\" was removed",
            ),
            (
                "a field made required",
                Box::new(|schema| at(schema, "/required").as_array_mut().unwrap().push(json!("eventType"))),
                "at /required: \"eventType\" became required",
            ),
            (
                "a bound tightened",
                Box::new(move |schema| *at(schema, &format!("{rating_value}/maximum")) = json!(4)),
                "at /$defs/putValue/properties/ratingValue/maximum: lowered from 5 to 4",
            ),
            (
                "a shorter id",
                Box::new(|schema| *at(schema, "/$defs/id/maxLength") = json!(128)),
                "at /$defs/id/maxLength: lowered from 256 to 128",
            ),
            (
                "a pattern changed",
                Box::new(|schema| *at(schema, "/$defs/id/allOf/1/pattern") = json!("^[a-z]*$")),
                "at /$defs/id/allOf/1/pattern: changed from",
            ),
            (
                "unknown fields refused",
                Box::new(|schema| *at(schema, "/additionalProperties") = json!(false)),
                "at /additionalProperties: the schema true became false",
            ),
            (
                "a constraint added",
                Box::new(|schema| {
                    at(schema, "/$defs/id").as_object_mut().unwrap().insert("format".into(), json!("uuid"));
                }),
                "at /$defs/id/format: added \"uuid\"",
            ),
            (
                "a not widened, so refusing more",
                Box::new(|schema| *at(schema, "/$defs/agreeingValues/anyOf/0/not/required") = json!(["value"])),
                "at /$defs/agreeingValues/anyOf/0/not/required: \"ratingValue\" became required",
            ),
            (
                "every field removed",
                Box::new(|schema| {
                    schema.as_object_mut().unwrap().remove("properties");
                }),
                "at /properties: the field eventType was removed or renamed",
            ),
            (
                "an anyOf branch removed",
                Box::new(|schema| {
                    at(schema, "/$defs/agreeingValues/anyOf").as_array_mut().unwrap().pop();
                }),
                "at /$defs/agreeingValues/anyOf: 8 branches became 7",
            ),
        ];
        for (change, apply, expected) in cases {
            let found = after(apply);
            assert!(
                found.iter().any(|problem| problem.starts_with(expected)),
                "{change}: expected {expected:?}, found {found:?}"
            );
        }
    }

    #[test]
    fn widening_changes_pass() {
        let cases: Vec<(&str, Edit)> = vec![
            (
                "a field added",
                Box::new(|schema| {
                    at(schema, "/properties")
                        .as_object_mut()
                        .unwrap()
                        .insert("source".into(), json!({"type": "string"}));
                }),
            ),
            (
                "an enum value added",
                Box::new(|schema| *at(schema, "/properties/eventType/enum") = json!(["put", "delete", null, "undo"])),
            ),
            ("a field no longer required", Box::new(|schema| *at(schema, "/required") = json!(["recordId", "userId"]))),
            ("a bound relaxed", Box::new(|schema| *at(schema, "/$defs/putValue/properties/value/maximum") = json!(10))),
            (
                "a type widened",
                Box::new(|schema| *at(schema, "/$defs/putValue/properties/value/type") = json!(["number", "null"])),
            ),
            (
                "an anyOf branch added",
                Box::new(|schema| at(schema, "/$defs/agreeingValues/anyOf").as_array_mut().unwrap().push(json!(true))),
            ),
            (
                "a pattern dropped",
                Box::new(|schema| {
                    at(schema, "/$defs/id/allOf/0").as_object_mut().unwrap().remove("pattern");
                }),
            ),
            ("a description reworded", Box::new(|schema| *at(schema, "/description") = json!("Rating events."))),
        ];
        for (change, apply) in cases {
            assert_eq!(after(apply), Vec::<String>::new(), "{change}");
        }
    }
}
