//! Canonical JSON and the digests built on it.
//!
//! Everything Hermes hashes (ledger events, decision payloads, policy digests)
//! goes through [`to_canonical_string`]: RFC 8785 style, object keys sorted by
//! their UTF-16 code units, no insignificant whitespace, strings escaped as
//! serde_json escapes them (which matches RFC 8785 for the control characters,
//! `"` and `\`). Key order never depends on how a map was built or on which
//! serde_json features another crate switched on.
//!
//! Hashed payloads hold integers, strings, booleans and nulls only; a float is
//! written in serde_json's shortest round-trip form, which agrees with
//! ECMAScript's number formatting except for exponents (`1e21` vs `1e+21`).

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Writes `value` as canonical JSON.
pub fn to_canonical_string(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out);
    // Only serde_json's UTF-8 output and ASCII punctuation were written.
    String::from_utf8(out).unwrap_or_default()
}

/// The canonical JSON of `value` with the top-level member `skip` left out
/// (an event without its own `hash`), as bytes.
pub fn to_canonical_bytes_without(value: &Value, skip: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    match value {
        Value::Object(map) => write_object(map, Some(skip), &mut out),
        other => write_value(other, &mut out),
    }
    out
}

/// Serializes `value` and returns its canonical JSON.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(to_canonical_string(&serde_json::to_value(value)?))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of the canonical JSON of `value`, as bytes. The JSON is written
/// into a buffer kept per thread (a plugin call hashes its input, and a
/// fresh kilobyte-sized allocation per call costs more than the hashing).
pub fn sha256(value: &Value) -> [u8; 32] {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        write_value(value, out);
        let digest = Sha256::digest(&out[..]).into();
        if out.capacity() > 1 << 16 {
            // Do not keep a large probe input's buffer for good.
            *out = Vec::new();
        }
        digest
    })
}

/// The two lower-case hex digits of `byte`.
fn hex_pair(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 0xf)]]
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|b| hex_pair(*b)).map(char::from).collect()
}

/// A SHA-256 digest as lower-case hex digits, without allocating.
pub fn sha256_hex_bytes(digest: [u8; 32]) -> [u8; 64] {
    let mut hex = [0u8; 64];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
        pair.copy_from_slice(&hex_pair(byte));
    }
    hex
}

/// SHA-256 of the canonical JSON of `value`.
pub fn digest<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(sha256_hex(canonical_json(value)?.as_bytes()))
}

/// Whether serde_json's maps iterate in their keys' byte order, as its
/// `BTreeMap`-backed map does. With its `preserve_order` feature (which any
/// crate in a build could switch on) they keep insertion order instead.
/// Asked once per process.
fn maps_iterate_sorted() -> bool {
    static SORTED: LazyLock<bool> = LazyLock::new(|| {
        let mut map = serde_json::Map::new();
        map.insert("b".to_owned(), Value::Null);
        map.insert("a".to_owned(), Value::Null);
        map.keys().next().is_some_and(|key| key == "a")
    });
    *SORTED
}

/// The entries of `map` ordered by their keys' UTF-16 code units.
fn sorted_entries(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    entries
}

/// Appends the canonical form of `value` to `out`.
pub fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_object(map, None, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::String(text) => write_str(text, scan(text).escape, out),
        Value::Number(number) => write_number(number, out),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Null => out.extend_from_slice(b"null"),
    }
}

/// Appends `map` as a canonical object, without the member `skip`.
///
/// A map in byte order is written as it iterates, unless a key holds a
/// character from U+E000 on: those are the only ones whose UTF-8 byte
/// order and UTF-16 order can disagree, so the object is then rewritten
/// from [`sorted_entries`].
fn write_object(map: &serde_json::Map<String, Value>, skip: Option<&str>, out: &mut Vec<u8>) {
    let kept = |(key, _): &(&String, &Value)| Some(key.as_str()) != skip;
    let start = out.len();
    if maps_iterate_sorted() && write_members(map.iter().filter(kept), true, out) {
        return;
    }
    out.truncate(start);
    write_members(sorted_entries(map).into_iter().filter(kept), false, out);
}

/// Appends `{"key":value,...}`. With `byte_order_only`, stops and returns
/// false at the first key whose order may differ in UTF-16.
fn write_members<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    byte_order_only: bool,
    out: &mut Vec<u8>,
) -> bool {
    out.push(b'{');
    for (i, (key, item)) in entries.enumerate() {
        let scanned = scan(key);
        if byte_order_only && scanned.from_e000 {
            return false;
        }
        if i > 0 {
            out.push(b',');
        }
        write_str(key, scanned.escape, out);
        out.push(b':');
        write_value(item, out);
    }
    out.push(b'}');
    true
}

