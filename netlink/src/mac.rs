//! Ethernet MAC addresses.

use std::{fmt, str::FromStr};

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The raw bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Builds a MAC address from exactly six bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(bytes).ok().map(MacAddr)
    }

    /// True for a unicast address (I/G bit clear) that is not all zeros.
    pub fn is_valid_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A string that is not a MAC address of the form `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, thiserror::Error)]
#[error("invalid MAC address {0:?}")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let mac: MacAddr = "02:AB:cd:00:1:ff".parse().unwrap();
        assert_eq!(mac.0, [0x02, 0xab, 0xcd, 0x00, 0x01, 0xff]);
        assert_eq!(mac.to_string(), "02:ab:cd:00:01:ff");
        assert!(mac.is_valid_unicast());
        assert!("02:ab:cd:00:01".parse::<MacAddr>().is_err());
        assert!("02:ab:cd:00:01:ff:00".parse::<MacAddr>().is_err());
        assert!("02:ab:cd:00:01:fg".parse::<MacAddr>().is_err());
        assert!(!"01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_valid_unicast());
    }
}
