//! The tool itself: arguments, rendezvous, bridge and test pattern.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use xen_gnttab::Domid;
use xen_linux::{Evtchn, Gntalloc, Gntdev, Xenbus};
use xen_vchan::{
    ClientConfig, LinuxUnmapNotify, Options, ServerConfig, Side, Vchan, VchanError, connect,
    listen, vchan_path,
};
use xen_xenbus::{EventChannels, Xenstore};

const USAGE: &str = "usage: xen-vchan server|client [OPTIONS] <peer-domid> <xs-path|port> [-|SOCKET]
  server: grants the rings to <peer-domid> (the client); client: maps <peer-domid>'s (the server)
  <xs-path|port>: the xenstore directory, or a port number for /local/domain/<server>/data/vchan/<client>/<port>
  -|SOCKET: bridge stdin/stdout (default), or a Unix socket (server connects to it once a
            client is there; client listens on it and bridges the first connection);
            the end of the input stops sending, and the bridge ends when the peer closes
options:
  --left BYTES          server: minimum client->server ring (default 65536)
  --right BYTES         server: minimum server->client ring (default 65536)
  --timeout SECS        give up on a silent peer after SECS (0: never; default 60)
  --wait SECS           client: wait this long for the server's entries (default 10)
  --send-pattern BYTES  instead of a bridge: send BYTES of the test pattern
  --expect-pattern BYTES  instead of a bridge: receive and verify BYTES of the test pattern";

/// A bad command line.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// No or an unknown subcommand.
    #[error("the first argument must be `server` or `client`, not {0:?}")]
    Mode(Option<String>),
    /// An option that does not exist.
    #[error("unknown option {0}")]
    UnknownOption(String),
    /// An option without its value.
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    /// A value that is not a number in range.
    #[error("{what}: {value:?} is not a valid number")]
    BadNumber {
        /// The option or operand.
        what: &'static str,
        /// What was given.
        value: String,
    },
    /// An operand missing or too many.
    #[error("expected <peer-domid> <xs-path|port> [-|SOCKET], got {0} operands")]
    Operands(usize),
    /// A ring option given to a client.
    #[error("{0} is a server option (the server chooses the rings)")]
    ServerOnly(&'static str),
    /// Pattern mode and a socket at once.
    #[error("--send-pattern/--expect-pattern replace the bridge; drop the SOCKET operand")]
    PatternAndSocket,
}

/// Which end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Grants the rings.
    Server,
    /// Maps them.
    Client,
}

/// Where the xenstore directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// Given whole.
    Path(String),
    /// `vchan_path(server, client, port)`.
    Port(u32),
}

/// Where the bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// stdin/stdout.
    Stdio,
    /// A Unix socket.
    Socket(String),
    /// The test pattern: bytes to send, bytes to expect.
    Pattern {
        /// Sent.
        send: u64,
        /// Expected and verified.
        expect: u64,
    },
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Server or client.
    pub mode: Mode,
    /// The other domain.
    pub peer: u16,
    /// The rendezvous.
    pub place: Where,
    /// Ring minimums (server).
    pub left: usize,
    /// Ring minimums (server).
    pub right: usize,
    /// Options::timeout.
    pub timeout: Option<Duration>,
    /// Client wait for the server.
    pub wait: Duration,
    /// Bytes' destination.
    pub endpoint: Endpoint,
}

