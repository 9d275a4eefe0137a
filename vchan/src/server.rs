//! The server: grants the shared page and the rings, publishes them in xenstore, waits for
//! the client.

use crate::UnmapNotify;
use crate::abi::{
    CLI_LIVE, CLI_NOTIFY, GRANTS, LEFT_ORDER, LIVE_CONNECTED, LIVE_WAITING, Layout, NOTIFY_WRITE,
    PAGE_SIZE, Place, RIGHT_ORDER, SRV_LIVE,
};
use crate::channel::{Options, Side, Teardown, Vchan};
use crate::error::VchanError;
use crate::ring::{Broken, RingMem, Rings, Role, Shape};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;
use xen_gnttab::shared::Ordering;
use xen_gnttab::{Domid, Granted, Grantor, ReadOnly, SharedMem, Writable};
use xen_xenbus::{EventChannels, Perms, Tx, Xenstore, XenstoreExt, transact};

/// The conventional xenstore directory of a channel:
/// `/local/domain/<server>/data/vchan/<client>/<port>`.
pub fn vchan_path(server: Domid, client: Domid, port: u32) -> String {
    format!(
        "/local/domain/{}/data/vchan/{}/{}",
        server.0, client.0, port
    )
}

/// How a server sets a channel up.
#[derive(Clone)]
pub struct ServerConfig {
    /// The xenstore directory for `ring-ref` and `event-channel`.
    pub path: String,
    /// The rings, fixed for the channel's life.
    pub layout: Layout,
    /// Blocking behaviour.
    pub options: Options,
    /// The platform's unmap-notify, if it has one.
    pub unmap_notify: Option<Arc<dyn UnmapNotify>>,
}

impl core::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("options", &self.options)
            .field("unmap_notify", &self.unmap_notify.is_some())
            .finish()
    }
}

impl ServerConfig {
    /// A channel at `path` with at least `left_min` bytes of client → server ring and
    /// `right_min` bytes of server → client ring, rounded as libxenvchan rounds them.
    pub fn new(path: String, left_min: usize, right_min: usize) -> Result<Self, VchanError> {
        Ok(ServerConfig {
            path,
            layout: Layout::for_sizes(left_min, right_min)?,
            options: Options::default(),
            unmap_notify: None,
        })
    }

    /// A channel at `path` with exactly these ring orders.
    pub fn with_orders(
        path: String,
        left_order: u16,
        right_order: u16,
    ) -> Result<Self, VchanError> {
        Ok(ServerConfig {
            path,
            layout: Layout::from_orders(left_order, right_order)?,
            options: Options::default(),
            unmap_notify: None,
        })
    }

    /// Replaces the options.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Arms the platform's unmap-notify on `srv_live`.
    pub fn unmap_notify(mut self, hook: Arc<dyn UnmapNotify>) -> Self {
        self.unmap_notify = Some(hook);
        self
    }
}

/// The server's memory: the shared page and the ring pages, granted to the client.
///
/// The server → client ring is granted **read-only**: the client only reads it (libxenvchan
/// maps it `PROT_READ` too).
pub struct ServerMem<G: Grantor> {
    shared: Option<Granted<G, Writable>>,
    left: Vec<Granted<G, Writable>>,
    right: Vec<Granted<G, ReadOnly>>,
    layout: Layout,
}

impl<G: Grantor> core::fmt::Debug for ServerMem<G> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerMem")
            .field("layout", &self.layout)
            .field("pages", &(1 + self.left.len() + self.right.len()))
            .finish()
    }
}

impl<G: Grantor> ServerMem<G> {
    #[inline(always)]
    fn shared(&self) -> &Granted<G, Writable> {
        match &self.shared {
            Some(g) => g,
            None => unreachable!("the shared page is only given back at close"),
        }
    }
}

