//! The byte-ring algorithm of libxenvchan (`io.c`), over any [`RingMem`].
//!
//! [`Rings`] is one end of a channel: it reads one ring and writes the other, and owns the
//! notify protocol. It has no event channel and never blocks: each call says whether the
//! peer must be notified, and the caller ([`Vchan`](crate::Vchan)) signals the event
//! channel. That keeps the algorithm checkable by loom (`tests/loom.rs`) unchanged.
//!
//! Compared with libxenvchan it is stricter:
//!
//! * **Own indices are private.** The consumer index of the ring we read and the producer
//!   index of the ring we write are kept here and only ever *stored* to shared memory; a
//!   peer that rewrites them changes nothing we compute.
//! * **Sizes are fixed at construction** (the orders are read once at connect).
//! * **`prod - cons` larger than the ring breaks the channel** ([`Broken`]) instead of
//!   reading as "nothing ready", and the channel stays broken.
//! * **Notification is requested only when a caller will wait**: when less is ready than it
//!   asked for (a stream read asks for one byte, a packet for its size). libxenvchan asks
//!   whenever a read is short, which makes the writer signal on every write.
//! * **Bulk paths may publish late.** [`Rings::put_known`] and [`Rings::take_known`] (under
//!   `Vchan::write_more` / `read_more`) store their index only every publish lag bytes;
//!   `send_notify` and `publish` store the rest. A late index only shows the peer less than
//!   there is (fewer bytes, less room), which is always safe; the caller's duty is to
//!   publish before it waits, as it takes held notify requests.
//!
//! Barriers follow libxenvchan: the peer's index is an `Acquire` load, ours a `Release`
//! store (its `xen_rmb`/`xen_wmb`), and `request_notify` / `send_notify` put a
//! `fence(SeqCst)` where it has `xen_mb()` (the store-then-load of the notify decision).

use crate::abi::{
    CLI_LIVE, CLI_NOTIFY, LEFT_CONS, LEFT_PROD, LIVE_CONNECTED, NOTIFY_READ, NOTIFY_WRITE,
    RIGHT_CONS, RIGHT_PROD, SRV_LIVE, SRV_NOTIFY,
};
use xen_gnttab::shared::{Ordering, fence};
use xen_gnttab::{ReadOnly, SharedMem, Writable};

/// The memory of one end of a channel.
///
/// `header` is the shared page (at least its first 24 bytes); `rx_chunk(i)` and
/// `tx_chunk(i)` are chunk `i` of the ring this end reads and writes. A chunk is the whole
/// ring when the ring sits in the shared page, else one 4 KiB page; each view must be at
/// least one chunk long.
pub trait RingMem {
    /// The shared page.
    fn header(&self) -> SharedMem<'_, Writable>;
    /// Chunk `i` of the ring this end reads.
    fn rx_chunk(&self, i: usize) -> SharedMem<'_, ReadOnly>;
    /// Chunk `i` of the ring this end writes.
    fn tx_chunk(&self, i: usize) -> SharedMem<'_, Writable>;
    /// Where the ring this end reads sits in the shared page, if it does: its one chunk is
    /// then `header()` from this offset on, and the copies reach it through the header view
    /// they already hold. `None` (the default): through [`rx_chunk`](Self::rx_chunk).
    /// Asked once, when the [`Rings`] are made.
    fn rx_in_page(&self) -> Option<usize> {
        None
    }
    /// The same for the ring this end writes.
    fn tx_in_page(&self) -> Option<usize> {
        None
    }
}

/// Which end: decides which ring is read and which notify and live bytes are ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads the left ring, writes the right one; owns `srv_live`/`srv_notify`.
    Server,
    /// Reads the right ring, writes the left one; owns `cli_live`/`cli_notify`.
    Client,
}

/// Why a channel broke: the peer wrote something impossible into shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    /// The peer's producer index is more than a ring ahead of our consumer index (XSA-86).
    #[error("peer producer index {prod} is {} bytes past consumer {cons}, ring {size}", prod.wrapping_sub(*cons))]
    RxOverrun {
        /// The peer's producer index.
        prod: u32,
        /// Ours.
        cons: u32,
        /// Ring size.
        size: u32,
    },
    /// The peer's consumer index is behind our producer by more than a ring, or ahead of it.
    #[error("peer consumer index {cons} is inconsistent with producer {prod}, ring {size}")]
    TxOverrun {
        /// Ours.
        prod: u32,
        /// The peer's consumer index.
        cons: u32,
        /// Ring size.
        size: u32,
    },
    /// The peer's live byte holds a value the protocol does not have.
    #[error("peer live byte is {0}")]
    BogusLive(u8),
}

