//! Hostile HTTP/1.1 over raw sockets, each case on a fresh connection to the
//! proxy in front of the echo upstream.
//!
//! Every case must end promptly (an answer and/or a close, never a hang), and
//! no bytes the proxy refused or framed as a body may ever reach the upstream
//! as a request of their own: the request `GET /smuggled` is hidden after or
//! inside every hostile message, and the upstream must never see it.
//!
//! Some inputs are accepted by the HTTP/1 parser (httparse and hyper are
//! lenient in places Envoy is strict). For those the test pins down the safe
//! outcome: the proxy forwards exactly one request, re-serialised canonically,
//! so the upstream cannot read the bytes differently than the proxy did.

use std::time::Duration;

use strait_test_support::{
    client::Client,
    proxy::{TestProxy, http_config},
    upstream::{Upstream, http_echo},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, tcp::OwnedReadHalf},
};

/// How long one case may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(5);

/// What the proxy must do with a case.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused on its head: one response with one of these statuses, then
    /// the connection closes. Nothing reaches the upstream.
    Reject(&'static [u16]),
    /// A valid head with a broken body: the head may have been forwarded
    /// (the upstream may see that one request, never more), the body is
    /// cut, and the downstream connection closes with no response or an
    /// error status.
    Abort,
    /// Accepted by the parser: answered 200 by the upstream, which saw
    /// exactly one request, with the case's path, and as its body either
    /// nothing or (`smuggled_in_body`) exactly the smuggled request's bytes.
    /// `closes`: the proxy closes the connection after the response (hyper
    /// does when the framing was ambiguous).
    Forward {
        smuggled_in_body: bool,
        closes: bool,
    },
}

