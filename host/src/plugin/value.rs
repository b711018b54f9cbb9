//! JSON <-> component-model values, driven by the function's WIT types.
//!
//! Plugin inputs and outputs are recorded in the ledger, written in fixtures
//! and replayed as JSON, so every call goes through this one mapping:
//!
//! | WIT | JSON |
//! |-----|------|
//! | `bool`, integers, `f32`/`f64` | boolean, number |
//! | `char`, `string` | string |
//! | `list<T>`, `tuple<..>` | array |
//! | `record` | object keyed by WIT field names (kebab-case); unknown keys are errors, a missing `option` field is `none` |
//! | `enum` | the case name as a string |
//! | `variant` | `"case"` without payload, `{ "case": payload }` with one |
//! | `option<T>` | `null` or the value |
//! | `result<T, E>` | `{ "ok": value }` or `{ "err": value }` (`null` for no payload) |
//! | `flags` | array of set flag names |
//!
//! Resources, futures and streams never cross the plugin boundary.

use serde_json::{Map, Number, Value};
use wasmtime::component::{Type, Val};

/// Where in the input a value sits; formatted only when an error names it.
#[derive(Clone, Copy)]
enum At<'a> {
    Root(&'a str),
    Field(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            At::Root(name) => f.write_str(name),
            At::Field(parent, name) => write!(f, "{parent}.{name}"),
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Converts `json` into a value of type `ty`; errors name the JSON path,
/// starting at `root`.
pub fn to_val(json: &Value, ty: &Type, root: &str) -> Result<Val, String> {
    convert(json, ty, &At::Root(root))
}

fn convert(json: &Value, ty: &Type, path: &At<'_>) -> Result<Val, String> {
    let wrong = |expected: &str| format!("at {path}: expected {expected}, found {}", describe(json));
    let int = |json: &Value| json.as_i64().map(i128::from).or_else(|| json.as_u64().map(i128::from));
    macro_rules! integer {
        ($variant:ident, $t:ty, $name:literal) => {
            int(json)
                .and_then(|n| <$t>::try_from(n).ok())
                .map(Val::$variant)
                .ok_or_else(|| wrong(concat!("an integer fitting ", $name)))
        };
    }
    match ty {
        Type::Bool => json.as_bool().map(Val::Bool).ok_or_else(|| wrong("a boolean")),
        Type::S8 => integer!(S8, i8, "s8"),
        Type::U8 => integer!(U8, u8, "u8"),
        Type::S16 => integer!(S16, i16, "s16"),
        Type::U16 => integer!(U16, u16, "u16"),
        Type::S32 => integer!(S32, i32, "s32"),
        Type::U32 => integer!(U32, u32, "u32"),
        Type::S64 => integer!(S64, i64, "s64"),
        Type::U64 => integer!(U64, u64, "u64"),
        Type::Float32 => json.as_f64().map(|f| Val::Float32(f as f32)).ok_or_else(|| wrong("a number")),
        Type::Float64 => json.as_f64().map(Val::Float64).ok_or_else(|| wrong("a number")),
        Type::Char => {
            let mut chars = json.as_str().map(str::chars).ok_or_else(|| wrong("a one-character string"))?;
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(Val::Char(c)),
                _ => Err(wrong("a one-character string")),
            }
        }
        Type::String => json.as_str().map(|s| Val::String(s.to_owned())).ok_or_else(|| wrong("a string")),
        Type::List(list) => {
            let items = json.as_array().ok_or_else(|| wrong("an array"))?;
            let elem = list.ty();
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &elem, &At::Index(path, i)))
                .collect::<Result<_, _>>()
                .map(Val::List)
        }
        Type::Tuple(tuple) => {
            let items = json.as_array().ok_or_else(|| wrong("an array"))?;
            if items.len() != tuple.types().len() {
                return Err(wrong(&format!("an array of {} items", tuple.types().len())));
            }
            items
                .iter()
                .zip(tuple.types())
                .enumerate()
                .map(|(i, (item, t))| convert(item, &t, &At::Index(path, i)))
                .collect::<Result<_, _>>()
                .map(Val::Tuple)
        }
        Type::Record(record) => {
            let object = json.as_object().ok_or_else(|| wrong("an object"))?;
            if record.fields().filter(|f| object.contains_key(f.name)).count() != object.len() {
                let names: Vec<&str> = record.fields().map(|f| f.name).collect();
                let unknown = object.keys().find(|k| !names.contains(&k.as_str())).map_or("", String::as_str);
                return Err(format!("at {path}: unknown field {unknown:?}; expected fields {}", names.join(", ")));
            }
            record
                .fields()
                .map(|field| {
                    let value = match (object.get(field.name), &field.ty) {
                        (Some(v), _) => convert(v, &field.ty, &At::Field(path, field.name))?,
                        (None, Type::Option(_)) => Val::Option(None),
                        (None, _) => return Err(format!("at {path}: missing field {:?}", field.name)),
                    };
                    Ok((field.name.to_owned(), value))
                })
                .collect::<Result<_, _>>()
                .map(Val::Record)
        }
        Type::Enum(enum_ty) => match json.as_str() {
            Some(name) if enum_ty.names().any(|n| n == name) => Ok(Val::Enum(name.to_owned())),
            _ => Err(wrong(&format!("one of {}", enum_ty.names().collect::<Vec<_>>().join(", ")))),
        },
        Type::Variant(variant) => {
            let (name, payload) = match json {
                Value::String(name) => (name.as_str(), None),
                Value::Object(map) if map.len() == 1 => {
                    let (k, v) = map.iter().next().map(|(k, v)| (k.as_str(), Some(v))).unwrap_or(("", None));
                    (k, v)
                }
                _ => return Err(wrong("a case name or an object with one case")),
            };
            let case = variant.cases().find(|c| c.name == name).ok_or_else(|| {
                let cases: Vec<&str> = variant.cases().map(|c| c.name).collect();
                format!("at {path}: unknown case {name:?}; expected one of {}", cases.join(", "))
            })?;
            let value = match (case.ty, payload) {
                (Some(t), Some(v)) => Some(Box::new(convert(v, &t, &At::Field(path, name))?)),
                (None, None | Some(Value::Null)) => None,
                (Some(_), None) => return Err(format!("at {path}: case {name:?} needs a payload")),
                (None, Some(_)) => return Err(format!("at {path}: case {name:?} takes no payload")),
            };
            Ok(Val::Variant(name.to_owned(), value))
        }
        Type::Option(option) => match json {
            Value::Null => Ok(Val::Option(None)),
            v => Ok(Val::Option(Some(Box::new(convert(v, &option.ty(), path)?)))),
        },
        Type::Result(result) => {
            let object =
                json.as_object().filter(|o| o.len() == 1).ok_or_else(|| wrong("{\"ok\": ..} or {\"err\": ..}"))?;
            let payload = |t: Option<Type>, v: &Value, case: &str| -> Result<Option<Box<Val>>, String> {
                match t {
                    Some(t) => Ok(Some(Box::new(convert(v, &t, &At::Field(path, case))?))),
                    None => Ok(None),
                }
            };
            if let Some(v) = object.get("ok") {
                Ok(Val::Result(Ok(payload(result.ok(), v, "ok")?)))
            } else if let Some(v) = object.get("err") {
                Ok(Val::Result(Err(payload(result.err(), v, "err")?)))
            } else {
                Err(wrong("{\"ok\": ..} or {\"err\": ..}"))
            }
        }
        Type::Flags(flags) => {
            let items = json.as_array().ok_or_else(|| wrong("an array of flag names"))?;
            items
                .iter()
                .map(|item| match item.as_str() {
                    Some(n) if flags.names().any(|f| f == n) => Ok(n.to_owned()),
                    _ => Err(wrong(&format!("flag names among {}", flags.names().collect::<Vec<_>>().join(", ")))),
                })
                .collect::<Result<_, _>>()
                .map(Val::Flags)
        }
        _ => Err(format!("at {path}: this WIT type cannot cross the plugin boundary")),
    }
}