#[derive(Clone, Copy, Debug)]
struct Offsets {
    own_live: usize,
    peer_live: usize,
    own_notify: usize,
    peer_notify: usize,
    rx_cons: usize,
    rx_prod: usize,
    tx_cons: usize,
    tx_prod: usize,
}

impl Role {
    const fn offsets(self) -> Offsets {
        match self {
            Role::Server => Offsets {
                own_live: SRV_LIVE,
                peer_live: CLI_LIVE,
                own_notify: SRV_NOTIFY,
                peer_notify: CLI_NOTIFY,
                rx_cons: LEFT_CONS,
                rx_prod: LEFT_PROD,
                tx_cons: RIGHT_CONS,
                tx_prod: RIGHT_PROD,
            },
            Role::Client => Offsets {
                own_live: CLI_LIVE,
                peer_live: SRV_LIVE,
                own_notify: CLI_NOTIFY,
                peer_notify: SRV_NOTIFY,
                rx_cons: RIGHT_CONS,
                rx_prod: RIGHT_PROD,
                tx_cons: LEFT_CONS,
                tx_prod: LEFT_PROD,
            },
        }
    }
}

/// The fixed shape of one ring: size and chunk, both powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Bytes in the ring.
    pub size: u32,
    /// Bytes per chunk (`size` when the ring is one view, else the page size).
    pub chunk: u32,
}

impl Shape {
    /// A shape, if `size` and `chunk` are powers of two with `chunk <= size`.
    pub const fn new(size: u32, chunk: u32) -> Option<Shape> {
        if size.is_power_of_two() && chunk.is_power_of_two() && chunk <= size {
            Some(Shape { size, chunk })
        } else {
            None
        }
    }
}

/// What the peer could change since the last look: used to tell a real event from a
/// spurious one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The peer's producer index of the ring we read.
    pub rx_prod: u32,
    /// The peer's consumer index of the ring we write.
    pub tx_cons: u32,
    /// The peer's live byte.
    pub peer_live: u8,
}

/// One end of a vchan: the two rings and the notify protocol.
#[derive(Debug)]
pub struct Rings<M> {
    mem: M,
    off: Offsets,
    rx: Shape,
    tx: Shape,
    /// Our consumer index of the ring we read (private, never read back).
    rx_cons: u32,
    /// Bytes known ready at `rx_cons` (validated).
    rx_avail: u32,
    /// Our producer index of the ring we write (private, never read back).
    tx_prod: u32,
    /// Bytes known free at `tx_prod` (validated).
    tx_avail: u32,
    /// [`RingMem::rx_in_page`] and [`RingMem::tx_in_page`], asked once.
    rx_at: Option<usize>,
    tx_at: Option<usize>,
    /// The consumer and producer indices last stored in the header: `rx_cons` and
    /// `tx_prod` run ahead of them by what the `*_known` paths have not published yet.
    rx_pub: u32,
    tx_pub: u32,
    /// How far (bytes) the `*_known` paths let an index run ahead of the header before
    /// they store it ([`set_publish_lag`](Self::set_publish_lag)).
    lag: u32,
    broken: Option<Broken>,
}

/// The cap of the default publish lag: a new [`Rings`] lets its index run a quarter of the
/// smaller ring ahead, at most this many bytes ([`Rings::set_publish_lag`] changes it, up
/// to half the smaller ring). With 64-byte writes the header's cache line then moves
/// between the two ends once per 9 (2 KiB ring) to 17 writes instead of every write (the
/// line holds both ends' indices, so each store by one end takes it from the other), while
/// at least four such batches fit in the ring. (Measured with `cargo xtask bench vchan`,
/// 64-byte writes: an eighth of the ring, at most 256 bytes, gave 0.81-0.89x the C ring
/// with a 2 KiB ring where a quarter gave 0.87-0.97x, and a 1 KiB cap beat 256 bytes by
/// 15% with a 1 MiB ring.)
pub const PUBLISH_LAG: u32 = 1024;