fn number<T: std::str::FromStr>(what: &'static str, value: &str) -> Result<T, ArgError> {
    value.parse().map_err(|_| ArgError::BadNumber {
        what,
        value: value.to_owned(),
    })
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Args, ArgError> {
    let mode = match args.first().map(String::as_str) {
        Some("server") => Mode::Server,
        Some("client") => Mode::Client,
        other => return Err(ArgError::Mode(other.map(str::to_owned))),
    };
    let mut a = Args {
        mode,
        peer: 0,
        place: Where::Port(0),
        left: 65536,
        right: 65536,
        timeout: Some(Duration::from_secs(60)),
        wait: Duration::from_secs(10),
        endpoint: Endpoint::Stdio,
    };
    let (mut send, mut expect) = (None::<u64>, None::<u64>);
    let mut operands = Vec::new();
    let mut it = args[1..].iter();
    while let Some(arg) = it.next() {
        let opt: &'static str = match arg.as_str() {
            "--left" => "--left",
            "--right" => "--right",
            "--timeout" => "--timeout",
            "--wait" => "--wait",
            "--send-pattern" => "--send-pattern",
            "--expect-pattern" => "--expect-pattern",
            s if s.starts_with("--") => return Err(ArgError::UnknownOption(s.to_owned())),
            _ => {
                operands.push(arg.clone());
                continue;
            }
        };
        let v = it.next().ok_or(ArgError::MissingValue(opt))?;
        match opt {
            "--left" | "--right" if mode == Mode::Client => return Err(ArgError::ServerOnly(opt)),
            "--left" => a.left = number(opt, v)?,
            "--right" => a.right = number(opt, v)?,
            "--timeout" => {
                let s: u64 = number(opt, v)?;
                a.timeout = (s > 0).then(|| Duration::from_secs(s));
            }
            "--wait" => a.wait = Duration::from_secs(number(opt, v)?),
            "--send-pattern" => send = Some(number(opt, v)?),
            _ => expect = Some(number(opt, v)?),
        }
    }
    if !(2..=3).contains(&operands.len()) {
        return Err(ArgError::Operands(operands.len()));
    }
    a.peer = number("<peer-domid>", &operands[0])?;
    a.place = if operands[1].starts_with('/') {
        Where::Path(operands[1].clone())
    } else {
        Where::Port(number("<xs-path|port>", &operands[1])?)
    };
    let socket = operands.get(2).filter(|s| s.as_str() != "-");
    a.endpoint = match (send.is_some() || expect.is_some(), socket) {
        (true, Some(_)) => return Err(ArgError::PatternAndSocket),
        (true, None) => Endpoint::Pattern {
            send: send.unwrap_or(0),
            expect: expect.unwrap_or(0),
        },
        (false, Some(s)) => Endpoint::Socket(s.clone()),
        (false, None) => Endpoint::Stdio,
    };
    Ok(a)
}

/// Runs the tool.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xen-vchan: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xen-vchan: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A failure after the arguments were accepted, with what was being done.
type Failed = String;

fn ctx<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> Failed {
    move |e| format!("{what}: {e}")
}

fn run(a: &Args) -> Result<(), Failed> {
    let xs = Xenbus::open().map_err(ctx("open xenbus"))?;
    let me = xs.own_domid().map_err(ctx("own domid"))?;
    let ev = Evtchn::open().map_err(ctx("open evtchn"))?;
    let peer = Domid(a.peer);
    let options = Options {
        timeout: a.timeout,
        ..Options::default()
    };
    // A socket the client bridges is accepted before the vchan, as vchan-socket-proxy does.
    let early = match (&a.endpoint, a.mode) {
        (Endpoint::Socket(p), Mode::Client) => {
            let _ = std::fs::remove_file(p);
            let l = UnixListener::bind(p).map_err(|e| format!("bind {p}: {e}"))?;
            let (s, _) = l.accept().map_err(|e| format!("accept on {p}: {e}"))?;
            Some(s)
        }
        _ => None,
    };
    match a.mode {
        Mode::Server => {
            let path = match &a.place {
                Where::Path(p) => p.clone(),
                Where::Port(n) => vchan_path(me, peer, *n),
            };
            let grants = Gntalloc::open(me).map_err(ctx("open gntalloc"))?;
            let config = ServerConfig::new(path, a.left, a.right)
                .map_err(ctx("ring sizes"))?
                .options(options)
                .unmap_notify(Arc::new(LinuxUnmapNotify::Server(grants.clone())));
            let listener = listen(&grants, ev, xs, peer, &config).map_err(ctx("listen"))?;
            let v = listener
                .accept(a.timeout.unwrap_or(Duration::from_secs(86400 * 365)))
                .map_err(ctx("accept"))?;
            serve(v, a, early)
        }
        Mode::Client => {
            let path = match &a.place {
                Where::Path(p) => p.clone(),
                Where::Port(n) => vchan_path(peer, me, *n),
            };
            let maps = Gntdev::open().map_err(ctx("open gntdev"))?;
            let config = ClientConfig::new(path)
                .wait(a.wait)
                .options(options)
                .unmap_notify(Arc::new(LinuxUnmapNotify::Client(maps.clone())));
            let v = connect(&maps, ev, xs, peer, &config).map_err(ctx("connect"))?;
            serve(v, a, early)
        }
    }
}

