//! `google.protobuf.Struct` and `Value` to and from their JSON form
//! (`serde_json`), as the model keeps metadata: endpoint metadata, a
//! `TypedStruct`'s value, and the dynamic metadata the external
//! authorization service sends and receives.

use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};

/// A `Struct` as a JSON object.
pub fn struct_to_json(s: &Struct) -> serde_json::Map<String, serde_json::Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect()
}

/// A `Value` as JSON; a number JSON cannot hold (NaN, infinity) is null.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(serde_json::Value::Null, Into::into)
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => l.values.iter().map(value_to_json).collect(),
    }
}

/// A JSON object as a `Struct`.
pub fn json_to_struct(m: &serde_json::Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: m
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// JSON as a `Value` (numbers as doubles, as protobuf keeps them).
pub fn json_to_value(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        serde_json::Value::Object(m) => Kind::StructValue(json_to_struct(m)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trips() {
        let j = json!({"a": "s", "n": 1.5, "b": true, "z": null, "l": [1.0, "x"], "o": {"k": "v"}});
        let s = json_to_struct(j.as_object().expect("object"));
        assert_eq!(serde_json::Value::Object(struct_to_json(&s)), j);
    }
}
