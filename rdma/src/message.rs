//! Netlink framing: `nlmsghdr` and `nlattr` TLVs, encoded and decoded.
//!
//! RDMA netlink messages have no family header: attributes follow the
//! 16-byte `nlmsghdr` directly. Every length is 4-byte aligned. The decoder
//! works on untrusted bytes and reports malformed input as [`DecodeError`];
//! it never panics and never reads past the buffer.

use crate::consts::nl;

/// Why bytes are not a well-formed netlink message or attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a header or a declared length needs.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        /// What was being decoded.
        what: &'static str,
        /// Bytes the header or length field asks for.
        needed: usize,
        /// Bytes actually there.
        available: usize,
    },
    /// A length field smaller than its own header.
    #[error("invalid {what} length {len}")]
    BadLength {
        /// What was being decoded.
        what: &'static str,
        /// The declared length.
        len: usize,
    },
    /// An attribute payload of the wrong size for its type.
    #[error("attribute {attr}: expected {expected}, got {len} bytes")]
    BadAttr {
        /// Attribute type.
        attr: u16,
        /// What the payload should be.
        expected: &'static str,
        /// Its actual length.
        len: usize,
    },
    /// An attribute value outside its defined range.
    #[error("attribute {attr}: value {value} out of range")]
    BadValue {
        /// Attribute type.
        attr: u16,
        /// The rejected value.
        value: u64,
    },
    /// A reply without an attribute that the kernel always sends.
    #[error("reply lacks attribute {attr}")]
    MissingAttr {
        /// Attribute type.
        attr: u16,
    },
}

/// Rounds `len` up to the netlink alignment (4).
pub const fn align(len: usize) -> usize {
    (len + nl::NLA_ALIGNTO - 1) & !(nl::NLA_ALIGNTO - 1)
}

/// A decoded `struct nlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `nlmsg_len`: header plus payload.
    pub len: u32,
    /// `nlmsg_type`.
    pub msg_type: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`: 0 for messages from the kernel.
    pub pid: u32,
}

impl Header {
    /// Decodes the first 16 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, DecodeError> {
        let b: &[u8; nl::NLMSG_HDRLEN] = buf
            .get(..nl::NLMSG_HDRLEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError::Truncated {
                what: "nlmsghdr",
                needed: nl::NLMSG_HDRLEN,
                available: buf.len(),
            })?;
        Ok(Self {
            len: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            msg_type: u16::from_ne_bytes([b[4], b[5]]),
            flags: u16::from_ne_bytes([b[6], b[7]]),
            seq: u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
            pid: u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
        })
    }

    /// The 16 bytes of this header.
    pub fn to_bytes(&self) -> [u8; nl::NLMSG_HDRLEN] {
        let mut out = [0u8; nl::NLMSG_HDRLEN];
        out[0..4].copy_from_slice(&self.len.to_ne_bytes());
        out[4..6].copy_from_slice(&self.msg_type.to_ne_bytes());
        out[6..8].copy_from_slice(&self.flags.to_ne_bytes());
        out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        out[12..16].copy_from_slice(&self.pid.to_ne_bytes());
        out
    }
}

/// Builds one netlink message: header first, then attributes, with the
/// length patched in by [`MessageBuilder::finish`].
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
}

impl MessageBuilder {
    /// Starts a message from port 0 (the kernel fills in ours).
    pub fn new(msg_type: u16, flags: u16, seq: u32) -> Self {
        Self::with_pid(msg_type, flags, seq, 0)
    }

    /// Starts a message with an explicit `nlmsg_pid` (replies carry the receiver's).
    pub fn with_pid(msg_type: u16, flags: u16, seq: u32, pid: u32) -> Self {
        let header = Header {
            len: 0,
            msg_type,
            flags,
            seq,
            pid,
        };
        Self {
            buf: header.to_bytes().to_vec(),
        }
    }

    /// Appends raw payload bytes (padded to alignment).
    pub fn raw(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    /// Appends an attribute with an arbitrary payload.
    ///
    /// A payload too large for the 16-bit length field is cut at the limit;
    /// no NLDEV attribute comes near it.
    pub fn attr(mut self, kind: u16, payload: &[u8]) -> Self {
        let max = usize::from(u16::MAX) - nl::NLA_HDRLEN;
        let payload = payload.get(..max).unwrap_or(payload);
        let len = u16::try_from(nl::NLA_HDRLEN + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// Appends a `u8` attribute.
    pub fn attr_u8(self, kind: u16, v: u8) -> Self {
        self.attr(kind, &[v])
    }

    /// Appends a `u32` attribute (host byte order).
    pub fn attr_u32(self, kind: u16, v: u32) -> Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// Appends a `u64` attribute (host byte order).
    pub fn attr_u64(self, kind: u16, v: u64) -> Self {
        self.attr(kind, &v.to_ne_bytes())
    }

    /// Appends a NUL-terminated string attribute (`NLA_NUL_STRING`).
    pub fn attr_str(self, kind: u16, s: &str) -> Self {
        let mut bytes = Vec::with_capacity(s.len() + 1);
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
        self.attr(kind, &bytes)
    }

    /// Finishes the message, writing its total length into the header.
    pub fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        if let Some(field) = self.buf.get_mut(0..4) {
            field.copy_from_slice(&len.to_ne_bytes());
        }
        self.buf
    }

    fn pad(&mut self) {
        let padded = align(self.buf.len());
        self.buf.resize(padded, 0);
    }
}

/// One message inside a datagram, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The decoded header.
    pub header: Header,
    /// Bytes after the header, up to `nlmsg_len`.
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// The attributes of an RDMA netlink message (they start right after the header).
    pub fn attrs(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }
}

/// Splits a datagram into messages. Yields an error once and then stops
/// when a header or length does not fit.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages {
        rest: datagram,
        failed: false,
    }
}

/// Iterator returned by [`messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let result = split_message(self.rest);
        match result {
            Ok((msg, rest)) => {
                self.rest = rest;
                Some(Ok(msg))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn split_message(buf: &[u8]) -> Result<(Message<'_>, &[u8]), DecodeError> {
    let header = Header::parse(buf)?;
    let len = usize::try_from(header.len).unwrap_or(usize::MAX);
    if len < nl::NLMSG_HDRLEN {
        return Err(DecodeError::BadLength {
            what: "nlmsghdr",
            len,
        });
    }
    let payload = buf
        .get(nl::NLMSG_HDRLEN..len)
        .ok_or(DecodeError::Truncated {
            what: "message",
            needed: len,
            available: buf.len(),
        })?;
    // The last message of a datagram may lack its trailing padding.
    let rest = buf.get(align(len)..).unwrap_or(&[]);
    Ok((Message { header, payload }, rest))
}

/// One attribute, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Attribute type without the nested/byte-order flag bits.
    pub kind: u16,
    /// Whether `NLA_F_NESTED` was set.
    pub nested: bool,
    /// The payload, without header or padding.
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as a `u8`.
    pub fn as_u8(&self) -> Result<u8, DecodeError> {
        match self.payload {
            [v] => Ok(*v),
            _ => Err(self.bad("u8")),
        }
    }

    /// The payload as a host-order `u32`.
    pub fn as_u32(&self) -> Result<u32, DecodeError> {
        self.payload
            .try_into()
            .map(u32::from_ne_bytes)
            .map_err(|_| self.bad("u32"))
    }

    /// The payload as a host-order `u64`.
    pub fn as_u64(&self) -> Result<u64, DecodeError> {
        self.payload
            .try_into()
            .map(u64::from_ne_bytes)
            .map_err(|_| self.bad("u64"))
    }

    /// The payload as a string, up to its NUL terminator (if any).
    pub fn as_str(&self) -> Result<&'a str, DecodeError> {
        let bytes = match self.payload.iter().position(|&b| b == 0) {
            Some(end) => self.payload.get(..end).unwrap_or(self.payload),
            None => self.payload,
        };
        std::str::from_utf8(bytes).map_err(|_| self.bad("UTF-8 string"))
    }

    /// The attributes nested in this one.
    pub fn nested_attrs(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }

    fn bad(&self, expected: &'static str) -> DecodeError {
        DecodeError::BadAttr {
            attr: self.kind,
            expected,
            len: self.payload.len(),
        }
    }
}