fn serve<S: Side, E: EventChannels, X: Xenstore>(
    v: Vchan<S, E, X>,
    a: &Args,
    early: Option<UnixStream>,
) -> Result<(), Failed> {
    match &a.endpoint {
        Endpoint::Pattern { send, expect } => pattern(v, *send, *expect),
        Endpoint::Stdio => bridge(v, std::io::stdin(), std::io::stdout()),
        Endpoint::Socket(p) => {
            let s = match early {
                Some(s) => s,
                None => UnixStream::connect(p).map_err(|e| format!("connect {p}: {e}"))?,
            };
            let r = s.try_clone().map_err(|e| format!("{p}: {e}"))?;
            bridge(v, r, s)
        }
    }
}

/// Byte `i` of the test pattern (the same as libxenvchan's `vchanbench`).
fn pat(i: u64) -> u8 {
    (i.wrapping_mul(7).wrapping_add(i >> 11).wrapping_add(13)) as u8
}

/// `a + b` in each of the eight bytes, without carries between bytes.
fn add8(a: u64, b: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    ((a & !HIGH) + (b & !HIGH)) ^ ((a ^ b) & HIGH)
}

/// Bytes `i..i + 8` of the pattern, little-endian, for `i` a multiple of 8 (the eight share
/// `i >> 11`, so byte `m` is `pat(i) + 7m`).
fn pat8(i: u64) -> u64 {
    const STEP: u64 = 0x312A_231C_150E_0700;
    add8(u64::from(pat(i)) * 0x0101_0101_0101_0101, STEP)
}

/// Within a 2 KiB block the next eight bytes are these eight plus 56 each.
const NEXT8: u64 = 0x3838_3838_3838_3838;

/// Fills `buf` with the pattern from stream offset `at`, eight bytes a step, each word
/// from the one before (the same code as `vchanpeer.c`'s `fill`: the recurrence keeps
/// compilers from vectorising either, so both tools spend the same per byte, also under
/// emulation, and a benchmark measures the channels).
fn fill(buf: &mut [u8], at: u64) {
    let mut k = 0;
    while k < buf.len() && (at + k as u64) % 8 != 0 {
        buf[k] = pat(at + k as u64);
        k += 1;
    }
    let mut w = pat8(at + k as u64);
    while k + 8 <= buf.len() {
        let i = at + k as u64;
        if i % 2048 == 0 {
            w = pat8(i);
        }
        buf[k..k + 8].copy_from_slice(&w.to_le_bytes());
        w = add8(w, NEXT8);
        k += 8;
    }
    while k < buf.len() {
        buf[k] = pat(at + k as u64);
        k += 1;
    }
}

/// The offset in `buf` of the first byte that differs from the pattern from stream offset
/// `at`; every byte is compared (eight a step, as `vchanpeer.c`'s `check`).
fn check(buf: &[u8], at: u64) -> Option<usize> {
    let mut k = 0;
    while k < buf.len() && (at + k as u64) % 8 != 0 {
        if buf[k] != pat(at + k as u64) {
            return Some(k);
        }
        k += 1;
    }
    let mut w = pat8(at + k as u64);
    while k + 8 <= buf.len() {
        let i = at + k as u64;
        if i % 2048 == 0 {
            w = pat8(i);
        }
        let mut got = [0u8; 8];
        got.copy_from_slice(&buf[k..k + 8]);
        if u64::from_le_bytes(got) != w {
            break;
        }
        w = add8(w, NEXT8);
        k += 8;
    }
    (k..buf.len()).find(|&j| buf[j] != pat(at + j as u64))
}

fn rate(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64().max(1e-9) / 1e6
}

