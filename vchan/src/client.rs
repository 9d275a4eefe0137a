//! The client: reads the server's rendezvous, maps the shared page and the rings, connects.

use crate::UnmapNotify;
use crate::abi::{
    CLI_LIVE, GRANTS, LIVE_CONNECTED, LIVE_WAITING, Layout, NOTIFY_WRITE, Place, SRV_NOTIFY,
    VchanInterface,
};
use crate::channel::{Options, Side, Teardown, Vchan};
use crate::error::VchanError;
use crate::ring::{RingMem, Rings, Role, Shape};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::time::Duration;
use xen_gnttab::shared::Ordering;
use xen_gnttab::{
    Domid, ForeignMap, ForeignMapper, ForeignRef, GrantRef, ReadOnly, SharedMem, Writable,
};
use xen_xenbus::{EventChannels, Port, Tx, XenbusError, Xenstore, XenstoreExt};

/// How a client finds and joins a channel.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's xenstore directory (see [`vchan_path`](crate::vchan_path)).
    pub path: String,
    /// How long to wait for the server's entries to appear; zero fails at once if they are
    /// missing, as libxenvchan does.
    pub wait: Duration,
    /// Blocking behaviour.
    pub options: Options,
    /// The platform's unmap-notify, if it has one.
    pub unmap_notify: Option<Arc<dyn UnmapNotify>>,
}

impl core::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("path", &self.path)
            .field("wait", &self.wait)
            .field("options", &self.options)
            .field("unmap_notify", &self.unmap_notify.is_some())
            .finish()
    }
}

impl ClientConfig {
    /// Joins the channel at `path`, failing at once if the server has not published it.
    pub fn new(path: String) -> Self {
        ClientConfig {
            path,
            wait: Duration::ZERO,
            options: Options::default(),
            unmap_notify: None,
        }
    }

    /// Waits up to `wait` for the server's entries.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Replaces the options.
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Arms the platform's unmap-notify on `cli_live`.
    pub fn unmap_notify(mut self, hook: Arc<dyn UnmapNotify>) -> Self {
        self.unmap_notify = Some(hook);
        self
    }
}

/// The client's memory: mappings of the server's grants. The server → client ring is mapped
/// read-only.
pub struct ClientMem<M: ForeignMapper> {
    shared: Option<ForeignMap<M, Writable>>,
    left: Vec<ForeignMap<M, Writable>>,
    right: Vec<ForeignMap<M, ReadOnly>>,
    layout: Layout,
}

impl<M: ForeignMapper> core::fmt::Debug for ClientMem<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientMem")
            .field("layout", &self.layout)
            .field("mappings", &(1 + self.left.len() + self.right.len()))
            .finish()
    }
}

impl<M: ForeignMapper> ClientMem<M> {
    #[inline(always)]
    fn shared(&self) -> &ForeignMap<M, Writable> {
        match &self.shared {
            Some(m) => m,
            None => unreachable!("the shared page is only unmapped at close"),
        }
    }
}

impl<M: ForeignMapper> RingMem for ClientMem<M> {
    #[inline(always)]
    fn header(&self) -> SharedMem<'_, Writable> {
        self.shared().mem()
    }
    #[inline(always)]
    fn rx_chunk(&self, i: usize) -> SharedMem<'_, ReadOnly> {
        match self.layout.right.place {
            Place::InPage(off) => self.header().sub(off, self.layout.right.size()).read_only(),
            Place::Pages { .. } => self.right[i].mem(),
        }
    }
    #[inline(always)]
    fn tx_chunk(&self, i: usize) -> SharedMem<'_, Writable> {
        match self.layout.left.place {
            Place::InPage(off) => self.header().sub(off, self.layout.left.size()),
            Place::Pages { .. } => self.left[i].mem(),
        }
    }
    #[inline]
    fn rx_in_page(&self) -> Option<usize> {
        self.layout.right.in_page()
    }
    #[inline]
    fn tx_in_page(&self) -> Option<usize> {
        self.layout.left.in_page()
    }
}

fn unmap_all<M: ForeignMapper, A: xen_gnttab::Access>(
    maps: Vec<ForeignMap<M, A>>,
    t: &mut Teardown,
) {
    for m in maps {
        match m.unmap() {
            Ok(()) => t.unmapped += 1,
            Err(_) => t.unmap_failed += 1,
        }
    }
}

impl<M: ForeignMapper> Side for ClientMem<M> {
    const ROLE: Role = Role::Client;
    fn teardown(&mut self) -> Teardown {
        let mut t = Teardown::default();
        unmap_all(core::mem::take(&mut self.left), &mut t);
        unmap_all(core::mem::take(&mut self.right), &mut t);
        unmap_all(self.shared.take().into_iter().collect(), &mut t);
        t
    }
}

/// A connected client end.
pub type ClientVchan<M, E, X> = Vchan<ClientMem<M>, E, X>;

fn bad(path: &str, why: &'static str) -> VchanError {
    VchanError::Rendezvous {
        path: String::from(path),
        why,
    }
}