struct Case {
    name: &'static str,
    /// The request's path. Every path a case uses starts with it, so what
    /// reached the upstream is attributed to its case; its smuggled request
    /// is `GET /smuggled{path}`.
    path: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

/// A case from a template: `$P` is the case's path, `$S` its smuggled
/// request, `$L` and `$X` that request's length in decimal and hex.
fn case(name: &'static str, path: &'static str, template: &str, expect: Expect) -> Case {
    let smuggled = smuggled(path);
    let bytes = template
        .replace("$P", path)
        .replace("$L", &smuggled.len().to_string())
        .replace("$X", &format!("{:x}", smuggled.len()))
        .replace("$S", &smuggled)
        .into_bytes();
    Case {
        name,
        path,
        bytes,
        expect,
    }
}

/// The request an attacker hopes the upstream reads as a request of its own.
fn smuggled(path: &str) -> String {
    format!("GET /smuggled{path} HTTP/1.1\r\nHost: x\r\n\r\n")
}

fn cases() -> Vec<Case> {
    const BAD: &[u16] = &[400];
    const TE: &str = "POST $P HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let big = "a".repeat(61 * 1024);
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_uri = "a".repeat(70_000);
    vec![
        // Chunked framing errors: found after the head was forwarded.
        case(
            "chunk size not hex (zz)",
            "/chunk-zz",
            &format!("{TE}zz\r\nhello\r\n0\r\n\r\n$S"),
            Expect::Abort,
        ),
        case(
            "chunk size overflows u64",
            "/chunk-overflow",
            &format!("{TE}ffffffffffffffffff\r\nhello\r\n0\r\n\r\n$S"),
            Expect::Abort,
        ),
        case(
            "negative chunk size",
            "/chunk-negative",
            &format!("{TE}-5\r\nhello\r\n0\r\n\r\n$S"),
            Expect::Abort,
        ),
        case(
            "chunk size with plus sign",
            "/chunk-plus",
            &format!("{TE}+5\r\nhello\r\n0\r\n\r\n$S"),
            Expect::Abort,
        ),
        case(
            "no CRLF after chunk data",
            "/chunk-no-crlf",
            &format!("{TE}5\r\nhelloXX0\r\n\r\n$S"),
            Expect::Abort,
        ),
        // CL.TE: a Content-Length reader takes "0\r\n\r\n" and the smuggled
        // request as the body; a chunked reader ends at the 0 chunk.
        case(
            "Content-Length then Transfer-Encoding (CL.TE)",
            "/cl-te",
            &format!(
                "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n$S",
                5 + smuggled("/cl-te").len()
            ),
            Expect::Forward {
                smuggled_in_body: false,
                closes: true,
            },
        ),
        // TE.CL: the smuggled request is a chunk's data; a Content-Length
        // reader would stop after 4 bytes and read it as a request.
        case(
            "Transfer-Encoding then Content-Length (TE.CL)",
            "/te-cl",
            "POST $P HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n$X\r\n$S\r\n0\r\n\r\n",
            Expect::Forward {
                smuggled_in_body: true,
                closes: true,
            },
        ),
        case(
            "two differing Content-Length",
            "/cl-twice",
            "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc$S",
            Expect::Reject(BAD),
        ),
        case(
            "Content-Length: 1,2",
            "/cl-list",
            "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length: 1,2\r\n\r\nab$S",
            Expect::Reject(BAD),
        ),
        case(
            "non-numeric Content-Length",
            "/cl-alpha",
            "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nabc$S",
            Expect::Reject(BAD),
        ),
        case(
            "Content-Length with plus sign",
            "/cl-plus",
            "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc$S",
            Expect::Reject(BAD),
        ),
        case(
            "Content-Length overflows u64",
            "/cl-overflow",
            "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\nabc$S",
            Expect::Reject(BAD),
        ),
        case(
            "Transfer-Encoding: xchunked",
            "/te-x",
            "POST $P HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "Transfer-Encoding: chunked, identity",
            "/te-identity",
            "POST $P HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "Transfer-Encoding in HTTP/1.0",
            "/te-http10",
            "POST $P HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        // httparse takes a bare LF as a line end. The smuggled request sits
        // in the Content-Length body; the proxy re-frames with CRLF.
        case(
            "bare LF line endings",
            "/bare-lf",
            "POST $P HTTP/1.1\nHost: x\nContent-Length: $L\n\n$S",
            Expect::Forward {
                smuggled_in_body: true,
                closes: false,
            },
        ),
        case(
            "bare CR inside a header line",
            "/bare-cr",
            "GET $P HTTP/1.1\r\nHost: x\rTransfer-Encoding: chunked\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "headers over 60 KiB",
            "/big-headers",
            &format!("GET $P HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n$S"),
            Expect::Reject(&[431]),
        ),
        case(
            "more than 100 headers",
            "/many-headers",
            &format!("GET $P HTTP/1.1\r\nHost: x\r\n{many}\r\n$S"),
            Expect::Reject(&[431]),
        ),
        case(
            "invalid method token G@T",
            "/method",
            "G@T $P HTTP/1.1\r\nHost: x\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "NUL in a header value",
            "/nul",
            "GET $P HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "space before the colon",
            "/space-colon",
            "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc$S",
            Expect::Reject(BAD),
        ),
        case(
            "header line without a colon",
            "/no-colon",
            "GET $P HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "obs-fold continuation line",
            "/obs-fold",
            "GET $P HTTP/1.1\r\nHost: x\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "HTTP/9.9",
            "/version",
            "GET $P HTTP/9.9\r\nHost: x\r\n\r\n$S",
            Expect::Reject(&[400, 505]),
        ),
        case(
            "two spaces in the request line",
            "/two-spaces",
            "GET  $P HTTP/1.1\r\nHost: x\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "request line without a version",
            "/no-version",
            "GET $P\r\nHost: x\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "URI of 70,000 bytes",
            "/long-uri",
            &format!("GET $P/{long_uri} HTTP/1.1\r\nHost: x\r\n\r\n$S"),
            Expect::Reject(&[414, 431]),
        ),
        case(
            "HTTP/1.1 without Host",
            "/no-host",
            "GET $P HTTP/1.1\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "two Host headers",
            "/two-hosts",
            "GET $P HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "space inside the URI",
            "/uri-space",
            "GET $P/a b HTTP/1.1\r\nHost: x\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "DEL in the URI",
            "/uri-del",
            "GET $P/a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        case(
            "CR LF inside the URI",
            "/uri-crlf",
            "GET $P/a\r\nb HTTP/1.1\r\nHost: x\r\n\r\n$S",
            Expect::Reject(BAD),
        ),
        // httparse and http::Uri take bytes >= 0x80 in the target; they are
        // forwarded as they came.
        case(
            "non-ASCII bytes in the URI",
            "/uri-utf8-café",
            "POST $P HTTP/1.1\r\nHost: x\r\nContent-Length: $L\r\n\r\n$S",
            Expect::Forward {
                smuggled_in_body: true,
                closes: false,
            },
        ),
    ]
}

/// One response as read off the wire.
#[derive(Debug)]
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// What a connection did with a case.
#[derive(Debug)]
struct Outcome {
    /// Responses to the case's bytes.
    responses: Vec<Wire>,
    /// The proxy closed the connection (EOF or reset) after them.
    closed: bool,
    /// When the connection stayed open: the response to a last request
    /// (`GET {path}/after`, `Connection: close`) sent on it. HTTP/1.1
    /// answers in order, so anything the proxy read between the case and
    /// this request would have been answered before it.
    after: Option<Vec<u16>>,
    /// Bytes left over after the last complete response.
    trailing: usize,
}

/// Parses one complete response off the front of `buf`, returning it and
/// the bytes it used. Handles Content-Length and chunked bodies.
fn parse_response(buf: &[u8]) -> Option<(Wire, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut at = end;
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[at..line_end]).ok()?, 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                // No trailers from the proxy: the blank line follows.
                if buf.len() < at + 2 {
                    return None;
                }
                at += 2;
                break;
            }
            if buf.len() < at + size + 2 {
                return None;
            }
            body.extend_from_slice(&buf[at..at + size]);
            at += size + 2;
        }
    } else {
        let len: usize = get("content-length").map_or(Some(0), |v| v.parse().ok())?;
        if buf.len() < at + len {
            return None;
        }
        body.extend_from_slice(&buf[at..at + len]);
        at += len;
    }
    Some((
        Wire {
            status,
            headers,
            body,
        },
        at,
    ))
}