/// Sends `send` and verifies `expect` bytes of the pattern at once.
///
/// The loop is the C peer's (`vchanpeer.c`) step for step, so that a benchmark compares the
/// channels and not the tools: 64 KiB chunks, non-blocking calls, a wait only when neither
/// direction moved, every received byte compared with the pattern and nothing else done per
/// byte, and the clock read only when the first byte arrives or while idle.
fn pattern<S: Side, E: EventChannels, X: Xenstore>(
    mut v: Vchan<S, E, X>,
    send: u64,
    expect: u64,
) -> Result<(), Failed> {
    const CHUNK: usize = 65536;
    let mut out = vec![0u8; CHUNK];
    let mut inb = vec![0u8; CHUNK];
    let (mut sent, mut got) = (0u64, 0u64);
    let mut out_len = 0usize;
    let mut out_at = 0usize;
    let start = Instant::now();
    let mut first_rx = None;
    let limit = v.options().timeout;
    let mut idle_since = None;
    let mut idle_turns = 0u32;
    while sent < send || got < expect {
        let mut progress = false;
        if sent < send {
            if out_at == out_len {
                out_len = CHUNK.min((send - sent) as usize);
                fill(&mut out[..out_len], sent);
                out_at = 0;
            }
            // More follows until the last byte: the reader is signalled once per half ring
            // (and at every wait), not once per write.
            match v.try_write_more(&out[out_at..out_len]) {
                Ok(n) => {
                    out_at += n;
                    sent += n as u64;
                    progress |= n > 0;
                    if sent == send {
                        v.flush()
                            .map_err(|e| format!("flush after {sent} bytes: {e}"))?;
                    }
                }
                Err(VchanError::WouldBlock) => {}
                Err(e) => return Err(format!("write after {sent} of {send} bytes: {e}")),
            }
        }
        if got < expect {
            let want = CHUNK.min((expect - got) as usize);
            match v.try_read(&mut inb[..want]) {
                Ok(0) => {
                    return Err(format!(
                        "the peer closed the channel after {got} of {expect} bytes"
                    ));
                }
                Ok(n) => {
                    first_rx.get_or_insert_with(Instant::now);
                    if let Some(k) = check(&inb[..n], got) {
                        return Err(format!("byte {} differs", got + k as u64));
                    }
                    got += n as u64;
                    progress |= n > 0;
                }
                Err(VchanError::WouldBlock) => {}
                Err(e) => return Err(format!("read after {got} of {expect} bytes: {e}")),
            }
        }
        if progress {
            idle_turns = 0;
            idle_since = None;
        } else {
            // A wait that found nothing to do is the normal turn of a stream; the clock is
            // read from the second idle turn in a row on, while a stall lasts.
            idle_turns += 1;
            match idle_since {
                None if idle_turns >= 2 => idle_since = Some(Instant::now()),
                None => {}
                Some(idle) => {
                    if let Some(t) = limit.filter(|t| idle.elapsed() > *t) {
                        return Err(format!(
                            "no progress for {t:?} ({sent} sent, {got} received)"
                        ));
                    }
                }
            }
            v.wait(Duration::from_millis(200))
                .map_err(|e| format!("wait ({sent} sent, {got} received): {e}"))?;
        }
    }
    let all = start.elapsed();
    let st = v.stats();
    let mib = (send.max(expect) as f64 / f64::from(1 << 20)).max(1.0);
    eprintln!(
        "xen-vchan: {} notifies sent, {} waits, {} events ({:.2} / {:.2} / {:.2} per MiB)",
        st.notifies,
        st.waits,
        st.events,
        st.notifies as f64 / mib,
        st.waits as f64 / mib,
        st.events as f64 / mib
    );
    if send > 0 {
        eprintln!("xen-vchan: sent {send} bytes in {:.3} s", all.as_secs_f64());
    }
    if expect > 0 {
        let t = first_rx.map_or(all, |f| f.elapsed());
        eprintln!(
            "xen-vchan: received {expect} bytes, all verified, {:.1} MB/s",
            rate(expect, t)
        );
    }
    // Let the peer read what we sent before our end closes.
    let drained = Instant::now();
    while v.buffer_space().map_err(ctx("drain"))? < v.tx_size() {
        if drained.elapsed() > Duration::from_secs(30) {
            return Err("the peer did not read the last bytes".into());
        }
        v.wait(Duration::from_millis(100)).map_err(ctx("drain"))?;
    }
    v.close();
    Ok(())
}