impl<G: Grantor> RingMem for ServerMem<G> {
    #[inline(always)]
    fn header(&self) -> SharedMem<'_, Writable> {
        self.shared().mem()
    }
    #[inline(always)]
    fn rx_chunk(&self, i: usize) -> SharedMem<'_, ReadOnly> {
        match self.layout.left.place {
            Place::InPage(off) => self.header().sub(off, self.layout.left.size()).read_only(),
            Place::Pages { .. } => self.left[i].mem().read_only(),
        }
    }
    #[inline(always)]
    fn tx_chunk(&self, i: usize) -> SharedMem<'_, Writable> {
        match self.layout.right.place {
            Place::InPage(off) => self.header().sub(off, self.layout.right.size()),
            Place::Pages { .. } => self.right[i].mem(),
        }
    }
    #[inline]
    fn rx_in_page(&self) -> Option<usize> {
        self.layout.left.in_page()
    }
    #[inline]
    fn tx_in_page(&self) -> Option<usize> {
        self.layout.right.in_page()
    }
}

fn end_all<G: Grantor, A: xen_gnttab::Access>(grants: Vec<Granted<G, A>>, t: &mut Teardown) {
    for g in grants {
        match g.end_access() {
            Ok(_) => t.ended += 1,
            // Still mapped by the client: the grant waits in the reclaim queue.
            Err(busy) => {
                t.reclaim += 1;
                drop(busy);
            }
        }
    }
}

impl<G: Grantor> Side for ServerMem<G> {
    const ROLE: Role = Role::Server;
    fn teardown(&mut self) -> Teardown {
        let mut t = Teardown::default();
        end_all(core::mem::take(&mut self.left), &mut t);
        end_all(core::mem::take(&mut self.right), &mut t);
        end_all(self.shared.take().into_iter().collect(), &mut t);
        t
    }
}

/// A server channel waiting for its client: it has no I/O methods until
/// [`accept`](Self::accept) returns the connected [`Vchan`].
pub struct Listener<G: Grantor, E: EventChannels, X: Xenstore> {
    inner: Vchan<ServerMem<G>, E, X>,
}

impl<G: Grantor, E: EventChannels, X: Xenstore> core::fmt::Debug for Listener<G, E, X> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Listener")
            .field("inner", &self.inner)
            .finish()
    }
}

/// A connected server end.
pub type ServerVchan<G, E, X> = Vchan<ServerMem<G>, E, X>;

fn shape(g: &crate::abi::RingGeometry) -> Shape {
    // Orders are 10..=20 and chunks 1 KiB..4 KiB: always valid powers of two.
    Shape {
        size: g.size() as u32,
        chunk: g.chunk() as u32,
    }
}

