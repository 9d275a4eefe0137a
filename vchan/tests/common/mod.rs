//! Shared helpers: two simulated domains, a connected pair, random streams and checksums.
#![allow(dead_code)]

use std::time::Duration;
use xen_sim::{Domain, Host, SimEvtchn, SimGrants, SimMapper, SimXenstore};
use xen_vchan::{
    ClientConfig, ClientVchan, Listener, Options, ServerConfig, ServerVchan, VchanError, connect,
    listen, vchan_path,
};

pub type Server = ServerVchan<SimGrants, SimEvtchn, SimXenstore>;
pub type Client = ClientVchan<SimMapper, SimEvtchn, SimXenstore>;
pub type Listen = Listener<SimGrants, SimEvtchn, SimXenstore>;

pub const T: Duration = Duration::from_secs(20);

pub struct World {
    pub host: Host,
    pub srv: Domain,
    pub cli: Domain,
    pub path: String,
}

impl World {
    pub fn new() -> World {
        let host = Host::new();
        let _dom0 = host.create_domain("dom0");
        let srv = host.create_domain("server");
        let cli = host.create_domain("client");
        let path = vchan_path(srv.domid(), cli.domid(), 7);
        World {
            host,
            srv,
            cli,
            path,
        }
    }

    pub fn listen_orders(&self, left: u16, right: u16) -> Listen {
        let config = ServerConfig::with_orders(self.path.clone(), left, right)
            .unwrap()
            .options(opts());
        listen(
            self.srv.grants(),
            self.srv.evtchn(),
            self.srv.xenstore(),
            self.cli.domid(),
            &config,
        )
        .unwrap()
    }

    pub fn connect(&self) -> Result<Client, VchanError> {
        let config = ClientConfig::new(self.path.clone()).options(opts());
        connect(
            self.cli.mapper(),
            self.cli.evtchn(),
            self.cli.xenstore(),
            self.srv.domid(),
            &config,
        )
    }

    pub fn pair(&self, left: u16, right: u16) -> (Server, Client) {
        let l = self.listen_orders(left, right);
        let c = self.connect().unwrap();
        let s = l.accept(T).unwrap();
        (s, c)
    }
}

pub fn opts() -> Options {
    Options {
        timeout: Some(T),
        ..Options::default()
    }
}

/// xorshift64*: sizes and data.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// An order-sensitive 64-bit checksum of a byte stream, independent of how it is chunked.
#[derive(Clone, Default)]
pub struct Sum {
    h: u64,
    word: u64,
    fill: u32,
    pub len: u64,
}

impl Sum {
    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w)
            .wrapping_mul(0x0000_0100_0000_01B3)
            .rotate_left(29);
    }
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while self.fill != 0 && !data.is_empty() {
            self.word |= u64::from(data[0]) << (8 * self.fill);
            self.fill = (self.fill + 1) % 8;
            if self.fill == 0 {
                let w = self.word;
                self.mix(w);
                self.word = 0;
            }
            data = &data[1..];
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().unwrap()));
        }
        for &b in chunks.remainder() {
            self.word |= u64::from(b) << (8 * self.fill);
            self.fill += 1;
        }
    }
    pub fn finish(&self) -> (u64, u64) {
        let mut s = self.clone();
        if s.fill != 0 {
            let w = s.word;
            s.mix(w ^ 0xff);
        }
        (s.h, s.len)
    }
}

/// One end's work in a two-way transfer: send `total` random bytes in random-size writes,
/// read `total` bytes in random-size reads, interleaved with non-blocking calls and waits.
/// Returns (checksum of what was sent, checksum of what was received).
pub fn pump<S, E, X>(
    v: &mut xen_vchan::Vchan<S, E, X>,
    total: u64,
    seed: u64,
    max_chunk: usize,
) -> ((u64, u64), (u64, u64))
where
    S: xen_vchan::Side,
    E: xen_xenbus::EventChannels,
    X: xen_xenbus::Xenstore,
{
    let mut sizes = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
    let mut data = Rng(seed);
    let (mut sent, mut got) = (Sum::default(), Sum::default());
    let mut pending: Vec<u8> = Vec::new();
    let mut at = 0usize;
    let mut rbuf = vec![0u8; max_chunk];
    let mut generated = 0u64;
    let pick = |r: &mut Rng| {
        if r.below(4) == 0 {
            1 + r.below(64)
        } else {
            1 + r.below(max_chunk)
        }
    };
    while sent.len < total || got.len < total {
        let mut progress = false;
        if sent.len < total {
            if at == pending.len() {
                let n = (pick(&mut sizes) as u64).min(total - generated) as usize;
                pending.resize(n, 0);
                data.fill(&mut pending);
                generated += n as u64;
                at = 0;
            }
            match v.try_write(&pending[at..]) {
                Ok(n) => {
                    sent.update(&pending[at..at + n]);
                    at += n;
                    progress = true;
                }
                Err(VchanError::WouldBlock) => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        if got.len < total {
            let want = pick(&mut sizes).min(rbuf.len());
            match v.try_read(&mut rbuf[..want]) {
                Ok(0) => panic!("end of stream after {} of {total} bytes", got.len),
                Ok(n) => {
                    got.update(&rbuf[..n]);
                    progress = true;
                }
                Err(VchanError::WouldBlock) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        if !progress {
            assert!(v.wait(T).unwrap(), "no event for {T:?}: lost wakeup");
        }
    }
    (sent.finish(), got.finish())
}

/// Both directions at once between a connected pair; asserts the checksums match.
pub fn two_way(s: &mut Server, c: &mut Client, total: u64, seed: u64) {
    let max = (s.rx_size().max(s.tx_size()) * 3 / 2).min(256 * 1024);
    let (s_io, c_io) = std::thread::scope(|sc| {
        let h = sc.spawn(|| pump(c, total, seed.wrapping_add(1), max));
        let s_io = pump(s, total, seed, max);
        (s_io, h.join().unwrap())
    });
    assert_eq!(s_io.0, c_io.1, "server → client stream corrupted");
    assert_eq!(c_io.0, s_io.1, "client → server stream corrupted");
    assert_eq!(s_io.0.1, total);
}
