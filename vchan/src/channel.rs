//! [`Vchan`]: a connected end, over a [`Side`]'s memory, an event channel and xenstore.

use crate::abi::{LIVE_CLOSED, LIVE_CONNECTED, NOTIFY_READ, NOTIFY_WRITE};
use crate::error::VchanError;
use crate::ring::{Broken, RingMem, Rings, Role, Snapshot};
use alloc::string::String;
use core::time::Duration;
use xen_xenbus::{Damper, EventChannels, Port, Tx, Xenstore};

/// The memory of one end, with how to give it back.
///
/// Implemented by [`ServerMem`](crate::ServerMem) (grants) and
/// [`ClientMem`](crate::ClientMem) (foreign mappings).
pub trait Side: RingMem {
    /// Which end this memory belongs to.
    const ROLE: Role;
    /// Ends the grants or unmaps the mappings. Called once, at close; the memory is not
    /// touched afterwards.
    fn teardown(&mut self) -> Teardown;
}

/// What giving the memory back did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Teardown {
    /// Grants ended at once (server).
    pub ended: usize,
    /// Grants the client still mapped: they wait in the grantor's reclaim queue and are
    /// ended by a later `Grantor::reclaim` once the client lets go (server).
    pub reclaim: usize,
    /// Mappings unmapped (client).
    pub unmapped: usize,
    /// Unmaps the platform refused (client).
    pub unmap_failed: usize,
}

/// What [`Vchan::close`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// Grants and mappings.
    pub teardown: Teardown,
    /// Whether the server's xenstore entries were removed (false for a client).
    pub xenstore_removed: bool,
}

/// Tunables of a channel's blocking calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How long a blocking call may wait without completing (counted from its first sleep,
    /// after the spin); `None` waits as long as the peer stays live. The default is 60 seconds, so that a peer that vanished without
    /// clearing its live byte gives an error, not a hang.
    pub timeout: Option<Duration>,
    /// How many times a blocking call polls the peer's indices before it sleeps on the
    /// event channel (the peer is often about to act; a sleep costs far more). The default
    /// is 2000, and 0 when this process can use only one CPU (the peer cannot act while we
    /// spin there).
    pub spin: u32,
    /// Damps event storms (XSA-391): events after which nothing changed in shared memory
    /// delay re-arming the port, up to a cap.
    pub damper: Damper,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Some(Duration::from_secs(60)),
            spin: default_spin(),
            damper: Damper::linux(),
        }
    }
}

/// Counts of a channel's costly operations since it connected (see [`Vchan::stats`]): under
/// emulation, and on hardware for small transfers, these decide throughput.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Event-channel notifications sent to the peer for its requests (one `notify` each).
    pub notifies: u64,
    /// Waits on the event channel (one or more sleeps each, until an event or the deadline).
    pub waits: u64,
    /// Events on our port taken by those waits (each followed by an unmask).
    pub events: u64,
}

/// How many more looks, a `pause` apart, the bulk calls take at the ring before the
/// general blocking path (which takes a snapshot, publishes, takes only requests it can
/// see, spins, and asks only then): the peer is
/// usually about to act, and where the two ends share a core (two hyperthreads, as the
/// vCPUs of a small VM often are), the general path's work before its first `pause` is
/// taken from the peer that would have acted.
const QUICK_LOOKS: u32 = 16;

/// The spin budget for [`Options::default`]: 2000 polls, or none where the domain has one
/// CPU only (with `std`: a dom0 with one vCPU). There the peer cannot act while we spin, so
/// every poll is wasted and only delays the sleep that lets it run.
///
/// The CPUs counted are the system's online CPUs, not the calling thread's affinity: a
/// thread pinned to one CPU still has a peer that runs on another (a benchmark pinning its
/// reader and writer to two CPUs got no spin, and every hand-over of a small ring slept).
fn default_spin() -> u32 {
    #[cfg(feature = "std")]
    if online_cpus() == Some(1) {
        return 0;
    }
    2000
}

/// How many CPUs the system has online: Linux's `/sys/devices/system/cpu/online` (a list
/// such as `0-3,5`), else `available_parallelism` (which counts only those the calling
/// thread may use). Read once per process: every channel's `Options::default()` asks.
#[cfg(feature = "std")]
fn online_cpus() -> Option<usize> {
    static ONLINE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *ONLINE.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|list| count_cpu_list(list.trim()))
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
    })
}

/// The number of CPUs in a Linux CPU list (`0`, `0-3`, `0-3,5,7-8`); `None` if malformed.
#[cfg(feature = "std")]
fn count_cpu_list(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let a = part.parse::<usize>().ok()?;
                (a, a)
            }
        };
        n = n.checked_add(hi.checked_sub(lo)?.checked_add(1)?)?;
    }
    (n > 0).then_some(n)
}

