//! Unix permission bits, written as an octal string (`"0755"`) so a person
//! reading a manifest sees what `ls -l` would show.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::FormatError;

/// Permission bits including setuid, setgid and sticky (`0o7777` at most).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mode(u32);

impl Mode {
    pub const MAX: u32 = 0o7777;

    pub fn new(bits: u32) -> Result<Self, FormatError> {
        if bits > Self::MAX {
            return Err(FormatError::BadMode(format!("{bits:o}")));
        }
        Ok(Mode(bits))
    }

    /// Takes the permission bits of a `st_mode`, dropping the file type.
    pub fn from_st_mode(st_mode: u32) -> Self {
        Mode(st_mode & Self::MAX)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn is_executable(self) -> bool {
        self.0 & 0o111 != 0
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = (3..=4).contains(&s.len()) && s.bytes().all(|b| (b'0'..=b'7').contains(&b));
        if !ok {
            return Err(serde::de::Error::custom(FormatError::BadMode(s)));
        }
        let bits = u32::from_str_radix(&s, 8).map_err(serde::de::Error::custom)?;
        Mode::new(bits).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let m: Mode = serde_json::from_str("\"0755\"").unwrap();
        assert_eq!(m.bits(), 0o755);
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0755\"");
        for bad in ["\"0x755\"", "\"8\"", "\"77777\"", "\"\"", "493"] {
            assert!(serde_json::from_str::<Mode>(bad).is_err(), "{bad}");
        }
    }
}