/// Iterator over the attributes in a buffer. Yields an error once and
/// then stops when an attribute header or length does not fit.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Attrs<'a> {
    /// Iterates over the attributes in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match split_attr(self.rest) {
            Ok((attr, rest)) => {
                self.rest = rest;
                Some(Ok(attr))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn split_attr(buf: &[u8]) -> Result<(Attr<'_>, &[u8]), DecodeError> {
    let head = buf.get(..nl::NLA_HDRLEN).ok_or(DecodeError::Truncated {
        what: "nlattr",
        needed: nl::NLA_HDRLEN,
        available: buf.len(),
    })?;
    let len = usize::from(u16::from_ne_bytes([head[0], head[1]]));
    let raw_kind = u16::from_ne_bytes([head[2], head[3]]);
    if len < nl::NLA_HDRLEN {
        return Err(DecodeError::BadLength {
            what: "nlattr",
            len,
        });
    }
    let payload = buf.get(nl::NLA_HDRLEN..len).ok_or(DecodeError::Truncated {
        what: "attribute",
        needed: len,
        available: buf.len(),
    })?;
    let rest = buf.get(align(len)..).unwrap_or(&[]);
    Ok((
        Attr {
            kind: raw_kind & nl::NLA_TYPE_MASK,
            nested: raw_kind & nl::NLA_F_NESTED != 0,
            payload,
        },
        rest,
    ))
}

/// The body of an `NLMSG_ERROR` message: an errno (0 for an ack) and the
/// extended-ack text when the kernel sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// Positive errno, or 0 for an acknowledgement.
    pub errno: i32,
    /// `NLMSGERR_ATTR_MSG`, when present.
    pub ext_msg: Option<String>,
}

impl ErrorBody {
    /// Decodes the payload of an `NLMSG_ERROR` message with header `flags`.
    pub fn parse(payload: &[u8], flags: u16) -> Result<Self, DecodeError> {
        let code = payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .ok_or(DecodeError::Truncated {
                what: "nlmsgerr",
                needed: 4,
                available: payload.len(),
            })?;
        let errno = code.checked_neg().unwrap_or(i32::MAX);
        let mut ext_msg = None;
        if flags & nl::NLM_F_ACK_TLVS != 0 {
            // The echoed request is the header alone when capped.
            let echoed = payload.get(4..).unwrap_or(&[]);
            let echo_len = if flags & nl::NLM_F_CAPPED != 0 {
                nl::NLMSG_HDRLEN
            } else {
                Header::parse(echoed)
                    .map(|h| usize::try_from(h.len).unwrap_or(usize::MAX))
                    .unwrap_or(nl::NLMSG_HDRLEN)
            };
            let tlvs = echoed.get(align(echo_len)..).unwrap_or(&[]);
            for attr in Attrs::new(tlvs).flatten() {
                if attr.kind == nl::NLMSGERR_ATTR_MSG {
                    ext_msg = attr.as_str().ok().map(str::to_owned);
                }
            }
        }
        Ok(Self { errno, ext_msg })
    }
}
