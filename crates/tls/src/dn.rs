//! A certificate's subject as Envoy prints it for `x-forwarded-client-cert`
//! (`Subject="..."`): BoringSSL's `X509_NAME_print_ex` with
//! `XN_FLAG_RFC2253` — RDNs last to first, `,` between them and `+` inside
//! one, short attribute names, RFC 2253 escapes, bytes outside printable
//! ASCII as `\XX`, values that are not strings (and attributes without a
//! short name) as `#` and the hex of their DER.

use std::fmt::Write;

/// DER tags of the string types a name attribute may have.
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const T61_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
const VISIBLE_STRING: u8 = 0x1a;
const UNIVERSAL_STRING: u8 = 0x1c;
const BMP_STRING: u8 = 0x1e;

/// Short names BoringSSL prints (`OBJ_nid2sn`), by dotted OID.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("2.5.4.3", "CN"),
    ("2.5.4.4", "SN"),
    ("2.5.4.5", "serialNumber"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "street"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.12", "title"),
    ("2.5.4.42", "GN"),
    ("2.5.4.43", "initials"),
    ("2.5.4.44", "generationQualifier"),
    ("2.5.4.46", "dnQualifier"),
    ("2.5.4.65", "pseudonym"),
    ("1.2.840.113549.1.9.1", "emailAddress"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// One DER element: its tag, its contents, and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
    whole: &'a [u8],
}

/// Splits the first element off `input`; `None` for malformed DER.
fn next_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag,
        value: &rest[..len],
        whole: &input[..header + len],
    };
    Some((tlv, &rest[len..]))
}

/// All elements of `input`, or `None` when any is malformed.
fn elements(mut input: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (tlv, rest) = next_tlv(input)?;
        out.push(tlv);
        input = rest;
    }
    Some(out)
}

fn dotted_oid(oid: &[u8], out: &mut String) -> Option<()> {
    let mut arcs = Vec::new();
    let mut acc: u64 = 0;
    for b in oid {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    let (&first, rest) = arcs.split_first()?;
    let (a, b) = match first {
        0..40 => (0, first),
        40..80 => (1, first - 40),
        _ => (2, first - 80),
    };
    let _ = write!(out, "{a}.{b}");
    for arc in rest {
        let _ = write!(out, ".{arc}");
    }
    Some(())
}

/// Appends the subject (`Name` contents, without the outer SEQUENCE, as
/// webpki gives it) in Envoy's form. Malformed DER stops the output where
/// it is (webpki has parsed the certificate already, so this is not
/// expected).
pub(crate) fn rfc2253(name: &[u8], out: &mut String) {
    let Some(rdns) = elements(name) else {
        return;
    };
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let Some(attributes) = elements(rdn.value) else {
            return;
        };
        for (j, attribute) in attributes.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let Some(parts) = elements(attribute.value) else {
                return;
            };
            let [oid, value] = parts.as_slice() else {
                return;
            };
            if attribute_value(oid.value, value, out).is_none() {
                return;
            }
        }
    }
}