impl<M: RingMem> Rings<M> {
    /// One end over `mem`, with the rings' shapes (fixed from now on) and the starting values
    /// of our own indices.
    pub fn new(mem: M, role: Role, rx: Shape, tx: Shape, rx_cons: u32, tx_prod: u32) -> Self {
        Rings {
            rx_pub: rx_cons,
            tx_pub: tx_prod,
            lag: (rx.size.min(tx.size) / 4).min(PUBLISH_LAG),
            rx_at: mem.rx_in_page(),
            tx_at: mem.tx_in_page(),
            mem,
            off: role.offsets(),
            rx,
            tx,
            rx_cons,
            rx_avail: 0,
            tx_prod,
            tx_avail: 0,
            broken: None,
        }
    }

    /// The memory.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// The memory, mutably (teardown).
    pub fn mem_mut(&mut self) -> &mut M {
        &mut self.mem
    }

    /// The shape of the ring we read.
    pub fn rx_shape(&self) -> Shape {
        self.rx
    }

    /// The shape of the ring we write.
    pub fn tx_shape(&self) -> Shape {
        self.tx
    }

    /// Why the channel broke, if it did. Sticky.
    pub fn broken(&self) -> Option<Broken> {
        self.broken
    }

    /// Marks the channel broken (first reason wins).
    pub fn set_broken(&mut self, why: Broken) -> Broken {
        *self.broken.get_or_insert(why)
    }

