//! A ClientHello peek for Envoy's `tls_inspector`: is this connection TLS,
//! and if so which server name and ALPN protocols does it ask for.
//!
//! The parser is pure and total: any byte string gives an answer, never a
//! panic, and it never asks for more than [`MAX_CLIENT_HELLO`] bytes.

/// The largest ClientHello (handshake message plus record headers) the
/// inspector waits for; larger hellos are treated as not TLS. Envoy's
/// default `max_client_hello_size` is 64 KiB.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// TLS record payloads are at most 2^14 bytes (plus expansion for
/// encrypted records, which a ClientHello never is).
const MAX_RECORD: usize = 16384 + 2048;

/// What the bytes read so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Consistent with a ClientHello so far; read more.
    Incomplete,
    /// Not a TLS ClientHello (or one too large or malformed to use).
    NotTls,
    /// A complete ClientHello.
    ClientHello(HelloInfo),
}

/// What the inspector takes from a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelloInfo {
    /// The `server_name` extension's host name, lower-cased.
    pub server_name: Option<String>,
    /// The ALPN protocols offered, in order.
    pub alpn: Vec<String>,
}

/// Looks at the start of a connection. Allocates only the reassembled
/// handshake message and the result.
pub fn peek(buf: &[u8]) -> Peek {
    let mut handshake: Vec<u8> = Vec::new();
    let mut pos = 0;
    loop {
        let Some(header) = buf.get(pos..pos + 5) else {
            // Reject early on the bytes we have, so garbage is refused
            // without waiting for five bytes.
            if buf.get(pos).is_some_and(|b| *b != RECORD_HANDSHAKE)
                || buf.get(pos + 1).is_some_and(|b| *b != 3)
            {
                return Peek::NotTls;
            }
            return Peek::Incomplete;
        };
        if header[0] != RECORD_HANDSHAKE || header[1] != 3 {
            return Peek::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Peek::NotTls;
        }
        let Some(fragment) = buf.get(pos + 5..pos + 5 + len) else {
            // Judge the partial record now, so a wrong message type or an
            // oversized hello is refused without waiting for the rest.
            let mut head = handshake.clone();
            head.extend(buf.iter().skip(pos + 5).take(4));
            if pos + 5 + len > MAX_CLIENT_HELLO || !plausible_head(&head) {
                return Peek::NotTls;
            }
            return Peek::Incomplete;
        };
        handshake.extend_from_slice(fragment);
        pos += 5 + len;
        if handshake[0] != HANDSHAKE_CLIENT_HELLO {
            return Peek::NotTls;
        }
        if handshake.len() < 4 {
            continue;
        }
        let body_len = (usize::from(handshake[1]) << 16)
            | (usize::from(handshake[2]) << 8)
            | usize::from(handshake[3]);
        if body_len + 4 > MAX_CLIENT_HELLO {
            return Peek::NotTls;
        }
        if handshake.len() >= 4 + body_len {
            return match parse_body(&handshake[4..4 + body_len]) {
                Some(info) => Peek::ClientHello(info),
                None => Peek::NotTls,
            };
        }
    }
}

/// False when the first bytes of a handshake message already rule out a
/// usable ClientHello.
fn plausible_head(head: &[u8]) -> bool {
    if head.first().is_some_and(|t| *t != HANDSHAKE_CLIENT_HELLO) {
        return false;
    }
    match head.get(1..4) {
        Some(l) => {
            let len = (usize::from(l[0]) << 16) | (usize::from(l[1]) << 8) | usize::from(l[2]);
            len + 4 <= MAX_CLIENT_HELLO
        }
        None => true,
    }
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<Reader<'a>> {
        let n = usize::from(self.u8()?);
        self.take(n).map(Reader)
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<Reader<'a>> {
        let n = usize::from(self.u16()?);
        self.take(n).map(Reader)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_body(body: &[u8]) -> Option<HelloInfo> {
    let mut r = Reader(body);
    let version = r.u16()?;
    // SSL 3.0 and later; the real version is in an extension for TLS 1.3.
    if version >> 8 != 3 {
        return None;
    }
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut info = HelloInfo::default();
    if r.is_empty() {
        // Extensions are optional in a ClientHello.
        return Some(info);
    }
    let mut exts = r.vec16()?;
    while !exts.is_empty() {
        let ty = exts.u16()?;
        let mut data = exts.vec16()?;
        match ty {
            EXT_SERVER_NAME => {
                let mut list = data.vec16()?;
                while !list.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && info.server_name.is_none() {
                        let name = std::str::from_utf8(name.0).ok()?;
                        info.server_name = Some(name.to_ascii_lowercase());
                    }
                }
            }
            EXT_ALPN => {
                let mut list = data.vec16()?;
                while !list.is_empty() {
                    let proto = list.vec8()?;
                    // Non-UTF-8 protocol ids cannot match a configured
                    // (string) application protocol; skip them.
                    if let Ok(p) = std::str::from_utf8(proto.0) {
                        info.alpn.push(p.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests;