/// Reads responses until the proxy closes, or until a keep-alive success
/// response is complete. Returns them, whether the proxy closed, and the
/// unparsed remainder.
async fn read_responses(rd: &mut OwnedReadHalf) -> (Vec<Wire>, bool, Vec<u8>) {
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // An error is a reset: the proxy closed with input left unread.
        let n = rd.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return (responses, true, buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some((resp, used)) = parse_response(&buf) {
            buf.drain(..used);
            let keep_alive = resp.status < 400 && !resp.closes();
            responses.push(resp);
            if keep_alive {
                return (responses, false, buf);
            }
        }
    }
}

/// Sends a case's bytes on a fresh connection and reads what comes back.
/// Panics on a hang: neither an answer nor a close within [`DEADLINE`].
async fn exchange(proxy: &TestProxy, c: &Case) -> Outcome {
    let stream = TcpStream::connect(proxy.listener("listener"))
        .await
        .expect("connect to the proxy");
    let (mut rd, mut wr) = stream.into_split();
    let bytes = c.bytes.clone();
    // The proxy may refuse and close before reading everything; writing on
    // its own task keeps a blocked write from hiding the answer.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let exchange = async {
        let (responses, closed, rest) = read_responses(&mut rd).await;
        let mut trailing = rest.len();
        // Keep the write half open until now: a half-close must not reach
        // the proxy before it has answered.
        let mut wr = writer.await.expect("writer task");
        let mut after = None;
        if !closed {
            let last = format!(
                "GET {}/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                c.path
            );
            let _ = wr.write_all(last.as_bytes()).await;
            let mut more = rest;
            let mut statuses = Vec::new();
            loop {
                while let Some((resp, used)) = parse_response(&more) {
                    more.drain(..used);
                    statuses.push(resp.status);
                }
                let (resps, closed, rest) = read_responses(&mut rd).await;
                statuses.extend(resps.iter().map(|r| r.status));
                more.extend_from_slice(&rest);
                if closed {
                    break;
                }
            }
            trailing = more.len();
            after = Some(statuses);
        }
        Outcome {
            responses,
            closed,
            after,
            trailing,
        }
    };
    tokio::time::timeout(DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{}: no answer and no close within {DEADLINE:?}", c.name))
}

