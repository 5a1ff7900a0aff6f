//! `StrOrSeq`: a JSON value that is either a string or an array, as OpenAI's `content` and
//! `stop` are. It is told apart by the value's first token; serde's untagged enums would
//! buffer the whole value before trying each variant, on every request.

use serde::{Deserialize, Deserializer, de};

/// A JSON string or an array.
#[derive(Debug)]
pub enum StrOrSeq<T> {
    Str(String),
    Seq(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for StrOrSeq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
            type Value = StrOrSeq<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrSeq::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOrSeq::Str(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(StrOrSeq::Seq(items))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_or_an_array_and_nothing_else() {
        let one: StrOrSeq<String> = serde_json::from_str(r#""x""#).unwrap();
        assert!(matches!(one, StrOrSeq::Str(s) if s == "x"));
        let many: StrOrSeq<String> = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert!(matches!(many, StrOrSeq::Seq(v) if v == ["a", "b"]));
        let err = serde_json::from_str::<StrOrSeq<String>>("5").unwrap_err();
        assert!(err.to_string().contains("a string or an array"), "{err}");
        let err = serde_json::from_str::<StrOrSeq<String>>("[5]").unwrap_err();
        assert!(err.to_string().contains("expected a string"), "{err}");
    }
}
