//! PCI addresses in the canonical `dddd:bb:dd.f` form.

use std::fmt;
use std::str::FromStr;

/// A PCI function address (`0000:3b:00.2`). Always valid once constructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddr {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI address {input:?}: expected dddd:bb:dd.f (hex), e.g. 0000:3b:00.2")]
pub struct PciAddrError {
    /// The rejected input (truncated to 64 bytes).
    pub input: String,
}

impl PciAddr {
    /// Builds an address, checking the device and function ranges.
    pub fn new(domain: u16, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self {
            domain,
            bus,
            device,
            function,
        })
    }
}

impl FromStr for PciAddr {
    type Err = PciAddrError;

    /// Accepts `dddd:bb:dd.f` and the short `bb:dd.f` (domain 0).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PciAddrError {
            input: s.chars().take(64).collect(),
        };
        let hex = |part: &str, max_len: usize| -> Result<u32, PciAddrError> {
            if part.is_empty()
                || part.len() > max_len
                || !part.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(err());
            }
            u32::from_str_radix(part, 16).map_err(|_| err())
        };
        let (rest, func) = s.rsplit_once('.').ok_or_else(err)?;
        let parts: Vec<&str> = rest.split(':').collect();
        let (domain, bus, dev) = match parts.as_slice() {
            [d, b, v] => (hex(d, 4)?, hex(b, 2)?, hex(v, 2)?),
            [b, v] => (0, hex(b, 2)?, hex(v, 2)?),
            _ => return Err(err()),
        };
        let func = hex(func, 1)?;
        let to_u8 = |v: u32| u8::try_from(v).map_err(|_| err());
        PciAddr::new(
            u16::try_from(domain).map_err(|_| err())?,
            to_u8(bus)?,
            to_u8(dev)?,
            to_u8(func)?,
        )
        .ok_or_else(err)
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl serde::Serialize for PciAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PciAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_form() {
        let a: PciAddr = "0000:3b:00.2".parse().unwrap();
        assert_eq!(a, PciAddr::new(0, 0x3b, 0, 2).unwrap());
        assert_eq!(a.to_string(), "0000:3b:00.2");
        let short: PciAddr = "3B:1f.7".parse().unwrap();
        assert_eq!(short.to_string(), "0000:3b:1f.7");
    }

    #[test]
    fn rejects_malformed_and_path_like_input() {
        for bad in [
            "",
            "0000:3b:00",
            "0000:3b:20.0",
            "0000:3b:00.8",
            "../../etc",
            "0000:3b:00.2/..",
            "00000:3b:00.2",
            "0000:3bb:00.2",
            "0000:3b:00.2 ",
            "g000:3b:00.2",
            "0000::00.2",
        ] {
            assert!(bad.parse::<PciAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_round_trip() {
        let a: PciAddr = "0000:af:01.3".parse().unwrap();
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(j, "\"0000:af:01.3\"");
        assert_eq!(serde_json::from_str::<PciAddr>(&j).unwrap(), a);
        assert!(serde_json::from_str::<PciAddr>("\"x\"").is_err());
    }
}