/// Paths the upstream saw that start with `prefix`.
fn seen(up: &Upstream, prefix: &str) -> Vec<String> {
    up.paths()
        .into_iter()
        .filter(|p| p.starts_with(prefix))
        .collect()
}

/// Checks one outcome against its expectation; returns what is wrong.
fn verdict(c: &Case, out: &Outcome, up: &Upstream) -> Vec<String> {
    let mut wrong = Vec::new();
    let statuses: Vec<u16> = out.responses.iter().map(|r| r.status).collect();
    let after = format!("{}/after", c.path);
    let reached: Vec<String> = seen(up, c.path)
        .into_iter()
        .filter(|p| *p != after)
        .collect();
    match c.expect {
        Expect::Reject(allowed) => {
            if statuses.len() != 1 || !allowed.contains(&statuses[0]) {
                wrong.push(format!("expected one of {allowed:?}, got {statuses:?}"));
            }
            if !out.closed {
                wrong.push("connection left open after refusing".into());
            }
            if !reached.is_empty() {
                wrong.push(format!("refused request reached the upstream: {reached:?}"));
            }
        }
        Expect::Abort => {
            // Envoy answers a broken request body with 400 (never blames the
            // upstream); the response may also be lost to the close.
            if statuses.len() > 1 || statuses.iter().any(|s| *s != 400) {
                wrong.push(format!("expected at most one 400, got {statuses:?}"));
            }
            if !out.closed {
                wrong.push("connection left open after a framing error".into());
            }
            if reached.len() > 1 {
                wrong.push(format!(
                    "more than one request reached the upstream: {reached:?}"
                ));
            }
        }
        Expect::Forward {
            smuggled_in_body,
            closes,
        } => {
            let body_len = if smuggled_in_body {
                smuggled(c.path).len()
            } else {
                0
            };
            if statuses == [200] {
                let echo: serde_json::Value =
                    serde_json::from_slice(&out.responses[0].body).unwrap_or_default();
                if echo["path"] != c.path || echo["body_len"] != body_len {
                    wrong.push(format!(
                        "expected {} with a {body_len}-byte body upstream, echo says {} / {}",
                        c.path, echo["path"], echo["body_len"]
                    ));
                }
            } else {
                wrong.push(format!("expected [200], got {statuses:?}"));
            }
            if reached != [c.path] {
                wrong.push(format!(
                    "expected exactly [{}] upstream, saw {reached:?}",
                    c.path
                ));
            }
            if closes && !out.closed {
                wrong.push("connection left open after an ambiguous framing".into());
            }
        }
    }
    if let Some(after) = &out.after
        && after != &[200]
    {
        wrong.push(format!(
            "a request after the case got {after:?}, expected exactly [200]"
        ));
    }
    let smuggled = seen(up, &format!("/smuggled{}", c.path));
    if !smuggled.is_empty() {
        wrong.push(format!("SMUGGLED: the upstream saw {smuggled:?}"));
    }
    if out.trailing > 0 {
        wrong.push(format!(
            "{} unparsed bytes after the responses",
            out.trailing
        ));
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http1_is_refused_and_never_smuggled() -> anyhow::Result<()> {
    let up = http_echo("echo");
    let proxy = TestProxy::start(&http_config(up.addr, "", ""), 1);
    let cases = cases();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    let mut table = Vec::new();
    for c in &cases {
        let out = exchange(&proxy, c).await;
        let statuses: Vec<u16> = out.responses.iter().map(|r| r.status).collect();
        table.push(format!(
            "{:<46} {:<7} closed={:<5} upstream={:?}",
            c.name,
            format!("{statuses:?}"),
            out.closed,
            seen(&up, c.path),
        ));
        failures.extend(
            verdict(c, &out, &up)
                .into_iter()
                .map(|w| format!("{}: {w}", c.name)),
        );
    }
    eprintln!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The proxy survived all of it, and nothing smuggled turned up late.
    let mut client = Client::http1(proxy.listener("listener")).await?;
    let r = client.get("/survived").await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(seen(&up, "/smuggled"), Vec::<String>::new());
    Ok(())
}