/// How long one event-channel wait lasts when there is no deadline.
const SLICE: Duration = Duration::from_secs(1);

/// How long a wait may last.
#[derive(Clone, Copy)]
enum Until {
    /// `timeout` from now; the clock is read only if the first sleep ends early.
    For(Duration),
    /// Up to the deadline (on the xenstore clock).
    Deadline(Duration),
    /// As long as it takes.
    Forever,
}

/// A connected vchan end: a byte stream (or packets) in each direction.
///
/// `S` is the memory ([`ServerMem`](crate::ServerMem) or [`ClientMem`](crate::ClientMem)),
/// `E` the event channels and `X` xenstore (the server removes its entries through it at
/// close; both ends use its clock for deadlines). Give the channel its own `E` handle: a
/// wait hands out whatever port of the handle fired, and ports of others are skipped.
///
/// Reads and writes come in three flavours: `try_*` never blocks (`WouldBlock` when it
/// cannot proceed), the plain ones block up to [`Options::timeout`], and `send`/`recv` move
/// whole packets (all or nothing, like `libxenvchan_send`/`recv`). A read returns `Ok(0)`
/// only at the end of the stream: the peer closed and everything it wrote was read.
///
/// A bulk writer with more to follow at once uses [`write_more`](Self::write_more) /
/// [`try_write_more`](Self::try_write_more) (`MSG_MORE`), a bulk reader
/// [`read_more`](Self::read_more) / [`try_read_more`](Self::try_read_more): the peer's
/// request for a signal is looked at once per half ring (and taken, behind a full barrier,
/// if the look sees it) and taken at a [`flush`](Self::flush) or before any wait of this
/// channel; the peer's index is looked at only when what the last look
/// found is used up; and `write_more` / `read_more` on room or bytes that look found store
/// our index for the peer once it runs more than the publish lag ahead (a quarter of the
/// smaller ring, at most [`PUBLISH_LAG`](crate::ring::PUBLISH_LAG) bytes), at a flush,
/// before any spin or wait, and at close.
///
/// Closing consumes the handle ([`close`](Self::close)); dropping it closes too.
pub struct Vchan<S: Side, E: EventChannels, X: Xenstore> {
    pub(crate) rings: Rings<S>,
    pub(crate) ev: E,
    pub(crate) port: Port,
    pub(crate) xs: X,
    pub(crate) xs_path: Option<String>,
    pub(crate) opts: Options,
    pub(crate) damper: Damper,
    pub(crate) seen: Snapshot,
    pub(crate) peer_closed: bool,
    pub(crate) disconnected: bool,
    pub(crate) closed: bool,
    /// Whether a call that finds too little asks the peer for a notification (always, except
    /// on a blocking call's first look, before it spins).
    ask: bool,
    /// Bytes that `*_more` writes made without taking the peer's notify request (or 1
    /// after a look at half a ring found no request; see `half_ring`): a
    /// [`flush`](Vchan::flush) (or any write that takes it) is owed before a wait.
    held_tx: u32,
    /// The same for bytes `*_more` reads consumed.
    held_rx: u32,
    /// A signal that failed after its call had already moved bytes: the call reported the
    /// bytes, and the next [`flush`](Vchan::flush) (or wait) reports this.
    deferred: Option<VchanError>,
    stats: Stats,
}

impl<S: Side, E: EventChannels, X: Xenstore> core::fmt::Debug for Vchan<S, E, X> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vchan")
            .field("role", &S::ROLE)
            .field("port", &self.port)
            .field("rx_size", &self.rx_size())
            .field("tx_size", &self.tx_size())
            .field("peer_closed", &self.peer_closed)
            .field("broken", &self.rings.broken())
            .finish()
    }
}

/// Whether the peer's live byte still says connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Live,
    Gone,
}

impl<S: Side, E: EventChannels, X: Xenstore> Vchan<S, E, X> {
    pub(crate) fn new(rings: Rings<S>, ev: E, port: Port, xs: X, opts: Options) -> Self {
        let seen = rings.snapshot();
        Vchan {
            rings,
            ev,
            port,
            xs,
            xs_path: None,
            damper: opts.damper.clone(),
            opts,
            seen,
            peer_closed: false,
            disconnected: false,
            closed: false,
            ask: true,
            held_tx: 0,
            held_rx: 0,
            deferred: None,
            stats: Stats::default(),
        }
    }

