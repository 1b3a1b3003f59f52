//! A small binary codec for journal records and snapshots: LEB128 varints
//! for integers, length-prefixed byte strings. Written by hand rather than
//! derived: records are encoded and decoded hundreds of thousands of times a
//! second, snapshots hold millions of jobs, and every byte's meaning is
//! explicit (the layout is documented in docs/state-machine.md).

use crate::ids::{JobId, Timestamp};

/// Appends values to a byte buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// An encoder that appends to `bytes`.
    pub fn with_buffer(bytes: Vec<u8>) -> Encoder {
        Encoder { bytes }
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// How many bytes have been written.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// One byte.
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    /// An unsigned integer as a LEB128 varint (1 to 10 bytes).
    pub fn uint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// A boolean as one byte.
    pub fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    /// A byte string: its length, then the bytes.
    pub fn bytes(&mut self, value: &[u8]) {
        self.uint(value.len() as u64);
        self.bytes.extend_from_slice(value);
    }

    /// A UTF-8 string.
    pub fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    /// A job id.
    pub fn job(&mut self, id: JobId) {
        self.uint(id.0);
    }

    /// A time.
    pub fn time(&mut self, at: Timestamp) {
        self.uint(at.0);
    }

    /// An optional value: a presence byte, then the value.
    pub fn option<T>(&mut self, value: Option<&T>, mut each: impl FnMut(&mut Encoder, &T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                each(self, value);
            }
        }
    }

    /// A sequence: its length, then each element.
    pub fn seq<T>(&mut self, values: &[T], mut each: impl FnMut(&mut Encoder, &T)) {
        self.uint(values.len() as u64);
        for value in values {
            each(self, value);
        }
    }
}

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {what} at byte {at}: {problem}")]
pub struct DecodeError {
    /// What was being decoded.
    pub what: &'static str,
    /// The byte offset in the input.
    pub at: usize,
    /// What was wrong.
    pub problem: &'static str,
}

/// Reads values back from a byte slice.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes, at: 0 }
    }

    /// The offset of the next byte.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Whether every byte has been read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// An error at the current position.
    pub fn error(&self, what: &'static str, problem: &'static str) -> DecodeError {
        DecodeError { what, at: self.at, problem }
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.is_done() {
            Ok(())
        } else {
            Err(self.error(what, "trailing bytes"))
        }
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.at).ok_or_else(|| self.error(what, "unexpected end"))?;
        self.at += 1;
        Ok(byte)
    }

    /// A LEB128 varint.
    pub fn uint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8(what)?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if shift == 63 && byte > 1 {
                    return Err(self.error(what, "integer overflows 64 bits"));
                }
                return Ok(value);
            }
        }
        Err(self.error(what, "integer longer than 10 bytes"))
    }

    /// A varint that must fit a u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.uint(what)?).map_err(|_| self.error(what, "out of range for u32"))
    }

    /// A varint that must fit a u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        u16::try_from(self.uint(what)?).map_err(|_| self.error(what, "out of range for u16"))
    }

    /// A boolean byte (0 or 1).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error(what, "boolean is neither 0 nor 1")),
        }
    }

    /// A length-prefixed byte string, borrowed.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.uint(what)?;
        let remaining = (self.bytes.len() - self.at) as u64;
        if len > remaining {
            return Err(self.error(what, "length runs past the end"));
        }
        let start = self.at;
        self.at += len as usize;
        Ok(&self.bytes[start..self.at])
    }

    /// A UTF-8 string.
    pub fn str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let at = self.at;
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError { what, at, problem: "invalid UTF-8" })
    }

    /// A job id.
    pub fn job(&mut self, what: &'static str) -> Result<JobId, DecodeError> {
        self.uint(what).map(JobId)
    }

    /// A time.
    pub fn time(&mut self, what: &'static str) -> Result<Timestamp, DecodeError> {
        self.uint(what).map(Timestamp)
    }

    /// An optional value.
    pub fn option<T>(
        &mut self,
        what: &'static str,
        each: impl FnOnce(&mut Decoder<'a>) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => each(self).map(Some),
            _ => Err(self.error(what, "presence byte is neither 0 nor 1")),
        }
    }

    /// A sequence. The length is checked against the bytes left (each
    /// element takes at least one byte) before anything is allocated.
    pub fn seq<T>(
        &mut self,
        what: &'static str,
        mut each: impl FnMut(&mut Decoder<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let len = self.uint(what)?;
        if len > (self.bytes.len() - self.at) as u64 {
            return Err(self.error(what, "sequence longer than the bytes left"));
        }
        let mut values = Vec::with_capacity(len as usize);
        for _ in 0..len {
            values.push(each(self)?);
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let mut encoder = Encoder::new();
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            encoder.uint(value);
        }
        encoder.str("héllo");
        encoder.bytes(&[1, 2, 3]);
        encoder.option(Some(&7u64), |e, v| e.uint(*v));
        encoder.option(None::<&u64>, |e, v| e.uint(*v));
        encoder.seq(&[1u64, 2, 3], |e, v| e.uint(*v));
        let bytes = encoder.into_bytes();
        let mut decoder = Decoder::new(&bytes);
        for value in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            assert_eq!(decoder.uint("n").unwrap(), value);
        }
        assert_eq!(decoder.str("s").unwrap(), "héllo");
        assert_eq!(decoder.bytes("b").unwrap(), &[1, 2, 3]);
        assert_eq!(decoder.option("o", |d| d.uint("v")).unwrap(), Some(7));
        assert_eq!(decoder.option("o", |d| d.uint("v")).unwrap(), None);
        assert_eq!(decoder.seq("q", |d| d.uint("v")).unwrap(), vec![1, 2, 3]);
        decoder.finish("test").unwrap();
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic_or_a_huge_allocation() {
        assert!(Decoder::new(&[0x80]).uint("n").is_err());
        assert!(Decoder::new(&[0xff; 11]).uint("n").is_err());
        assert!(Decoder::new(&[5, 1, 2]).bytes("b").is_err());
        // A sequence claiming 2^40 elements in a 6-byte input.
        let mut encoder = Encoder::new();
        encoder.uint(1 << 40);
        let bytes = encoder.into_bytes();
        let error = Decoder::new(&bytes).seq("q", |d| d.u8("x")).unwrap_err();
        assert_eq!(error.problem, "sequence longer than the bytes left");
    }
}