    #[inline]
    fn check(&self) -> Result<(), Broken> {
        match self.broken {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }

    /// `request_notify`: asks the peer to signal when it does `bit`, then a full barrier so
    /// that the caller's re-read of the indices comes after the request is visible.
    pub fn request_notify(&self, bit: u8) {
        self.mem
            .header()
            .fetch_or_u8(self.off.peer_notify, bit, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// `send_notify`: after our index update, a full barrier, then takes the peer's request
    /// for `bit`. True if the peer asked: signal the event channel.
    ///
    /// The decision is a load after the fence; only a set bit is cleared with an atomic AND.
    /// The load is enough: with both fences, either it sees the peer's request or the peer's
    /// re-read sees our index (the loom models check it), and a clear bit needs no write,
    /// which keeps the header's cache line shared while the peer is not waiting.
    ///
    /// It first publishes the index of that direction (our producer index for
    /// `NOTIFY_WRITE`, our consumer index for `NOTIFY_READ`) if the `*_known` paths left it
    /// behind: the barrier then orders that store before the look at the request, as the
    /// protocol needs.
    #[inline]
    pub fn send_notify(&mut self, bit: u8) -> bool {
        let own = self.off.own_notify;
        let h = self.publish_dirs(bit);
        take_request(h, own, bit)
    }

    /// Stores both our indices in the header if the `*_known` paths left them behind: what
    /// an end owes its peer before it spins, waits or closes (the peer may be waiting for
    /// exactly those bytes or that room). [`send_notify`](Self::send_notify) does it for
    /// its direction, so a flush of the held requests needs no separate call.
    #[inline]
    pub fn publish(&mut self) {
        self.publish_dirs(NOTIFY_WRITE | NOTIFY_READ);
    }

    /// [`publish`](Self::publish) for the directions in `bits` (`NOTIFY_WRITE`: our
    /// producer index, `NOTIFY_READ`: our consumer index). Returns the header view, so that
    /// [`send_notify`](Self::send_notify) does not resolve it twice.
    #[inline(always)]
    fn publish_dirs(&mut self, bits: u8) -> SharedMem<'_, Writable> {
        let h = self.mem.header();
        if bits & NOTIFY_WRITE != 0 && self.tx_pub != self.tx_prod {
            store_index(h, self.off.tx_prod, self.tx_prod, &mut self.tx_pub);
        }
        if bits & NOTIFY_READ != 0 && self.rx_pub != self.rx_cons {
            store_index(h, self.off.rx_cons, self.rx_cons, &mut self.rx_pub);
        }
        h
    }

    /// Sets how far the bulk paths ([`put_known`](Self::put_known),
    /// [`take_known`](Self::take_known)) may run ahead of the indices the peer sees before
    /// they store them: `0` stores on every call. At most half the smaller ring is used.
    pub fn set_publish_lag(&mut self, bytes: u32) {
        self.lag = bytes.min(self.rx.size.min(self.tx.size) / 2);
    }

    /// The publish lag in force (see [`set_publish_lag`](Self::set_publish_lag)).
    pub fn publish_lag(&self) -> u32 {
        self.lag
    }

    /// Whether the peer's request for `bit` is visibly set, by a plain load with no
    /// barrier: a hint (see `Vchan::flush_asked`), never a decision to sleep on.
    #[inline]
    pub fn asked(&self, bit: u8) -> bool {
        self.mem
            .header()
            .load_u8(self.off.own_notify, Ordering::Relaxed)
            & bit
            != 0
    }

    #[inline]
    fn raw_rx(&mut self) -> Result<u32, Broken> {
        let prod = self
            .mem
            .header()
            .load_u32(self.off.rx_prod, Ordering::Acquire);
        let ready = prod.wrapping_sub(self.rx_cons);
        if ready > self.rx.size {
            return Err(self.set_broken(Broken::RxOverrun {
                prod,
                cons: self.rx_cons,
                size: self.rx.size,
            }));
        }
        self.rx_avail = ready;
        Ok(ready)
    }

    #[inline]
    fn raw_tx(&mut self) -> Result<u32, Broken> {
        let cons = self
            .mem
            .header()
            .load_u32(self.off.tx_cons, Ordering::Acquire);
        let used = self.tx_prod.wrapping_sub(cons);
        if used > self.tx.size {
            return Err(self.set_broken(Broken::TxOverrun {
                prod: self.tx_prod,
                cons,
                size: self.tx.size,
            }));
        }
        self.tx_avail = self.tx.size - used;
        Ok(self.tx_avail)
    }

    /// Bytes ready to read, without asking for a notification (a caller about to spin).
    #[inline]
    pub fn peek_rx(&mut self) -> Result<usize, Broken> {
        self.check()?;
        Ok(self.raw_rx()? as usize)
    }

    /// Bytes free to write, without asking for a notification.
    #[inline]
    pub fn peek_tx(&mut self) -> Result<usize, Broken> {
        self.check()?;
        Ok(self.raw_tx()? as usize)
    }

    /// Bytes ready to read. If fewer than `want`, asks the peer to signal its next write and
    /// looks again (libxenvchan's `fast_get_data_ready`): either this call sees the data or
    /// the peer signals.
    #[inline]
    pub fn poll_rx(&mut self, want: usize) -> Result<usize, Broken> {
        self.check()?;
        let ready = self.raw_rx()?;
        if ready as usize >= want {
            return Ok(ready as usize);
        }
        self.request_notify(NOTIFY_WRITE);
        Ok(self.raw_rx()? as usize)
    }

    /// Bytes free to write; if fewer than `want`, asks the peer to signal its next read and
    /// looks again (`fast_get_buffer_space`).
    #[inline]
    pub fn poll_tx(&mut self, want: usize) -> Result<usize, Broken> {
        self.check()?;
        let space = self.raw_tx()?;
        if space as usize >= want {
            return Ok(space as usize);
        }
        self.request_notify(NOTIFY_READ);
        Ok(self.raw_tx()? as usize)
    }

    /// Copies up to the bytes [`poll_rx`](Self::poll_rx) last found ready into `buf`,
    /// publishes the new consumer index and takes the peer's notify request. Returns the
    /// count and whether to signal the peer.
    #[inline]
    pub fn take(&mut self, buf: &mut [u8]) -> (usize, bool) {
        let n = self.take_more(buf);
        (n, n > 0 && self.send_notify(NOTIFY_READ))
    }

    /// [`take`](Self::take) without the notify decision: copies and publishes the consumer
    /// index, but neither fences nor looks at the peer's request. A writer asleep waiting
    /// for room is woken only by a later [`send_notify`](Self::send_notify)`(NOTIFY_READ)`
    /// (or a later `take`/`read_now`, which takes the request for every byte consumed before
    /// it). The caller must make that call before it waits or stops reading.
    #[inline]
    pub fn take_more(&mut self, buf: &mut [u8]) -> usize {
        let n = buf.len().min(self.rx_avail as usize);
        let Some(n) = self.take_known(&mut buf[..n]) else {
            return 0;
        };
        self.publish_dirs(NOTIFY_READ);
        n
    }

    /// Copies as much of `data` as [`poll_tx`](Self::poll_tx) last found room for into the
    /// ring, publishes the new producer index and takes the peer's notify request. Returns
    /// the count and whether to signal the peer.
    #[inline]
    pub fn put(&mut self, data: &[u8]) -> (usize, bool) {
        let n = self.put_more(data);
        (n, n > 0 && self.send_notify(NOTIFY_WRITE))
    }

    /// [`put`](Self::put) without the notify decision: copies as much of `data` as
    /// [`poll_tx`](Self::poll_tx) last found room for and publishes the producer index, but
    /// neither fences nor looks at the peer's request. The bytes are visible to a reader that
    /// looks; one that sleeps waiting for them is woken only by a later
    /// [`send_notify`](Self::send_notify)`(NOTIFY_WRITE)` (or a later `put`/`write_now`,
    /// which takes the request for every byte published before it). The caller must make that
    /// call before it waits or stops writing.
    #[inline]
    pub fn put_more(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.tx_avail as usize);
        let Some(n) = self.put_known(&data[..n]) else {
            return 0;
        };
        self.publish_dirs(NOTIFY_WRITE);
        n
    }

    /// A read that needs no waiting, in one pass over the header: if bytes are ready, copies
    /// up to `buf.len()` of them, publishes the consumer index and takes the peer's notify
    /// request, as [`peek_rx`](Self::peek_rx) then [`take`](Self::take) would. `Ok(None)`
    /// when nothing is ready (or `buf` is empty): the caller decides, with the live byte,
    /// whether to wait.
    #[inline]
    pub fn read_now(&mut self, buf: &mut [u8]) -> Result<Option<(usize, bool)>, Broken> {
        let own = self.off.own_notify;
        Ok(self
            .read_pass(buf)?
            .map(|(n, h)| (n, take_request(h, own, NOTIFY_READ))))
    }

    /// [`read_now`](Self::read_now) without the notify decision (see
    /// [`take_more`](Self::take_more) for what the caller then owes), and without a look at
    /// the peer's producer index while the bytes known ready from the last look cover `buf`
    /// ([`take_known`](Self::take_known)): a bulk reader then touches the shared header only
    /// to publish its index.
    #[inline]
    pub fn read_now_more(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Broken> {
        if let Some(n) = self.take_known(buf) {
            return Ok(Some(n));
        }
        Ok(self.read_pass(buf)?.map(|(n, _)| n))
    }

    /// The bulk reader's fast path: if `buf` is not empty, the channel is not broken and the
    /// bytes the last look found ready cover `buf`, fills it and returns `Some(buf.len())`,
    /// without looking at the peer's index or request. The consumer index is stored in the
    /// header only once it runs more than the publish lag ahead of the last store
    /// ([`set_publish_lag`](Self::set_publish_lag)); [`send_notify`](Self::send_notify)
    /// (`NOTIFY_READ`) or [`publish`](Self::publish) stores the rest, and the caller owes
    /// one of them before it waits, as for [`take_more`](Self::take_more). Otherwise `None`,
    /// and nothing was done.
    #[inline(always)]
    pub fn take_known(&mut self, buf: &mut [u8]) -> Option<usize> {
        let n = buf.len();
        if n == 0 || n > self.rx_avail as usize || self.broken.is_some() {
            return None;
        }
        let h = self.mem.header();
        copy_in(&self.mem, h, self.rx_at, self.rx, self.rx_cons, buf);
        // n <= rx_avail <= size, so the cast is exact.
        self.rx_cons = self.rx_cons.wrapping_add(n as u32);
        self.rx_avail -= n as u32;
        if self.rx_cons.wrapping_sub(self.rx_pub) > self.lag {
            store_index(h, self.off.rx_cons, self.rx_cons, &mut self.rx_pub);
        }
        Some(n)
    }

    #[inline(always)]
    fn read_pass(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<(usize, SharedMem<'_, Writable>)>, Broken> {
        self.check()?;
        let h = self.mem.header();
        let prod = h.load_u32(self.off.rx_prod, Ordering::Acquire);
        let ready = prod.wrapping_sub(self.rx_cons);
        if ready > self.rx.size {
            let why = Broken::RxOverrun {
                prod,
                cons: self.rx_cons,
                size: self.rx.size,
            };
            return Err(*self.broken.get_or_insert(why));
        }
        let n = buf.len().min(ready as usize);
        if n == 0 {
            self.rx_avail = ready;
            return Ok(None);
        }
        copy_in(
            &self.mem,
            h,
            self.rx_at,
            self.rx,
            self.rx_cons,
            &mut buf[..n],
        );
        // n <= ready <= size, so the cast is exact.
        self.rx_cons = self.rx_cons.wrapping_add(n as u32);
        self.rx_avail = ready - n as u32;
        store_index(h, self.off.rx_cons, self.rx_cons, &mut self.rx_pub);
        Ok(Some((n, h)))
    }

    /// A write that needs no waiting, in one pass over the header: if the peer's live byte
    /// says connected and there is room, copies as much of `data` as fits, publishes the
    /// producer index and takes the peer's notify request, as [`peek_tx`](Self::peek_tx)
    /// then [`put`](Self::put) would. `Ok(None)` when the peer is not live, the ring is full
    /// or `data` is empty: the caller's general path decides.
    #[inline]
    pub fn write_now(&mut self, data: &[u8]) -> Result<Option<(usize, bool)>, Broken> {
        let own = self.off.own_notify;
        Ok(self
            .write_pass(data)?
            .map(|(n, h)| (n, take_request(h, own, NOTIFY_WRITE))))
    }

    /// [`write_now`](Self::write_now) without the notify decision (see
    /// [`put_more`](Self::put_more) for what the caller then owes), and without a look at
    /// the peer's consumer index and live byte while the room known from the last look
    /// holds `data` ([`put_known`](Self::put_known)): a bulk writer then touches the shared
    /// header only to publish its index. (Room is never lost: the consumer index only moves
    /// forward. A peer that closed in the meantime is seen at the next look, as a socket's
    /// writer learns of a closed peer only after some writes.)
    #[inline]
    pub fn write_now_more(&mut self, data: &[u8]) -> Result<Option<usize>, Broken> {
        if let Some(n) = self.put_known(data) {
            return Ok(Some(n));
        }
        Ok(self.write_pass(data)?.map(|(n, _)| n))
    }

    /// The bulk writer's fast path: if `data` is not empty, the channel is not broken and
    /// the room the last look found holds `data`, copies it into the ring and returns
    /// `Some(data.len())`, without looking at the peer's index, live byte or request. The
    /// producer index is stored as in [`take_known`](Self::take_known): past the publish
    /// lag, else by a later [`send_notify`](Self::send_notify)`(NOTIFY_WRITE)` or
    /// [`publish`](Self::publish), which the caller owes before it waits or closes.
    /// Otherwise `None`, and nothing was done.
    #[inline(always)]
    pub fn put_known(&mut self, data: &[u8]) -> Option<usize> {
        let n = data.len();
        if n == 0 || n > self.tx_avail as usize || self.broken.is_some() {
            return None;
        }
        let h = self.mem.header();
        copy_out(&self.mem, h, self.tx_at, self.tx, self.tx_prod, data);
        // n <= tx_avail <= size, so the cast is exact.
        self.tx_prod = self.tx_prod.wrapping_add(n as u32);
        self.tx_avail -= n as u32;
        if self.tx_prod.wrapping_sub(self.tx_pub) > self.lag {
            store_index(h, self.off.tx_prod, self.tx_prod, &mut self.tx_pub);
        }
        Some(n)
    }

    #[inline(always)]
    fn write_pass(
        &mut self,
        data: &[u8],
    ) -> Result<Option<(usize, SharedMem<'_, Writable>)>, Broken> {
        self.check()?;
        let h = self.mem.header();
        if h.load_u8(self.off.peer_live, Ordering::Acquire) != LIVE_CONNECTED {
            return Ok(None);
        }
        let cons = h.load_u32(self.off.tx_cons, Ordering::Acquire);
        let used = self.tx_prod.wrapping_sub(cons);
        if used > self.tx.size {
            let why = Broken::TxOverrun {
                prod: self.tx_prod,
                cons,
                size: self.tx.size,
            };
            return Err(*self.broken.get_or_insert(why));
        }
        let space = self.tx.size - used;
        let n = data.len().min(space as usize);
        if n == 0 {
            self.tx_avail = space;
            return Ok(None);
        }
        copy_out(&self.mem, h, self.tx_at, self.tx, self.tx_prod, &data[..n]);
        self.tx_prod = self.tx_prod.wrapping_add(n as u32);
        self.tx_avail = space - n as u32;
        store_index(h, self.off.tx_prod, self.tx_prod, &mut self.tx_pub);
        Ok(Some((n, h)))
    }

    /// The peer's live byte, as it is now (unvalidated).
    #[inline]
    pub fn peer_live(&self) -> u8 {
        self.mem
            .header()
            .load_u8(self.off.peer_live, Ordering::Acquire)
    }

    /// Stores our live byte.
    pub fn set_own_live(&self, v: u8) {
        self.mem
            .header()
            .store_u8(self.off.own_live, v, Ordering::SeqCst);
    }

    /// What the peer has published, for telling real events from spurious ones.
    pub fn snapshot(&self) -> Snapshot {
        let h = self.mem.header();
        Snapshot {
            rx_prod: h.load_u32(self.off.rx_prod, Ordering::Relaxed),
            tx_cons: h.load_u32(self.off.tx_cons, Ordering::Relaxed),
            peer_live: h.load_u8(self.off.peer_live, Ordering::Relaxed),
        }
    }
}

/// Stores one of our indices (`value`) at header offset `off` with release order (the
/// `xen_wmb` before an index update) and records it as the last published value.
#[inline(always)]
fn store_index(h: SharedMem<'_, Writable>, off: usize, value: u32, published: &mut u32) {
    *published = value;
    h.store_u32(off, value, Ordering::Release);
}

/// [`Rings::send_notify`] on a header view the caller holds, with our notify byte at `own`.
#[inline(always)]
fn take_request(h: SharedMem<'_, Writable>, own: usize, bit: u8) -> bool {
    fence(Ordering::SeqCst);
    if h.load_u8(own, Ordering::SeqCst) & bit == 0 {
        return false;
    }
    let prev = h.fetch_and_u8(own, !bit, Ordering::SeqCst);
    prev & bit != 0
}

/// Copies `buf.len()` bytes (at most a ring) out of the ring we read, from index `at`.
///
/// The common case is one copy inside one chunk, inline; crossing a chunk or the ring's end
/// goes out of line.
///
/// `h` is the header view the caller holds, `in_page` where the ring sits in it, if it does.
#[inline(always)]
fn copy_in<M: RingMem>(
    mem: &M,
    h: SharedMem<'_, Writable>,
    in_page: Option<usize>,
    shape: Shape,
    at: u32,
    buf: &mut [u8],
) {
    let off = (at & (shape.size - 1)) as usize;
    let within = off & (shape.chunk as usize - 1);
    if within + buf.len() <= shape.chunk as usize {
        match in_page {
            // One chunk: `within` is `off`, inside the ring, which is inside the page.
            Some(base) => h.read_bytes(base + within, buf),
            None => mem
                .rx_chunk(off >> shape.chunk.trailing_zeros())
                .read_bytes(within, buf),
        }
    } else {
        copy_in_rest(mem, shape, off, buf);
    }
}

/// [`copy_in`] across chunks (or the ring's end), from ring offset `off`.
#[cold]
#[inline(never)]
fn copy_in_rest<M: RingMem>(mem: &M, shape: Shape, mut off: usize, buf: &mut [u8]) {
    let mask = shape.size as usize - 1;
    let (shift, cmask) = (shape.chunk.trailing_zeros(), shape.chunk as usize - 1);
    let mut done = 0;
    while done < buf.len() {
        off &= mask;
        let within = off & cmask;
        let len = (cmask + 1 - within).min(buf.len() - done);
        mem.rx_chunk(off >> shift)
            .read_bytes(within, &mut buf[done..done + len]);
        done += len;
        off += len;
    }
}

/// Copies `data` (at most a ring) into the ring we write, from index `at` (as [`copy_in`]).
#[inline(always)]
fn copy_out<M: RingMem>(
    mem: &M,
    h: SharedMem<'_, Writable>,
    in_page: Option<usize>,
    shape: Shape,
    at: u32,
    data: &[u8],
) {
    let off = (at & (shape.size - 1)) as usize;
    let within = off & (shape.chunk as usize - 1);
    if within + data.len() <= shape.chunk as usize {
        match in_page {
            Some(base) => h.write_bytes(base + within, data),
            None => mem
                .tx_chunk(off >> shape.chunk.trailing_zeros())
                .write_bytes(within, data),
        }
    } else {
        copy_out_rest(mem, shape, off, data);
    }
}

/// [`copy_out`] across chunks (or the ring's end), from ring offset `off`.
#[cold]
#[inline(never)]
fn copy_out_rest<M: RingMem>(mem: &M, shape: Shape, mut off: usize, data: &[u8]) {
    let mask = shape.size as usize - 1;
    let (shift, cmask) = (shape.chunk.trailing_zeros(), shape.chunk as usize - 1);
    let mut done = 0;
    while done < data.len() {
        off &= mask;
        let within = off & cmask;
        let len = (cmask + 1 - within).min(data.len() - done);
        mem.tx_chunk(off >> shift)
            .write_bytes(within, &data[done..done + len]);
        done += len;
        off += len;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::abi::{LEFT_CONS, LEFT_PROD};
    use xen_gnttab::SharedRegion;

    /// A 24-byte header, then a 16-byte left ring made of two 8-byte chunks, then the right.
    struct Mem<'a>(&'a SharedRegion, Role);

    impl RingMem for Mem<'_> {
        fn header(&self) -> SharedMem<'_, Writable> {
            self.0.mem()
        }
        fn rx_chunk(&self, i: usize) -> SharedMem<'_, ReadOnly> {
            let base = if self.1 == Role::Server { 24 } else { 40 };
            self.0.mem().sub(base + 8 * i, 8).read_only()
        }
        fn tx_chunk(&self, i: usize) -> SharedMem<'_, Writable> {
            let base = if self.1 == Role::Server { 40 } else { 24 };
            self.0.mem().sub(base + 8 * i, 8)
        }
    }

    #[test]
    fn indices_wrap_across_2_pow_32_and_chunks() {
        let r = SharedRegion::new_zeroed(56);
        let start = 0xFFFF_FFF0u32;
        r.mem().store_u32(LEFT_CONS, start, Ordering::Relaxed);
        r.mem().store_u32(LEFT_PROD, start, Ordering::Relaxed);
        let shape = Shape::new(16, 8).unwrap();
        let mut srv = Rings::new(Mem(&r, Role::Server), Role::Server, shape, shape, start, 0);
        let mut cli = Rings::new(Mem(&r, Role::Client), Role::Client, shape, shape, 0, start);
        let mut next = 0u8;
        let mut expect = 0u8;
        for round in 0..40 {
            let want = 1 + round % 16;
            let space = cli.poll_tx(want).unwrap();
            let data: Vec<u8> = (0..space.min(want))
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            assert_eq!(cli.put(&data).0, data.len());
            let ready = srv.poll_rx(1).unwrap();
            assert_eq!(ready, data.len());
            let mut buf = [0u8; 16];
            let (n, _) = srv.take(&mut buf[..ready]);
            for &b in &buf[..n] {
                expect = expect.wrapping_add(1);
                assert_eq!(b, expect);
            }
        }
        assert!(srv.rx_cons < start, "wrapped past 2^32");
    }

    #[test]
    fn take_and_put_never_exceed_what_was_validated() {
        let r = SharedRegion::new_zeroed(56);
        let shape = Shape::new(16, 8).unwrap();
        let mut srv = Rings::new(Mem(&r, Role::Server), Role::Server, shape, shape, 0, 0);
        // No poll yet: nothing validated, nothing moves.
        assert_eq!(srv.take(&mut [0u8; 8]), (0, false));
        assert_eq!(srv.put(&[1u8; 8]), (0, false));
        assert_eq!(srv.poll_tx(1).unwrap(), 16);
        assert_eq!(srv.put(&[1u8; 20]).0, 16, "a put stops at the free space");
        assert_eq!(Shape::new(12, 4), None);
        assert_eq!(Shape::new(8, 16), None);
    }
}