    /// Counts of notifications sent, waits and events taken since the channel connected.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        S::ROLE
    }

    /// Our event-channel port (for a platform's select loop; see [`wait`](Self::wait)).
    pub fn port(&self) -> Port {
        self.port
    }

    /// Size in bytes of the ring we read.
    pub fn rx_size(&self) -> usize {
        self.rings.rx_shape().size as usize
    }

    /// Size in bytes of the ring we write.
    pub fn tx_size(&self) -> usize {
        self.rings.tx_shape().size as usize
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Changes the timeout of blocking calls.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.opts.timeout = timeout;
    }

    /// Changes how long blocking calls poll before sleeping.
    pub fn set_spin(&mut self, spin: u32) {
        self.opts.spin = spin;
    }

    /// Why the channel broke, if it did.
    pub fn broken(&self) -> Option<Broken> {
        self.rings.broken()
    }

    /// True while the peer has not closed and the channel is not broken.
    pub fn is_open(&mut self) -> bool {
        self.rings.broken().is_none() && matches!(self.peer(), Ok(Peer::Live))
    }

    /// Marks the channel broken and tells the peer we are gone.
    fn fail(&mut self, why: Broken) -> VchanError {
        let why = self.rings.set_broken(why);
        if !self.disconnected {
            self.disconnected = true;
            self.rings.set_own_live(LIVE_CLOSED);
            let _ = self.ev.notify(self.port);
        }
        VchanError::Broken(why)
    }

    fn lift<T>(&mut self, r: Result<T, Broken>) -> Result<T, VchanError> {
        r.map_err(|b| self.fail(b))
    }

    fn peer(&mut self) -> Result<Peer, VchanError> {
        if let Some(b) = self.rings.broken() {
            return Err(VchanError::Broken(b));
        }
        if self.peer_closed {
            return Ok(Peer::Gone);
        }
        match self.rings.peer_live() {
            LIVE_CONNECTED => Ok(Peer::Live),
            LIVE_CLOSED => {
                self.peer_closed = true;
                Ok(Peer::Gone)
            }
            other => Err(self.fail(Broken::BogusLive(other))),
        }
    }

    fn signal(&mut self) -> Result<(), VchanError> {
        self.stats.notifies += 1;
        self.ev.notify(self.port).map_err(VchanError::from)
    }

    /// Bytes ready to read now; asks the peer to signal its next write (libxenvchan's
    /// `libxenvchan_data_ready`), so a [`wait`](Self::wait) after it cannot miss one.
    pub fn data_ready(&mut self) -> Result<usize, VchanError> {
        let r = self.rings.poll_rx(usize::MAX);
        self.lift(r)
    }

    /// Bytes that can be written now; asks the peer to signal its next read
    /// (`libxenvchan_buffer_space`).
    pub fn buffer_space(&mut self) -> Result<usize, VchanError> {
        let r = self.rings.poll_tx(usize::MAX);
        self.lift(r)
    }

    fn poll_rx(&mut self, want: usize) -> Result<usize, Broken> {
        if self.ask {
            self.rings.poll_rx(want)
        } else {
            self.rings.peek_rx()
        }
    }

    fn poll_tx(&mut self, want: usize) -> Result<usize, Broken> {
        if self.ask {
            self.rings.poll_tx(want)
        } else {
            self.rings.peek_tx()
        }
    }

    fn take(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        let (n, notify) = self.rings.take(buf);
        if n > 0 {
            // Its notify decision covers every byte consumed before it.
            self.held_rx = 0;
        }
        if notify {
            self.signal()?;
        }
        Ok(n)
    }

    fn put(&mut self, data: &[u8]) -> Result<usize, VchanError> {
        let (n, notify) = self.rings.put(data);
        if n > 0 {
            // Its notify decision covers every byte published before it.
            self.held_tx = 0;
        }
        if notify {
            self.signal()?;
        }
        Ok(n)
    }

    /// Reads what is ready, up to `buf.len()`, without blocking: `Ok(n > 0)`, `Ok(0)` at the
    /// end of the stream (or for an empty `buf`), `Err(WouldBlock)` when nothing is ready.
    pub fn try_read(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        self.try_read_as(buf, false)
    }

    /// [`try_read`](Self::try_read), or [`try_read_more`](Self::try_read_more) if `more`.
    fn try_read_as(&mut self, buf: &mut [u8], more: bool) -> Result<usize, VchanError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let r = self.poll_rx(1);
        if self.lift(r)? > 0 {
            return self.take_as(buf, more);
        }
        match self.peer()? {
            Peer::Live => self.would_block(),
            // The peer may have written, then closed, after our look: look once more.
            Peer::Gone => {
                let r = self.poll_rx(1);
                self.lift(r)?;
                self.take_as(buf, more)
            }
        }
    }

    /// `Err(WouldBlock)` for a `try_*` call, after a [`flush`](Self::flush): the caller is
    /// about to wait, maybe on something else, and earlier `*_more` calls may hold bytes or
    /// requests back (a flush with nothing held does nothing). Not on a blocking call's
    /// first look (`ask` clear): it spins first, and publishes and flushes before it sleeps.
    fn would_block<T>(&mut self) -> Result<T, VchanError> {
        if self.ask {
            self.flush()?;
        }
        Err(VchanError::WouldBlock)
    }

    /// [`take`](Self::take), or without taking the peer's request (counted as held) if
    /// `more`.
    fn take_as(&mut self, buf: &mut [u8], more: bool) -> Result<usize, VchanError> {
        if !more {
            return self.take(buf);
        }
        let n = self.rings.take_more(buf);
        self.hold(NOTIFY_READ, n);
        Ok(n)
    }

    /// Writes as much of `data` as fits, without blocking: `Ok(n > 0)` (or `Ok(0)` for empty
    /// `data`), `Err(WouldBlock)` when the ring is full, `Err(PeerClosed)` after the peer
    /// closed.
    pub fn try_write(&mut self, data: &[u8]) -> Result<usize, VchanError> {
        self.try_write_as(data, false)
    }

    /// [`try_write`](Self::try_write), or [`try_write_more`](Self::try_write_more) if `more`.
    fn try_write_as(&mut self, data: &[u8], more: bool) -> Result<usize, VchanError> {
        if self.peer()? == Peer::Gone {
            return Err(VchanError::PeerClosed);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let r = self.poll_tx(1);
        if self.lift(r)? == 0 {
            return self.would_block();
        }
        if !more {
            return self.put(data);
        }
        let n = self.rings.put_more(data);
        self.hold(NOTIFY_WRITE, n);
        Ok(n)
    }

    /// [`try_write`](Self::try_write) for a writer with more data to follow at once, as
    /// `MSG_MORE` says to a socket: the bytes are published at once (a reader that looks sees
    /// them), but the peer's request for a signal is looked at only once half the ring has
    /// been written this way, and taken then if the look sees it, else at the next
    /// [`flush`](Self::flush), plain write, wait or close.
    /// A bulk writer saves a barrier per call, and a reader that sleeps is woken once per
    /// half ring instead of once per write (on one CPU, every wake-up of the reader preempts
    /// the writer).
    ///
    /// `WouldBlock` (the ring is full) flushes first. Every blocking call of this channel
    /// flushes before it sleeps; a caller that waits on something else (its own select loop
    /// on [`port`](Self::port)) calls [`flush`](Self::flush) first, or the peer may sleep on
    /// bytes it was never told about.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use xen_sim::Host;
    /// # use xen_vchan::{ClientConfig, ServerConfig, connect, listen, vchan_path};
    /// # let host = Host::new();
    /// # let _dom0 = host.create_domain("dom0");
    /// # let srv = host.create_domain("server");
    /// # let cli = host.create_domain("client");
    /// # let path = vchan_path(srv.domid(), cli.domid(), 1);
    /// # let config = ServerConfig::new(path.clone(), 4096, 4096)?;
    /// # let listener = listen(srv.grants(), srv.evtchn(), srv.xenstore(), cli.domid(), &config)?;
    /// # let config = ClientConfig::new(path).wait(Duration::from_secs(5));
    /// # let mut client = connect(cli.mapper(), cli.evtchn(), cli.xenstore(), srv.domid(), &config)?;
    /// # let mut server = listener.accept(Duration::from_secs(5))?;
    /// for record in [&b"one "[..], b"two ", b"three"] {
    ///     let mut rest = record;
    ///     while !rest.is_empty() {
    ///         let n = client.write_more(rest)?;
    ///         rest = &rest[n..];
    ///     }
    /// }
    /// client.flush()?; // the last record: tell a sleeping reader
    /// let mut got = [0u8; 13];
    /// server.read_exact(&mut got)?;
    /// assert_eq!(&got, b"one two three");
    /// # Ok::<(), xen_vchan::VchanError>(())
    /// ```
    pub fn try_write_more(&mut self, data: &[u8]) -> Result<usize, VchanError> {
        self.try_write_as(data, true)
    }

    /// The bytes held back in the direction of notify bit `bit` (`NOTIFY_WRITE`: written by
    /// `*_more` calls; `NOTIFY_READ`: read by them) and the size of that ring.
    fn held(&mut self, bit: u8) -> (&mut u32, u32) {
        if bit == NOTIFY_WRITE {
            (&mut self.held_tx, self.rings.tx_shape().size)
        } else {
            (&mut self.held_rx, self.rings.rx_shape().size)
        }
    }

    /// Counts `n` bytes moved without taking the peer's request for `bit`; looks at the
    /// request once half the ring is held ([`half_ring`](Self::half_ring)).
    ///
    /// It cannot fail: the caller has already moved the bytes and must report them, so a
    /// signal that fails here is deferred to the next flush or wait (see `deferred`).
    ///
    /// Inline in the bulk fast paths, where `bit` is a constant and this is an add and a
    /// compare.
    #[inline(always)]
    fn hold(&mut self, bit: u8, n: usize) {
        let (held, size) = self.held(bit);
        // n <= the ring size, a u32.
        *held = held.saturating_add(n as u32);
        if *held >= size / 2 {
            self.half_ring(bit);
        }
    }

    /// Half a ring held back in the direction of `bit`: if the peer's request is visible to
    /// a plain look, takes it as a [`flush`](Self::flush) does (index store, full barrier,
    /// request, signal), so that a peer asleep on these bytes or this room is woken while
    /// half the ring is still left. If not, the peer is most likely awake and will see our
    /// index; a request that is set but not yet visible here is taken at the next half ring
    /// or, with the barrier, by the flush before this end waits (or the caller's own flush
    /// when it stops; a close signals the peer anyway): the count drops to 1, not 0, so
    /// that flush still has something owed to take.
    ///
    /// The full barrier on every half ring cost 15-20% with a 2 KiB ring and 64-byte writes
    /// (it waits for the index store to reach the header's cache line, which the peer
    /// keeps taking).
    #[cold]
    #[inline(never)]
    fn half_ring(&mut self, bit: u8) {
        if !self.rings.asked(bit) {
            *self.held(bit).0 = 1;
            return;
        }
        if let Err(e) = self.flush_one(bit) {
            // The bytes were moved; report the failed signal at the next flush or wait.
            self.deferred.get_or_insert(e);
        }
    }

    /// Before a spin: takes the peer's requests for the bytes we hold back, where its
    /// request is visible to a plain look (no barrier). A peer asleep on our bytes set its
    /// request before it slept, long before this look, so it is woken at once; a request
    /// this look misses is taken by the full [`flush`](Self::flush) before we sleep. The
    /// barrier a flush costs (a full one, which waits for our index store to reach the
    /// header's cache line) is paid only when the peer asked: a reader that catches up
    /// with its writer looks at an empty ring often, and a barrier on each of those looks
    /// halved its throughput with small writes.
    fn flush_asked(&mut self) -> Result<(), VchanError> {
        for bit in [NOTIFY_WRITE, NOTIFY_READ] {
            if *self.held(bit).0 > 0 && self.rings.asked(bit) {
                self.flush_one(bit)?;
            }
        }
        Ok(())
    }

    /// Takes the peer's request for `bit` if bytes are held back in that direction.
    #[inline(always)]
    fn flush_one(&mut self, bit: u8) -> Result<(), VchanError> {
        if core::mem::take(self.held(bit).0) > 0 && self.rings.send_notify(bit) {
            self.signal()?;
        }
        Ok(())
    }

    /// [`try_read`](Self::try_read) for a reader that will read again at once: the bytes
    /// are consumed at once (a writer that looks sees the room), but the peer's request for
    /// a signal is looked at only once half the ring has been read this way (as
    /// [`try_write_more`](Self::try_write_more) does), else taken at the next
    /// [`flush`](Self::flush), plain read, wait or close: the mirror of
    /// [`try_write_more`](Self::try_write_more), with the same duty to flush before waiting
    /// on anything but this channel.
    pub fn try_read_more(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        self.try_read_as(buf, true)
    }

    /// [`read`](Self::read) for a reader that will read again at once (see
    /// [`try_read_more`](Self::try_read_more)): blocks until a byte is ready; `Ok(0)` only at
    /// the end of the stream.
    ///
    /// While the bytes the last look found ready cover `buf`, it copies them without looking
    /// at the shared header, and stores its consumer index there only once it runs more than
    /// the publish lag ahead of what the writer sees (see [`Vchan`]): the writer learns of
    /// the room in steps of the lag, at the half-ring signal, a [`flush`](Self::flush), or
    /// before this end spins, waits or closes.
    #[inline]
    pub fn read_more(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        // Bytes known ready from the last look cover `buf`: copy, publish within the lag,
        // count as held.
        if let Some(n) = self.rings.take_known(buf) {
            self.hold(NOTIFY_READ, n);
            return Ok(n);
        }
        self.read_more_slow(buf)
    }

    /// [`read_more`](Self::read_more) when what the last look found does not cover `buf`.
    #[inline(never)]
    fn read_more_slow(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        let quick = self.quick_looks(NOTIFY_READ, |v| {
            let r = v.rings.read_now_more(buf);
            v.lift(r)
        })?;
        match quick {
            Some(n) => Ok(n),
            None => self.blocking(|v| v.try_read_more(buf)),
        }
    }

    /// The bulk calls' slow path before the general blocking one: `look` (a pass over the
    /// header that moves what it can) up to [`QUICK_LOOKS`] more times, a `pause` apart,
    /// publishing our indices after the first miss (the peer may be waiting for them).
    /// What a look moved is counted as held in the direction of `bit`.
    fn quick_looks(
        &mut self,
        bit: u8,
        mut look: impl FnMut(&mut Self) -> Result<Option<usize>, VchanError>,
    ) -> Result<Option<usize>, VchanError> {
        for i in 0..=QUICK_LOOKS {
            if let Some(n) = look(self)? {
                self.hold(bit, n);
                return Ok(Some(n));
            }
            if i == QUICK_LOOKS || self.opts.spin == 0 {
                break;
            }
            if i == 0 {
                self.rings.publish();
            }
            core::hint::spin_loop();
        }
        Ok(None)
    }

    /// Publishes our indices and signals the peer for the bytes
    /// [`try_write_more`](Self::try_write_more) / [`write_more`](Self::write_more) wrote and
    /// [`try_read_more`](Self::try_read_more) / [`read_more`](Self::read_more) consumed, if it
    /// asked to be told (the index store, a full barrier, then the notify request, as a plain
    /// write or read does). Nothing to do when no such bytes are held back.
    ///
    /// A signal that failed inside an earlier `*_more` call, after that call had moved its
    /// bytes (and reported them), is reported here.
    #[inline]
    pub fn flush(&mut self) -> Result<(), VchanError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        self.flush_one(NOTIFY_WRITE)?;
        self.flush_one(NOTIFY_READ)
    }

    /// Sends `packet` whole or not at all, without blocking (`libxenvchan_send` in
    /// non-blocking mode).
    pub fn try_send(&mut self, packet: &[u8]) -> Result<(), VchanError> {
        if packet.len() > self.tx_size() {
            return Err(VchanError::TooLarge {
                len: packet.len(),
                ring: self.tx_size(),
            });
        }
        if self.peer()? == Peer::Gone {
            return Err(VchanError::PeerClosed);
        }
        let r = self.poll_tx(packet.len());
        if self.lift(r)? < packet.len() {
            return self.would_block();
        }
        self.put(packet).map(drop)
    }

    /// Receives exactly `buf.len()` bytes or nothing, without blocking
    /// (`libxenvchan_recv`). `Err(PeerClosed)` when the peer closed with less than that
    /// left.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<(), VchanError> {
        if buf.len() > self.rx_size() {
            return Err(VchanError::TooLarge {
                len: buf.len(),
                ring: self.rx_size(),
            });
        }
        let r = self.poll_rx(buf.len());
        if self.lift(r)? >= buf.len() {
            return self.take(buf).map(drop);
        }
        match self.peer()? {
            Peer::Live => self.would_block(),
            Peer::Gone => {
                let r = self.poll_rx(buf.len());
                if self.lift(r)? >= buf.len() {
                    self.take(buf).map(drop)
                } else {
                    Err(VchanError::PeerClosed)
                }
            }
        }
    }

    fn deadline(&self) -> Option<Duration> {
        self.opts.timeout.map(|t| self.xs.now().saturating_add(t))
    }

    /// Runs a non-blocking `op` until it stops saying `WouldBlock`: a first look without
    /// asking for a notification, then polling the peer's indices a while (it is often about
    /// to act, and a sleep costs far more), then a look that asks for a notification, and
    /// only then a sleep on the event channel, up to the deadline.
    ///
    /// The deadline is taken when the call first has to sleep, after its spin: a call that
    /// proceeds at once or after a short spin (the common case for small writes and reads)
    /// does not read the clock at all. The spin is bounded ([`Options::spin`] polls), so
    /// this moves the start of the timeout by microseconds.
    #[inline]
    fn blocking<T>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<T, VchanError>,
    ) -> Result<T, VchanError> {
        let seen = self.rings.snapshot();
        self.ask = false;
        let first = op(self);
        self.ask = true;
        match first {
            Err(VchanError::WouldBlock) => self.blocking_slow(seen, op),
            other => other,
        }
    }

    /// [`blocking`](Self::blocking) after its first look found nothing to do; `seen` is what
    /// the peer had published just before that look.
    #[inline(never)]
    fn blocking_slow<T>(
        &mut self,
        mut seen: Snapshot,
        mut op: impl FnMut(&mut Self) -> Result<T, VchanError>,
    ) -> Result<T, VchanError> {
        // The peer may be waiting for bytes or room we have not published, or asleep on
        // bytes we hold back: publish, and tell it before spinning on it if it visibly
        // asked (see `flush_asked`).
        self.rings.publish();
        self.flush_asked()?;
        let mut deadline = None;
        loop {
            if !self.spin(seen) {
                match op(self) {
                    Err(VchanError::WouldBlock) => {}
                    other => return other,
                }
                let deadline = *deadline.get_or_insert_with(|| self.deadline());
                if !self.wait_event(deadline)? {
                    return Err(VchanError::TimedOut);
                }
            }
            seen = self.rings.snapshot();
            self.ask = false;
            let again = op(self);
            self.ask = true;
            match again {
                Err(VchanError::WouldBlock) => {}
                other => return other,
            }
        }
    }

    /// Polls the peer's indices and live byte up to [`Options::spin`] times (yielding the
    /// CPU now and then where there is an OS to yield to); true once they differ from
    /// `start`.
    ///
    /// `start` must be taken *before* the look that found nothing to do: the peer may act
    /// between that look and the spin, and a baseline taken after it would miss that change
    /// and spin to the end (with both ends waiting for each other, the whole spin budget on
    /// every wait of a small ring).
    fn spin(&mut self, start: Snapshot) -> bool {
        for i in 0..self.opts.spin {
            if self.rings.snapshot() != start {
                return true;
            }
            core::hint::spin_loop();
            #[cfg(feature = "std")]
            if i % 64 == 63 {
                std::thread::yield_now();
            }
            #[cfg(not(feature = "std"))]
            let _ = i;
        }
        false
    }

    /// Reads at least one byte (up to `buf.len()`), blocking until some is ready: `Ok(0)`
    /// only at the end of the stream.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, VchanError> {
        // Bytes ready: one pass over the header, as `try_read` would go when it finds some.
        let r = self.rings.read_now(buf);
        if let Some((n, notify)) = self.lift(r)? {
            self.held_rx = 0;
            if notify {
                self.signal()?;
            }
            return Ok(n);
        }
        self.blocking(|v| v.try_read(buf))
    }

    /// Writes at least one byte of `data`, blocking until there is room.
    #[inline]
    pub fn write(&mut self, data: &[u8]) -> Result<usize, VchanError> {
        // Peer live and room in the ring: one pass over the header, as `try_write` would go.
        if !self.peer_closed {
            let r = self.rings.write_now(data);
            if let Some((n, notify)) = self.lift(r)? {
                self.held_tx = 0;
                if notify {
                    self.signal()?;
                }
                return Ok(n);
            }
        }
        self.blocking(|v| v.try_write(data))
    }

    /// [`write`](Self::write) with more data to follow: blocks until there is room, then
    /// writes as [`try_write_more`](Self::try_write_more) does (the signal is held back until
    /// half the ring, a [`flush`](Self::flush), a plain write or a wait).
    ///
    /// While the room the last look found holds `data`, it copies without looking at the
    /// shared header, and stores its producer index there only once it runs more than the
    /// publish lag ahead of what the reader sees (see [`Vchan`]): a reader that looks sees
    /// the bytes in steps of the lag, and all of them after a [`flush`](Self::flush) or when
    /// this end spins, waits or closes. With small writes this halves the moves of the
    /// header's cache line, which holds both ends' indices. A caller that wants every write
    /// seen at once calls [`try_write_more`](Self::try_write_more), which always looks and
    /// publishes, or `flush`.
    #[inline]
    pub fn write_more(&mut self, data: &[u8]) -> Result<usize, VchanError> {
        // Room known from the last look holds `data`: copy, publish within the lag, count
        // as held.
        if !self.peer_closed {
            if let Some(n) = self.rings.put_known(data) {
                self.hold(NOTIFY_WRITE, n);
                return Ok(n);
            }
        }
        self.write_more_slow(data)
    }

    /// [`write_more`](Self::write_more) when the room known from the last look does not
    /// hold `data`.
    #[inline(never)]
    fn write_more_slow(&mut self, data: &[u8]) -> Result<usize, VchanError> {
        // Peer live and room in the ring: one pass over the header, as `try_write_more`
        // would go. (Only `peer` sets `peer_closed`, which no look calls.)
        if !self.peer_closed {
            let quick = self.quick_looks(NOTIFY_WRITE, |v| {
                let r = v.rings.write_now_more(data);
                v.lift(r)
            })?;
            if let Some(n) = quick {
                return Ok(n);
            }
        }
        self.blocking(|v| v.try_write_more(data))
    }

    /// Writes all of `data`, blocking as needed (`libxenvchan_write` in blocking mode).
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), VchanError> {
        while !data.is_empty() {
            let n = self.write(data)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Fills `buf` completely, blocking as needed; `Err(PeerClosed)` if the stream ends
    /// first.
    pub fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), VchanError> {
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => return Err(VchanError::PeerClosed),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// Sends `packet` whole, blocking until the ring has room for all of it.
    pub fn send(&mut self, packet: &[u8]) -> Result<(), VchanError> {
        self.blocking(|v| v.try_send(packet))
    }

    /// Receives exactly `buf.len()` bytes as one packet, blocking until they are all ready.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<(), VchanError> {
        self.blocking(|v| v.try_recv(buf))
    }

    /// Waits at most `timeout` for an event on the channel and re-arms the port. True if the
    /// peer signalled. Use after a `try_*` call returned `WouldBlock` (it asked the peer to
    /// signal), or after [`data_ready`](Self::data_ready) / [`buffer_space`](Self::buffer_space).
    ///
    /// The common case reads no clock: one sleep of `timeout` that ends with our port or
    /// with the time out. If another port of a shared handle wakes it, the rest of the wait
    /// runs against a deadline taken then, so that case can last up to twice `timeout`
    /// (give the channel its own handle).
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, VchanError> {
        self.wait_until(Until::For(timeout))
    }

    /// Sleeps until our port fires (true) or the deadline passes (false). After an event in
    /// which nothing changed in shared memory, re-arming the port is delayed as the damper
    /// says, so a storm costs O(log n) wake-ups, not n.
    pub(crate) fn wait_event(&mut self, deadline: Option<Duration>) -> Result<bool, VchanError> {
        self.wait_until(deadline.map_or(Until::Forever, Until::Deadline))
    }

    fn wait_until(&mut self, mut until: Until) -> Result<bool, VchanError> {
        self.flush()?;
        self.stats.waits += 1;
        loop {
            let left = match until {
                Until::For(t) => t,
                Until::Forever => SLICE,
                Until::Deadline(d) => {
                    let now = self.xs.now();
                    if now >= d {
                        return Ok(false);
                    }
                    d - now
                }
            };
            match self.ev.wait(left)? {
                Some(p) if p == self.port => {
                    self.stats.events += 1;
                    let now = self.rings.snapshot();
                    let work = now != self.seen;
                    self.seen = now;
                    let delay = self.damper.record(work);
                    if !delay.is_zero() {
                        let cap = match until {
                            Until::Deadline(d) => Some(d),
                            _ => None,
                        };
                        self.sleep_masked(delay, cap)?;
                    }
                    self.ev.unmask(self.port)?;
                    return Ok(true);
                }
                // The whole of a relative wait passed.
                None if matches!(until, Until::For(_)) => return Ok(false),
                // Another port of a shared handle, or the time slice ran out.
                _ => {
                    if let Until::For(t) = until {
                        until = Until::Deadline(self.xs.now().saturating_add(t));
                    }
                }
            }
        }
    }

    /// Sleeps `delay` (capped by the deadline) while our port stays masked: its events
    /// latch as pending and fire on the unmask that follows.
    fn sleep_masked(
        &mut self,
        delay: Duration,
        deadline: Option<Duration>,
    ) -> Result<(), VchanError> {
        let mut until = self.xs.now().saturating_add(delay);
        if let Some(d) = deadline {
            until = until.min(d);
        }
        loop {
            let now = self.xs.now();
            if now >= until {
                return Ok(());
            }
            let _ = self.ev.wait(until - now)?;
        }
    }

    /// Closes our end: clears our live byte and signals the peer, unbinds the port, and gives
    /// the memory back (the server also removes its xenstore entries; grants the client
    /// still maps go to the reclaim queue).
    pub fn close(mut self) -> CloseReport {
        self.shutdown()
    }

    pub(crate) fn shutdown(&mut self) -> CloseReport {
        if self.closed {
            return CloseReport::default();
        }
        self.closed = true;
        // Bytes the bulk calls wrote but did not publish yet go out before the close.
        self.rings.publish();
        self.rings.set_own_live(LIVE_CLOSED);
        let _ = self.ev.notify(self.port);
        let _ = self.ev.unbind(self.port);
        let xenstore_removed = match self.xs_path.take() {
            Some(path) => self.xs.rm(Tx::NONE, &path).is_ok(),
            None => false,
        };
        let teardown = self.rings.mem_mut().teardown();
        CloseReport {
            teardown,
            xenstore_removed,
        }
    }
}

impl<S: Side, E: EventChannels, X: Xenstore> Drop for Vchan<S, E, X> {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_as_linux_writes_them() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,5,7-8"), Some(7));
        assert_eq!(count_cpu_list(""), None);
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("a"), None);
    }
}