/// What one pass over a string's bytes found.
struct Scanned {
    /// A `"`, `\` or control character, which JSON escapes.
    escape: bool,
    /// A character from U+E000 on (UTF-8 lead byte 0xEE or above).
    from_e000: bool,
}

fn scan(text: &str) -> Scanned {
    // No early exit, so the loop vectorizes; the strings are short.
    let (escape, from_e000) = text.bytes().fold((false, false), |(escape, high), b| {
        (escape | (b < 0x20) | (b == b'"') | (b == b'\\'), high | (b >= 0xee))
    });
    Scanned { escape, from_e000 }
}

/// Appends a JSON string exactly as serde_json writes it; a string with
/// nothing to escape is copied as is.
fn write_str(text: &str, escape: bool, out: &mut Vec<u8>) {
    if escape {
        write_scalar(text, out);
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Appends a number as serde_json writes it: integers in decimal, floats in
/// their shortest round-trip form.
fn write_number(number: &serde_json::Number, out: &mut Vec<u8>) {
    let mut digits = itoa::Buffer::new();
    if let Some(n) = number.as_u64() {
        out.extend_from_slice(digits.format(n).as_bytes());
    } else if let Some(n) = number.as_i64() {
        out.extend_from_slice(digits.format(n).as_bytes());
    } else {
        write_scalar(number, out);
    }
}

/// Appends a string, number, bool or null as JSON (canonical as is).
pub fn write_scalar<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Strings and scalars have exactly one serde_json rendering; writing
    // into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_and_no_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, 2, {"y": null, "x": true}], "c": "s\n"}});
        assert_eq!(to_canonical_string(&v), r#"{"a":{"c":"s\n","z":[1,2,{"x":true,"y":null}]},"b":1}"#);
    }

    #[test]
    fn keys_sorted_by_utf16_code_units() {
        // U+1F600 (surrogates D83D DE00) sorts before U+E000 in UTF-16 code
        // units, after it in UTF-8 bytes (F0.. vs EE..).
        let v = json!({"\u{E000}": 2, "\u{1F600}": 1});
        assert_eq!(to_canonical_string(&v), "{\"\u{1F600}\":1,\"\u{E000}\":2}");
    }

    #[test]
    fn value_maps_iterate_in_key_order() {
        // Call records keep plugin inputs as given; that is deterministic
        // only while serde_json's maps are ordered (no `preserve_order`).
        let v: Value = serde_json::from_str(r#"{"b": 1, "a": 2, "c": 3}"#).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in
            ["", "plain", "quote \" and \\ back", "tab\t nl\n nul\u{0} del\u{7f}", "é ✓ 😀 \u{E000}", "</script>"]
        {
            let mut out = Vec::new();
            write_value(&Value::String(text.to_owned()), &mut out);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    /// The canonical form written the plain way: every object's members
    /// sorted by UTF-16 code units, every scalar through serde_json.
    fn reference(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
                let members: Vec<String> = entries
                    .into_iter()
                    .map(|(key, item)| format!("{}:{}", serde_json::to_string(key).unwrap(), reference(item)))
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            Value::Array(items) => format!("[{}]", items.iter().map(reference).collect::<Vec<_>>().join(",")),
            scalar => serde_json::to_string(scalar).unwrap(),
        }
    }

    /// Keys and strings drawn from ASCII, characters JSON escapes, and the
    /// ranges where UTF-8 and UTF-16 orders disagree.
    fn arb_text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex(
            "[a-c\"\\\\\\x00-\\x1f\\x7f\u{e9}\u{e000}-\u{e002}\u{fffd}\u{1f600}-\u{1f602}]{0,4}",
        )
        .expect("regex")
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            arb_text().prop_map(Value::String),
        ];
        scalar.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(arb_text(), inner, 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::proptest_cases(512)))]

        #[test]
        fn writes_what_the_plain_way_writes(value in arb_json(), skip in arb_text()) {
            proptest::prop_assert_eq!(to_canonical_string(&value), reference(&value));
            let mut without = value.clone();
            if let Value::Object(map) = &mut without {
                map.remove(&skip);
            }
            proptest::prop_assert_eq!(to_canonical_bytes_without(&value, &skip), reference(&without).into_bytes());
        }
    }
}