/// Converts a value returned by a plugin into JSON.
pub fn to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::from(*n),
        Val::U8(n) => Value::from(*n),
        Val::S16(n) => Value::from(*n),
        Val::U16(n) => Value::from(*n),
        Val::S32(n) => Value::from(*n),
        Val::U32(n) => Value::from(*n),
        Val::S64(n) => Value::from(*n),
        Val::U64(n) => Value::from(*n),
        Val::Float32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Val::Float64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Val::Record(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        Val::Enum(name) => Value::String(name.clone()),
        Val::Variant(name, None) => Value::String(name.clone()),
        Val::Variant(name, Some(v)) => Value::Object(Map::from_iter([(name.clone(), to_json(v))])),
        Val::Option(None) => Value::Null,
        Val::Option(Some(v)) => to_json(v),
        Val::Result(Ok(v)) => {
            Value::Object(Map::from_iter([("ok".to_owned(), v.as_deref().map_or(Value::Null, to_json))]))
        }
        Val::Result(Err(v)) => {
            Value::Object(Map::from_iter([("err".to_owned(), v.as_deref().map_or(Value::Null, to_json))]))
        }
        Val::Flags(names) => Value::Array(names.iter().map(|n| Value::String(n.clone())).collect()),
        Val::Map(pairs) => {
            Value::Array(pairs.iter().map(|(k, v)| Value::Array(vec![to_json(k), to_json(v)])).collect())
        }
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Value::Null,
    }
}

fn describe(json: &Value) -> &'static str {
    match json {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
