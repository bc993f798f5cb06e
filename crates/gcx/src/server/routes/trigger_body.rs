//! The body of `POST /v1/triggers` as JSON: one object, or an array of at most
//! `serve.max_batch` items. An array is read by a serde visitor that builds at most
//! `max_batch` items and only counts the rest without building them, so a body of a
//! million small items is refused for what it costs to scan its bytes.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// What the body holds.
#[derive(Debug)]
pub enum TriggerDocument {
    /// One trigger object.
    One(Value),
    /// An array of at most `max_batch` items.
    Many(Vec<Value>),
    /// An array of more than `max_batch` items; `items` is its length.
    TooMany { items: usize },
    /// Neither an object nor an array: the JSON kind it is.
    Other(&'static str),
}

/// Reads `body` as one trigger or an array of them, building at most `max_batch` items.
pub fn parse(body: &[u8], max_batch: usize) -> Result<TriggerDocument, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let document = de.deserialize_any(DocumentVisitor { max_batch })?;
    de.end()?;
    Ok(document)
}

struct DocumentVisitor {
    max_batch: usize,
}

impl<'de> Visitor<'de> for DocumentVisitor {
    type Value = TriggerDocument;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("one trigger object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TriggerDocument, A::Error> {
        let value = de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(TriggerDocument::One(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TriggerDocument, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max_batch));
        while items.len() < self.max_batch {
            match seq.next_element::<Value>()? {
                Some(item) => items.push(item),
                None => return Ok(TriggerDocument::Many(items)),
            }
        }
        if seq.next_element::<IgnoredAny>()?.is_none() {
            return Ok(TriggerDocument::Many(items));
        }
        // Over the limit: count the rest without building it.
        let mut count = items.len() + 1;
        drop(items);
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(TriggerDocument::TooMany { items: count })
    }

    fn visit_bool<E>(self, _: bool) -> Result<TriggerDocument, E> {
        Ok(TriggerDocument::Other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<TriggerDocument, E> {
        Ok(TriggerDocument::Other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<TriggerDocument, E> {
        Ok(TriggerDocument::Other("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<TriggerDocument, E> {
        Ok(TriggerDocument::Other("number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<TriggerDocument, E> {
        Ok(TriggerDocument::Other("string"))
    }
    fn visit_unit<E>(self) -> Result<TriggerDocument, E> {
        Ok(TriggerDocument::Other("null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_other_kinds() {
        assert!(matches!(
            parse(b"{\"a\":1}", 2).unwrap(),
            TriggerDocument::One(_)
        ));
        assert!(
            matches!(parse(b" [{}, {}] ", 2).unwrap(), TriggerDocument::Many(v) if v.len() == 2)
        );
        assert!(matches!(parse(b"[]", 2).unwrap(), TriggerDocument::Many(v) if v.is_empty()));
        assert!(matches!(
            parse(b"\"x\"", 2).unwrap(),
            TriggerDocument::Other("string")
        ));
        assert!(matches!(
            parse(b"null", 2).unwrap(),
            TriggerDocument::Other("null")
        ));
        assert!(parse(b"[{}, ", 2).is_err());
        assert!(parse(b"{} x", 2).is_err());
    }

    #[test]
    fn a_long_array_is_counted_not_built() {
        let body = format!("[{}{{}}]", "{},".repeat(999_999));
        match parse(body.as_bytes(), 500).unwrap() {
            TriggerDocument::TooMany { items } => assert_eq!(items, 1_000_000),
            other => panic!("{other:?}"),
        }
        // One over the limit is refused; the limit itself is not.
        assert!(matches!(
            parse(b"[1,2,3]", 2).unwrap(),
            TriggerDocument::TooMany { items: 3 }
        ));
        assert!(matches!(parse(b"[1,2]", 2).unwrap(), TriggerDocument::Many(v) if v.len() == 2));
    }
}
