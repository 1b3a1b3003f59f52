//! Frame bodies: one MessagePack map with string keys. Before serde sees a
//! body, [`check_body`] walks it once without allocating, so that trailing
//! bytes, nesting beyond [`MAX_BODY_DEPTH`], `ext` values, non-string keys,
//! strings that are not UTF-8 and lengths that run past the end are named
//! precisely instead of surfacing as a confusing field error (or being
//! skipped silently inside an unknown field).

use serde::de::DeserializeOwned;

use crate::{DecodeError, MessageType, MAX_BODY_DEPTH};

/// Checks that `body` is exactly one MessagePack map with string keys,
/// nested at most [`MAX_BODY_DEPTH`] deep, with no bytes after it.
pub(crate) fn check_body(body: &[u8]) -> Result<(), String> {
    let mut walker = Walker { bytes: body, at: 0 };
    match body.first() {
        None => return Err("the body is empty".to_owned()),
        Some(&marker) if !is_map_marker(marker) => {
            return Err(format!(
                "the body must be a map of named fields, but starts with byte {marker:#04x} ({})",
                marker_name(marker)
            ))
        }
        Some(_) => {}
    }
    walker.skip_value(1)?;
    if walker.at != body.len() {
        return Err(format!("{} bytes follow the map at offset {}", body.len() - walker.at, walker.at));
    }
    Ok(())
}

/// Decodes a checked body into a message struct.
pub(crate) fn decode_body<M: DeserializeOwned>(message_type: MessageType, body: &[u8]) -> Result<M, DecodeError> {
    check_body(body).map_err(|reason| DecodeError::MalformedBody { message_type, reason })?;
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(body);
    serde::Deserialize::deserialize(&mut deserializer).map_err(|source| DecodeError::BadBody { message_type, source })
}

fn is_map_marker(marker: u8) -> bool {
    matches!(marker, 0x80..=0x8f | 0xde | 0xdf)
}

fn is_str_marker(marker: u8) -> bool {
    matches!(marker, 0xa0..=0xbf | 0xd9..=0xdb)
}

fn marker_name(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => "an integer",
        0x80..=0x8f | 0xde | 0xdf => "a map",
        0x90..=0x9f | 0xdc | 0xdd => "an array",
        0xa0..=0xbf | 0xd9..=0xdb => "a string",
        0xc0 => "nil",
        0xc1 => "the never-used byte",
        0xc2 | 0xc3 => "a boolean",
        0xc4..=0xc6 => "bin",
        0xc7..=0xc9 | 0xd4..=0xd8 => "an ext value",
        0xca | 0xcb => "a float",
    }
}

struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Walker<'_> {
    fn take(&mut self, count: usize) -> Result<&[u8], String> {
        let remaining = self.bytes.len() - self.at;
        if count > remaining {
            return Err(format!("a value at offset {} needs {count} more bytes but the body has {remaining}", self.at));
        }
        let taken = &self.bytes[self.at..self.at + count];
        self.at += count;
        Ok(taken)
    }

    fn length(&mut self, width: usize) -> Result<usize, String> {
        let bytes = self.take(width)?;
        let mut value = 0usize;
        for &byte in bytes {
            value = (value << 8) | usize::from(byte);
        }
        Ok(value)
    }

    /// Strings are checked here, known field or not, so that every SDK
    /// rejects invalid UTF-8 the same way wherever it appears.
    fn skip_str(&mut self, length: usize, offset: usize) -> Result<(), String> {
        let bytes = self.take(length)?;
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(error) => Err(format!("the string at offset {offset} is not UTF-8: {error}")),
        }
    }

    fn skip_value(&mut self, depth: usize) -> Result<(), String> {
        let offset = self.at;
        let marker = self.take(1)?[0];
        let (entries, is_map) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => return Ok(()),
            0xcc | 0xd0 => return self.take(1).map(drop),
            0xcd | 0xd1 => return self.take(2).map(drop),
            0xce | 0xd2 | 0xca => return self.take(4).map(drop),
            0xcf | 0xd3 | 0xcb => return self.take(8).map(drop),
            0xa0..=0xbf => return self.skip_str(usize::from(marker & 0x1f), offset),
            0xd9 => {
                let length = self.length(1)?;
                return self.skip_str(length, offset);
            }
            0xda => {
                let length = self.length(2)?;
                return self.skip_str(length, offset);
            }
            0xdb => {
                let length = self.length(4)?;
                return self.skip_str(length, offset);
            }
            0xc4 => {
                let length = self.length(1)?;
                return self.take(length).map(drop);
            }
            0xc5 => {
                let length = self.length(2)?;
                return self.take(length).map(drop);
            }
            0xc6 => {
                let length = self.length(4)?;
                return self.take(length).map(drop);
            }
            0x90..=0x9f => (usize::from(marker & 0x0f), false),
            0xdc => (self.length(2)?, false),
            0xdd => (self.length(4)?, false),
            0x80..=0x8f => (usize::from(marker & 0x0f), true),
            0xde => (self.length(2)?, true),
            0xdf => (self.length(4)?, true),
            0xc1 => return Err(format!("byte 0xc1 at offset {offset} is not a MessagePack value")),
            0xc7..=0xc9 | 0xd4..=0xd8 => {
                return Err(format!(
                    "an ext value (byte {marker:#04x}) at offset {offset}: this protocol uses no \
                     MessagePack ext types"
                ))
            }
        };
        if depth > MAX_BODY_DEPTH {
            return Err(format!("maps and arrays nest deeper than {MAX_BODY_DEPTH} levels at offset {offset}"));
        }
        let mut keys = SeenKeys::default();
        for _ in 0..entries {
            if is_map {
                let key_offset = self.at;
                match self.bytes.get(key_offset) {
                    Some(&key) if is_str_marker(key) => {}
                    Some(&key) => {
                        return Err(format!(
                            "map keys must be strings, found {} at offset {key_offset}",
                            marker_name(key)
                        ))
                    }
                    None => {
                        return Err(format!(
                            "the map at offset {offset} announces {entries} entries but the \
                             body ends at offset {key_offset}"
                        ))
                    }
                }
                self.skip_value(depth + 1)?;
                let key = &self.bytes[key_offset..self.at];
                if !keys.insert(key) {
                    let (_, text) = split_str(key);
                    return Err(format!(
                        "the key {:?} appears twice in the map at offset {offset}",
                        String::from_utf8_lossy(text)
                    ));
                }
            }
            self.skip_value(depth + 1)?;
        }
        Ok(())
    }
}

/// The encoded keys of one map seen so far. Maps of named fields are
/// small, so the first sixteen keys are kept without allocating and
/// compared one by one; larger maps (possible only in unknown fields) use
/// a hash set.
#[derive(Default)]
struct SeenKeys<'a> {
    few: [&'a [u8]; 16],
    count: usize,
    many: Option<std::collections::HashSet<&'a [u8]>>,
}

impl<'a> SeenKeys<'a> {
    /// Records an encoded key; false if the same text was seen before.
    /// The text is compared rather than the encoding, since a peer may
    /// write a longer length prefix than needed.
    fn insert(&mut self, key: &'a [u8]) -> bool {
        let (_, text) = split_str(key);
        if let Some(many) = &mut self.many {
            return many.insert(text);
        }
        if self.few[..self.count].contains(&text) {
            return false;
        }
        if self.count < self.few.len() {
            self.few[self.count] = text;
            self.count += 1;
        } else {
            let mut many: std::collections::HashSet<&'a [u8]> = self.few.iter().copied().collect();
            many.insert(text);
            self.many = Some(many);
        }
        true
    }
}

/// Splits an encoded string into its marker-and-length prefix and its
/// UTF-8 bytes.
fn split_str(encoded: &[u8]) -> (&[u8], &[u8]) {
    let prefix = match encoded[0] {
        0xa0..=0xbf => 1,
        0xd9 => 2,
        0xda => 3,
        0xdb => 5,
        marker => unreachable!("keys were checked to be strings, found {marker:#04x}"),
    };
    encoded.split_at(prefix)
}