/// `name=value` for one attribute.
fn attribute_value(oid: &[u8], value: &Tlv<'_>, out: &mut String) -> Option<()> {
    let mut dotted = String::new();
    dotted_oid(oid, &mut dotted)?;
    let short = SHORT_NAMES
        .iter()
        .find(|(o, _)| *o == dotted)
        .map(|(_, n)| *n);
    out.push_str(short.unwrap_or(&dotted));
    out.push('=');
    let text = match (short, value.tag) {
        // An attribute without a short name is dumped
        // (`XN_FLAG_DUMP_UNKNOWN_FIELDS`), as is a value of another type.
        (None, _) => None,
        (_, UTF8_STRING) => std::str::from_utf8(value.value).ok().map(str::to_owned),
        (_, PRINTABLE_STRING | IA5_STRING | VISIBLE_STRING | T61_STRING) => {
            // One byte per character (T61 as Latin-1, as BoringSSL reads it).
            Some(value.value.iter().map(|b| char::from(*b)).collect())
        }
        (_, BMP_STRING) => {
            let units: Vec<u16> = value
                .value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        (_, UNIVERSAL_STRING) => value
            .value
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    };
    match text {
        Some(t) => escape(&t, out),
        None => {
            out.push('#');
            for b in value.whole {
                let _ = write!(out, "{b:02X}");
            }
        }
    }
    Some(())
}

/// RFC 2253 escapes (`ASN1_STRFLGS_ESC_2253`), control characters
/// (`ESC_CTRL`) and every byte of a non-ASCII character's UTF-8
/// (`ESC_MSB` after `UTF8_CONVERT`) as `\XX`.
fn escape(text: &str, out: &mut String) {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == bytes.len();
        match b {
            b',' | b'+' | b'"' | b'\\' | b'<' | b'>' | b';' => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'#' if first => out.push_str("\\#"),
            b' ' if first || last => out.push_str("\\ "),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of one element.
    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if value.len() < 0x80 {
            out.push(u8::try_from(value.len()).expect("short"));
        } else {
            out.push(0x81);
            out.push(u8::try_from(value.len()).expect("long"));
        }
        out.extend_from_slice(value);
        out
    }

    /// One attribute: OID DER contents, value tag, value bytes.
    type Attribute<'a> = (&'a [u8], u8, &'a [u8]);

    /// A Name's contents from RDNs of attributes.
    fn name(rdns: &[&[Attribute<'_>]]) -> Vec<u8> {
        let mut out = Vec::new();
        for rdn in rdns {
            let mut set = Vec::new();
            for (oid, tag, value) in *rdn {
                let mut seq = tlv(0x06, oid);
                seq.extend(tlv(*tag, value));
                set.extend(tlv(0x30, &seq));
            }
            out.extend(tlv(0x31, &set));
        }
        out
    }

    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const O: &[u8] = &[0x55, 0x04, 0x0a];
    const C: &[u8] = &[0x55, 0x04, 0x06];
    const OU: &[u8] = &[0x55, 0x04, 0x0b];

    fn print(der: &[u8]) -> String {
        let mut s = String::new();
        rfc2253(der, &mut s);
        s
    }

    #[test]
    fn prints_like_boringssl_rfc2253() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), ""),
            // Last RDN first, short names.
            (
                name(&[
                    &[(C, PRINTABLE_STRING, b"US")],
                    &[(O, UTF8_STRING, b"Lyft")],
                    &[(CN, UTF8_STRING, b"Test Client")],
                ]),
                "CN=Test Client,O=Lyft,C=US",
            ),
            // Multi-valued RDN joined with `+`.
            (
                name(&[&[(OU, UTF8_STRING, b"a"), (CN, UTF8_STRING, b"b")]]),
                "OU=a+CN=b",
            ),
            // RFC 2253 specials, leading `#` and space, trailing space.
            (
                name(&[&[(CN, UTF8_STRING, b"a,b+c\"d\\e<f>g;h")]]),
                "CN=a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h",
            ),
            (name(&[&[(CN, UTF8_STRING, b"#x y ")]]), "CN=\\#x y\\ "),
            (name(&[&[(CN, UTF8_STRING, b" x")]]), "CN=\\ x"),
            // Non-ASCII as escaped UTF-8 bytes; BMPString converted first.
            (name(&[&[(CN, UTF8_STRING, "é".as_bytes())]]), "CN=\\C3\\A9"),
            (
                name(&[&[(CN, BMP_STRING, &[0x00, 0x41, 0x00, 0xe9])]]),
                "CN=A\\C3\\A9",
            ),
            // emailAddress by its short name.
            (
                name(&[&[(
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
                    IA5_STRING,
                    b"a@b.c",
                )]]),
                "emailAddress=a@b.c",
            ),
            // An attribute without a short name: dotted OID, DER dumped.
            (
                name(&[&[(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x01], UTF8_STRING, b"hi")]]),
                "1.3.6.1.4.1.1=#0C026869",
            ),
            // A known attribute with a value that is not a string.
            (name(&[&[(CN, 0x02, &[0x05])]]), "CN=#020105"),
        ];
        for (der, want) in cases {
            assert_eq!(print(&der), want);
        }
    }

    #[test]
    fn malformed_der_stops_without_panicking() {
        assert_eq!(print(&[0x31, 0x05, 0x30]), "");
        assert_eq!(print(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]), "");
    }
}