/// Sets a channel up for `client`: allocates and grants the shared page and the ring pages,
/// binds an unbound event-channel port for the client, and writes `ring-ref` and
/// `event-channel` under `config.path` in one transaction, readable by the client only.
pub fn listen<G, E, X>(
    grantor: &G,
    ev: E,
    xs: X,
    client: Domid,
    config: &ServerConfig,
) -> Result<Listener<G, E, X>, VchanError>
where
    G: Grantor,
    E: EventChannels,
    X: Xenstore,
{
    let layout = config.layout;
    let port = ev.alloc_unbound(client)?;
    let granted = (|| -> Result<ServerMem<G>, VchanError> {
        let page = grantor.alloc_page()?;
        let shared = Granted::<G, Writable>::new(grantor, page, client).map_err(|(_, e)| e)?;
        let pages = |n: usize| -> Result<Vec<G::Page>, VchanError> {
            (0..n)
                .map(|_| grantor.alloc_page().map_err(VchanError::from))
                .collect()
        };
        let left = Granted::<G, Writable>::new_many(grantor, pages(layout.left.pages())?, client)
            .map_err(|(_, e)| e)?;
        let right = Granted::<G, ReadOnly>::new_many(grantor, pages(layout.right.pages())?, client)
            .map_err(|(_, e)| e)?;
        Ok(ServerMem {
            shared: Some(shared),
            left,
            right,
            layout,
        })
    })();
    let mem = match granted {
        Ok(m) => m,
        Err(e) => {
            let _ = ev.unbind(port);
            return Err(e);
        }
    };
    // The page is zeroed (XSA-403: nothing stale reaches the client), then the header.
    let h = mem.header();
    h.fill(0, PAGE_SIZE, 0);
    for p in mem
        .left
        .iter()
        .map(|g| g.mem())
        .chain(mem.right.iter().map(|g| g.mem()))
    {
        p.fill(0, PAGE_SIZE, 0);
    }
    let refs = mem
        .left
        .iter()
        .map(|g| g.gref())
        .chain(mem.right.iter().map(|g| g.gref()));
    for (i, r) in refs.enumerate() {
        h.store_u32(GRANTS + 4 * i, r.0, Ordering::Relaxed);
    }
    h.store_u16(LEFT_ORDER, layout.left.order, Ordering::Relaxed);
    h.store_u16(RIGHT_ORDER, layout.right.order, Ordering::Relaxed);
    h.store_u8(CLI_LIVE, LIVE_WAITING, Ordering::Relaxed);
    h.store_u8(SRV_LIVE, LIVE_CONNECTED, Ordering::Relaxed);
    h.store_u8(CLI_NOTIFY, NOTIFY_WRITE, Ordering::Release);
    let ring_ref = mem.shared().gref();

    let rings = Rings::new(
        mem,
        Role::Server,
        shape(&layout.left),
        shape(&layout.right),
        0,
        0,
    );
    let mut inner = Vchan::new(rings, ev, port, xs, config.options.clone());
    if let Some(hook) = &config.unmap_notify {
        let m = inner.rings.mem().shared();
        hook.arm_grant(m.gref(), m.mem(), SRV_LIVE, port)?;
    }
    let me = inner.xs.domid();
    let perms = Perms::shared_read(me, client);
    let path = config.path.clone();
    transact(
        &inner.xs,
        xen_xenbus::xenstore::DEFAULT_TX_ATTEMPTS,
        |tx: Tx| {
            let key = format!("{path}/ring-ref");
            inner.xs.write_uint(tx, &key, ring_ref.0.into())?;
            inner
                .xs
                .set_perms(tx, &key, &perms)
                .map_err(|e| xen_xenbus::XenbusError::Store {
                    op: "set_perms",
                    path: key.clone(),
                    errno: e,
                })?;
            let key = format!("{path}/event-channel");
            inner.xs.write_uint(tx, &key, port.0.into())?;
            inner
                .xs
                .set_perms(tx, &key, &perms)
                .map_err(|e| xen_xenbus::XenbusError::Store {
                    op: "set_perms",
                    path: key.clone(),
                    errno: e,
                })
        },
    )?;
    inner.xs_path = Some(path);
    Ok(Listener { inner })
}

impl<G: Grantor, E: EventChannels, X: Xenstore> Listener<G, E, X> {
    /// The grant reference of the shared page (what `ring-ref` says).
    pub fn ring_ref(&self) -> xen_gnttab::GrantRef {
        self.inner.rings.mem().shared().gref()
    }

    /// Our event-channel port.
    pub fn port(&self) -> xen_xenbus::Port {
        self.inner.port
    }

    /// The rings.
    pub fn layout(&self) -> Layout {
        self.inner.rings.mem().layout
    }

    /// Whether the client has connected (`cli_live` is 1), without blocking.
    pub fn poll_client(&mut self) -> Result<bool, VchanError> {
        match self.inner.rings.peer_live() {
            LIVE_CONNECTED => Ok(true),
            LIVE_WAITING => Ok(false),
            // Connected and gone already, or a client (or anyone with the page) zeroed it.
            0 => Err(VchanError::PeerClosed),
            other => Err(VchanError::Broken(Broken::BogusLive(other))),
        }
    }

    /// Waits at most `timeout` for the client, then returns the connected channel. On any
    /// failure (including the timeout) the channel is closed: entries removed, grants ended
    /// or queued for reclaim.
    pub fn accept(mut self, timeout: Duration) -> Result<ServerVchan<G, E, X>, VchanError> {
        let deadline = self.inner.xs.now().saturating_add(timeout);
        loop {
            if self.poll_client()? {
                self.inner.seen = self.inner.rings.snapshot();
                return Ok(self.inner);
            }
            if !self.inner.wait_event(Some(deadline))? {
                return Err(VchanError::TimedOut);
            }
        }
    }

    /// Gives up waiting: removes the entries and ends the grants.
    pub fn close(self) -> crate::CloseReport {
        self.inner.close()
    }
}
