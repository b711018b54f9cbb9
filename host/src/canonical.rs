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
        Value::Object(map) if in_utf16_order(map) => {
            write_entries(map.iter().filter(|(k, _)| k.as_str() != skip), &mut out)
        }
        Value::Object(map) => {
            write_entries(sorted_entries(map).into_iter().filter(|(k, _)| k.as_str() != skip), &mut out)
        }
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

/// Whether `map` iterates in its keys' UTF-16 code unit order already, as
/// a serde_json map (a `BTreeMap`, in byte order) does unless a key holds a
/// character from U+E000 on (the only ones whose UTF-8 byte order and
/// UTF-16 order can disagree). Checked without allocating, so the common
/// case skips [`sorted_entries`].
fn in_utf16_order(map: &serde_json::Map<String, Value>) -> bool {
    let mut previous: Option<&[u8]> = None;
    map.keys().all(|key| {
        let key = key.as_bytes();
        let ordered = previous.is_none_or(|p| p < key) && key.iter().all(|&b| b < 0xee);
        previous = Some(key);
        ordered
    })
}

/// The entries of `map` ordered by their keys' UTF-16 code units.
fn sorted_entries(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    let utf16_order = |a: &str, b: &str| a.encode_utf16().cmp(b.encode_utf16());
    // A BTreeMap-backed map is almost always in this order already.
    if !entries.is_sorted_by(|(a, _), (b, _)| utf16_order(a, b).is_le()) {
        entries.sort_by(|(a, _), (b, _)| utf16_order(a, b));
    }
    entries
}

/// Appends the canonical form of `value` to `out`.
pub fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) if in_utf16_order(map) => write_entries(map.iter(), out),
        Value::Object(map) => write_entries(sorted_entries(map).into_iter(), out),
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
        Value::String(text) => write_str(text, out),
        scalar => write_scalar(scalar, out),
    }
}

/// Appends a JSON string exactly as serde_json writes it; a string with
/// nothing to escape (no `"`, `\` or control character) is copied as is.
fn write_str(text: &str, out: &mut Vec<u8>) {
    if text.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        write_scalar(text, out);
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

fn write_entries<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, item)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        write_value(item, out);
    }
    out.push(b'}');
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
}