/// Bridges the channel to `input`/`output`. The end of `input` stops sending only (a half
/// close, as the vchan has none); the bridge ends when the peer closes the channel.
fn bridge<S: Side, E: EventChannels, X: Xenstore>(
    mut v: Vchan<S, E, X>,
    mut input: impl Read + Send + 'static,
    mut output: impl Write + Send + 'static,
) -> Result<(), Failed> {
    // Blocking stdin/stdout/socket calls run in threads; the channel stays in this one.
    let (in_tx, in_rx) = mpsc::sync_channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if in_tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (out_tx, out_rx) = mpsc::sync_channel::<Vec<u8>>(4);
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        for chunk in out_rx {
            output.write_all(&chunk)?;
            output.flush()?;
        }
        Ok(())
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut at = 0;
    let mut input_open = true;
    let mut buf = vec![0u8; 65536];
    let result = loop {
        let mut progress = false;
        if at == pending.len() && input_open {
            match in_rx.try_recv() {
                Ok(c) => {
                    pending = c;
                    at = 0;
                    progress = true;
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => input_open = false,
            }
        }
        if at < pending.len() {
            match v.try_write(&pending[at..]) {
                Ok(n) => {
                    at += n;
                    progress |= n > 0;
                }
                Err(VchanError::WouldBlock) => {}
                Err(e) => break Err(format!("vchan write: {e}")),
            }
        }
        match v.try_read(&mut buf) {
            // The peer closed and everything it sent was read: done.
            Ok(0) | Err(VchanError::PeerClosed) => break Ok(()),
            Ok(n) => {
                if out_tx.send(buf[..n].to_vec()).is_err() {
                    break Err("output closed".into());
                }
                progress = true;
            }
            Err(VchanError::WouldBlock) => {}
            Err(e) => break Err(format!("vchan read: {e}")),
        }
        if !progress {
            // Short waits: input may arrive while the channel is quiet.
            if let Err(e) = v.wait(Duration::from_millis(5)) {
                break Err(format!("vchan wait: {e}"));
            }
        }
    };
    drop(out_tx);
    let written = writer.join();
    v.close();
    result?;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("output: {e}")),
        Err(_) => Err("the output thread panicked".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn good_command_lines() {
        let a = parse(&s(&["server", "--left", "1048576", "3", "/local/x"])).unwrap();
        assert_eq!(a.mode, Mode::Server);
        assert_eq!((a.peer, a.left, a.right), (3, 1048576, 65536));
        assert_eq!(a.place, Where::Path("/local/x".into()));
        assert_eq!(a.endpoint, Endpoint::Stdio);
        let a = parse(&s(&["client", "--timeout", "0", "0", "7", "/tmp/s"])).unwrap();
        assert_eq!((a.place, a.timeout), (Where::Port(7), None));
        assert_eq!(a.endpoint, Endpoint::Socket("/tmp/s".into()));
        let a = parse(&s(&["client", "0", "7", "-", "--expect-pattern", "10"])).unwrap();
        assert_eq!(
            a.endpoint,
            Endpoint::Pattern {
                send: 0,
                expect: 10
            }
        );
    }

    #[test]
    fn bad_command_lines_are_typed_errors() {
        assert_eq!(parse(&[]), Err(ArgError::Mode(None)));
        assert_eq!(
            parse(&s(&["proxy"])),
            Err(ArgError::Mode(Some("proxy".into())))
        );
        assert_eq!(parse(&s(&["server", "0"])), Err(ArgError::Operands(1)));
        assert_eq!(
            parse(&s(&["server", "--left"])),
            Err(ArgError::MissingValue("--left"))
        );
        assert_eq!(
            parse(&s(&["client", "--left", "9", "0", "1"])),
            Err(ArgError::ServerOnly("--left"))
        );
        assert!(matches!(
            parse(&s(&["server", "x", "1"])),
            Err(ArgError::BadNumber { .. })
        ));
        assert!(matches!(
            parse(&s(&["server", "70000", "1"])),
            Err(ArgError::BadNumber { .. })
        ));
        assert_eq!(
            parse(&s(&["server", "--fast", "0", "1"])),
            Err(ArgError::UnknownOption("--fast".into()))
        );
        assert_eq!(
            parse(&s(&["server", "--send-pattern", "5", "0", "1", "/s"])),
            Err(ArgError::PatternAndSocket)
        );
    }

    #[test]
    fn fill_and_check_agree_with_the_bytewise_pattern() {
        for at in [0u64, 1, 5, 2040, 2047, 2048, (1 << 32) - 3] {
            for len in [0usize, 1, 7, 8, 9, 100, 4099] {
                let mut b = vec![0u8; len];
                fill(&mut b, at);
                for (k, x) in b.iter().enumerate() {
                    assert_eq!(*x, pat(at + k as u64), "at {at} byte {k}");
                }
                assert_eq!(check(&b, at), None);
                for bad in [0, len / 2, len.saturating_sub(1)] {
                    if bad < len {
                        let mut c = b.clone();
                        c[bad] ^= 0x40;
                        assert_eq!(check(&c, at), Some(bad), "at {at} len {len}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_pattern_matches_vchanbench() {
        assert_eq!(pat(0), 13);
        assert_eq!(pat(1), 20);
        assert_eq!(pat(2048), (2048u64 * 7 + 1 + 13) as u8);
    }
}