/// Reads `ring-ref` and `event-channel`, waiting for them up to `wait`.
fn rendezvous<X: Xenstore>(
    xs: &X,
    path: &str,
    wait: Duration,
) -> Result<(GrantRef, Port), VchanError> {
    let ref_key = format!("{path}/ring-ref");
    let port_key = format!("{path}/event-channel");
    let read = |xs: &X| -> Result<Option<(GrantRef, Port)>, VchanError> {
        let missing = |e: &XenbusError| {
            e.errno() == Some(xen_xenbus::Errno::NoEnt)
                || e.parse_kind() == Some(&xen_xenbus::ParseErrorKind::Missing)
        };
        let r = match xs.read_grant_ref(Tx::NONE, &ref_key) {
            Ok(r) => r,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let p = match xs.read_port(Tx::NONE, &port_key) {
            Ok(p) => p,
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if r.0 == 0 {
            return Err(bad(path, "ring-ref is 0"));
        }
        if p.0 == 0 {
            return Err(bad(path, "event-channel is 0"));
        }
        Ok(Some((r, p)))
    };
    if let Some(found) = read(xs)? {
        return Ok(found);
    }
    if wait.is_zero() {
        return Err(bad(path, "no ring-ref and event-channel"));
    }
    let token = "xen-vchan-client";
    xs.watch(path, token).map_err(|e| XenbusError::Store {
        op: "watch",
        path: String::from(path),
        errno: e,
    })?;
    let deadline = xs.now().saturating_add(wait);
    let result = loop {
        match read(xs) {
            Ok(Some(found)) => break Ok(found),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let now = xs.now();
        if now >= deadline {
            break Err(VchanError::TimedOut);
        }
        if let Err(e) = xs.wait_watch(deadline - now) {
            break Err(XenbusError::Store {
                op: "wait_watch",
                path: String::from(path),
                errno: e,
            }
            .into());
        }
    };
    let _ = xs.unwatch(path, token);
    result
}

fn shape(g: &crate::abi::RingGeometry) -> Shape {
    Shape {
        size: g.size() as u32,
        chunk: g.chunk() as u32,
    }
}

/// Joins the channel `server` published at `config.path`: validates its entries, binds the
/// event channel, maps the shared page, reads and validates the header **once** (orders,
/// live bytes, grant list), maps the rings (the one we read read-only), then marks itself
/// live and signals the server.
pub fn connect<M, E, X>(
    mapper: &M,
    ev: E,
    xs: X,
    server: Domid,
    config: &ClientConfig,
) -> Result<ClientVchan<M, E, X>, VchanError>
where
    M: ForeignMapper,
    E: EventChannels,
    X: Xenstore,
{
    let (ring_ref, remote_port) = rendezvous(&xs, &config.path, config.wait)?;
    let port = ev.bind_interdomain(server, remote_port)?;
    let mapped = (|| -> Result<(ClientMem<M>, VchanInterface), VchanError> {
        let at = |gref| ForeignRef {
            domid: server,
            gref,
        };
        let shared = ForeignMap::<M, Writable>::map(mapper, at(ring_ref))?;
        // One private copy of the header: everything below is decided on it.
        let hdr: VchanInterface = shared.mem().read(0);
        let layout = Layout::from_orders(hdr.left_order, hdr.right_order)?;
        if hdr.cli_live != LIVE_WAITING || hdr.srv_live != LIVE_CONNECTED {
            return Err(VchanError::NotListening {
                srv_live: hdr.srv_live,
                cli_live: hdr.cli_live,
            });
        }
        let mut refs = alloc::vec![0u32; layout.grant_count()];
        for (i, r) in refs.iter_mut().enumerate() {
            *r = shared.mem().load_u32(GRANTS + 4 * i, Ordering::Relaxed);
        }
        let (nl, nr) = (layout.left.pages(), layout.right.pages());
        let left = refs[..nl]
            .iter()
            .map(|&r| ForeignMap::<M, Writable>::map(mapper, at(GrantRef(r))))
            .collect::<Result<Vec<_>, _>>()?;
        let right = refs[nl..nl + nr]
            .iter()
            .map(|&r| ForeignMap::<M, ReadOnly>::map(mapper, at(GrantRef(r))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            ClientMem {
                shared: Some(shared),
                left,
                right,
                layout,
            },
            hdr,
        ))
    })();
    let (mem, hdr) = match mapped {
        Ok(m) => m,
        Err(e) => {
            let _ = ev.unbind(port);
            return Err(e);
        }
    };
    let layout = mem.layout;
    // Our own indices start where the header said, and are never read back.
    let rings = Rings::new(
        mem,
        Role::Client,
        shape(&layout.right),
        shape(&layout.left),
        hdr.right.cons,
        hdr.left.prod,
    );
    let mut v = Vchan::new(rings, ev, port, xs, config.options.clone());
    if let Some(hook) = &config.unmap_notify {
        let m = v.rings.mem().shared();
        hook.arm_map(m.target(), m.mem(), CLI_LIVE, port)?;
    }
    let h = v.rings.mem().header();
    h.fetch_or_u8(SRV_NOTIFY, NOTIFY_WRITE, Ordering::SeqCst);
    h.store_u8(CLI_LIVE, LIVE_CONNECTED, Ordering::SeqCst);
    v.ev.notify(port)?;
    v.seen = v.rings.snapshot();
    Ok(v)
}
