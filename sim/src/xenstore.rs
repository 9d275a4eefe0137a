//! A simulated `xenstored`: the tree, per-node permissions, watches, transactions and
//! per-domain quotas.
//!
//! The store is host-wide and reached only through [`Store::request`] (one request, one
//! reply, like an `xsd_sockmsg` exchange) and [`Store::wait_event`]: a later multi-process
//! host can carry exactly these calls over a socket. Each [`SimXenstore`] is one connection
//! (an open `/dev/xen/xenbus`) with its own watches, transactions and event queue.
//!
//! Semantics, as `xenstored` has them:
//!
//! * Permissions: the owner and domain 0 have full access; other domains get their entry in
//!   the node's list, else the "others" permission. Reads need read access to the node,
//!   writes write access to it (creation: to the nearest existing ancestor). New nodes
//!   inherit their parent's permissions; an unprivileged creator becomes the owner. Only the
//!   owner (or domain 0) may set permissions, and only domain 0 may give a node away.
//! * Watches fire once when set, then once per change at or under the watched path (a
//!   removal also fires watches below the removed node), and only to connections whose
//!   domain may read the changed node. Special paths `@introduceDomain` and
//!   `@releaseDomain` fire when domains come and go.
//! * Transactions work on a private snapshot; on commit, any node the transaction read or
//!   wrote that changed meanwhile (creating or removing a child changes the parent) fails the
//!   commit with `EAGAIN` and nothing is applied.
//! * Quotas per unprivileged domain (nodes owned, value size, watches, open transactions,
//!   queued events): exceeding one is `ENOSPC`, and the host stays usable.

use crate::{Domain, Host};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use xen_xenbus::path::{self, PAYLOAD_MAX};
use xen_xenbus::{Domid, Errno, Perms, Tx, WatchEvent, Xenstore};

/// Per-domain limits (`xenstored`'s `quota-nentry`, `quota-maxsize`, ... ); domain 0 is
/// exempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Nodes a domain may own.
    pub max_nodes: usize,
    /// Largest value a domain may write.
    pub max_value: usize,
    /// Watches per connection.
    pub max_watches: usize,
    /// Open transactions per connection.
    pub max_transactions: usize,
    /// Watch events queued per connection; more are dropped (and counted), so a domain
    /// that causes events cannot grow another's memory without bound (XSA-349).
    pub max_queued_events: usize,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            max_nodes: 1000,
            max_value: 2048,
            max_watches: 128,
            max_transactions: 10,
            max_queued_events: 1024,
        }
    }
}

/// One request to the store (the operations of `xs_wire.h`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `XS_READ`.
    Read(String),
    /// `XS_WRITE`.
    Write(String, Vec<u8>),
    /// `XS_MKDIR`.
    Mkdir(String),
    /// `XS_RM`.
    Rm(String),
    /// `XS_DIRECTORY`.
    Directory(String),
    /// `XS_GET_PERMS`.
    GetPerms(String),
    /// `XS_SET_PERMS`.
    SetPerms(String, Perms),
    /// `XS_TRANSACTION_START`.
    TxStart,
    /// `XS_TRANSACTION_END` (commit or abort).
    TxEnd(bool),
    /// `XS_WATCH` (path, token).
    Watch(String, String),
    /// `XS_UNWATCH` (path, token).
    Unwatch(String, String),
}

/// A reply from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Done.
    Ok,
    /// A value.
    Value(Vec<u8>),
    /// Child names.
    Names(Vec<String>),
    /// Permissions.
    Perms(Perms),
    /// A new transaction.
    Tx(Tx),
}

#[derive(Clone, Debug)]
struct Node {
    value: Vec<u8>,
    perms: Perms,
    generation: u64,
}

/// The tree: nodes by absolute path, and how many each domain owns.
#[derive(Clone, Debug, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
    owned: HashMap<u16, usize>,
}

/// A change for watches: the path, whether it was removed, who may read it.
#[derive(Clone, Debug)]
struct Change {
    path: String,
    /// Fires only watches on exactly this path (a node deleted below a removed one).
    exact: bool,
    perms: Perms,
}

/// What an operation did: nodes it looked at (with their generation before it touched them),
/// nodes it changed, watch events to fire.
#[derive(Clone, Debug, Default)]
struct Log {
    touched: BTreeMap<String, Option<u64>>,
    written: BTreeSet<String>,
    changes: Vec<Change>,
}

struct Ctx<'a> {
    who: Domid,
    generation: &'a mut u64,
    quota: &'a Quota,
    log: &'a mut Log,
}

impl Ctx<'_> {
    fn privileged(&self) -> bool {
        self.who == Domid::DOM0
    }
    fn next_gen(&mut self) -> u64 {
        *self.generation += 1;
        *self.generation
    }
}

fn may(who: Domid, perms: &Perms, write: bool) -> bool {
    if who == Domid::DOM0 {
        return true;
    }
    let p = perms.access(who);
    if write { p.can_write() } else { p.can_read() }
}

impl Tree {
    fn new() -> Self {
        let mut t = Tree::default();
        t.put(
            "/",
            Node {
                value: Vec::new(),
                perms: Perms::private(Domid::DOM0),
                generation: 0,
            },
        );
        t
    }

    fn gen_of(&self, p: &str) -> Option<u64> {
        self.nodes.get(p).map(|n| n.generation)
    }

    fn put(&mut self, p: &str, node: Node) {
        let owner = node.perms.owner.0;
        if let Some(old) = self.nodes.insert(p.to_owned(), node) {
            self.disown(old.perms.owner.0);
        }
        *self.owned.entry(owner).or_default() += 1;
    }

    fn remove_one(&mut self, p: &str) {
        if let Some(old) = self.nodes.remove(p) {
            self.disown(old.perms.owner.0);
        }
    }

    fn disown(&mut self, d: u16) {
        if let Some(n) = self.owned.get_mut(&d) {
            *n = n.saturating_sub(1);
        }
    }

    fn owned_by(&self, d: Domid) -> usize {
        self.owned.get(&d.0).copied().unwrap_or(0)
    }

    fn touch(&self, ctx: &mut Ctx<'_>, p: &str) {
        if !ctx.log.touched.contains_key(p) {
            ctx.log.touched.insert(p.to_owned(), self.gen_of(p));
        }
    }

    /// Marks `p` changed: a fresh generation, and committed at the end of a transaction.
    fn bump(&mut self, ctx: &mut Ctx<'_>, p: &str) {
        let g = ctx.next_gen();
        if let Some(n) = self.nodes.get_mut(p) {
            n.generation = g;
        }
        ctx.log.written.insert(p.to_owned());
    }

    fn node_for(&self, ctx: &mut Ctx<'_>, p: &str, write: bool) -> Result<&Node, Errno> {
        self.touch(ctx, p);
        let n = self.nodes.get(p).ok_or(Errno::NoEnt)?;
        if may(ctx.who, &n.perms, write) {
            Ok(n)
        } else {
            Err(Errno::Acces)
        }
    }

    fn read(&self, ctx: &mut Ctx<'_>, p: &str) -> Result<Vec<u8>, Errno> {
        Ok(self.node_for(ctx, p, false)?.value.clone())
    }

    fn directory(&self, ctx: &mut Ctx<'_>, p: &str) -> Result<Vec<String>, Errno> {
        self.node_for(ctx, p, false)?;
        let prefix = if p == "/" {
            "/".to_owned()
        } else {
            format!("{p}/")
        };
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
            })
            .collect())
    }

    /// Creates `p` and any missing ancestors, inheriting permissions from the nearest
    /// existing ancestor, which the caller must be able to write.
    fn create(&mut self, ctx: &mut Ctx<'_>, p: &str, value: &[u8]) -> Result<(), Errno> {
        let mut missing = vec![p.to_owned()];
        let mut anc = path::parent(p).ok_or(Errno::Inval)?;
        while !self.nodes.contains_key(anc) {
            self.touch(ctx, anc);
            missing.push(anc.to_owned());
            anc = path::parent(anc).ok_or(Errno::Inval)?;
        }
        let base = self.node_for(ctx, anc, true)?.perms.clone();
        let mut perms = base;
        if !ctx.privileged() {
            perms.owner = ctx.who;
            if ctx.quota.max_nodes < self.owned_by(ctx.who) + missing.len() {
                return Err(Errno::NoSpc);
            }
        }
        let anc = anc.to_owned();
        self.bump(ctx, &anc);
        for q in missing.iter().rev() {
            let generation = ctx.next_gen();
            let v = if q == p { value.to_vec() } else { Vec::new() };
            self.put(
                q,
                Node {
                    value: v,
                    perms: perms.clone(),
                    generation,
                },
            );
            ctx.log.written.insert(q.clone());
            ctx.log.changes.push(Change {
                path: q.clone(),
                exact: false,
                perms: perms.clone(),
            });
        }
        Ok(())
    }

    fn write(&mut self, ctx: &mut Ctx<'_>, p: &str, value: &[u8]) -> Result<(), Errno> {
        if value.len() > PAYLOAD_MAX {
            return Err(Errno::TooBig);
        }
        if !ctx.privileged() && value.len() > ctx.quota.max_value {
            return Err(Errno::NoSpc);
        }
        if self.nodes.contains_key(p) {
            let perms = self.node_for(ctx, p, true)?.perms.clone();
            if let Some(n) = self.nodes.get_mut(p) {
                n.value = value.to_vec();
            }
            self.bump(ctx, p);
            ctx.log.changes.push(Change {
                path: p.to_owned(),
                exact: false,
                perms,
            });
            Ok(())
        } else {
            self.touch(ctx, p);
            self.create(ctx, p, value)
        }
    }

    fn mkdir(&mut self, ctx: &mut Ctx<'_>, p: &str) -> Result<(), Errno> {
        self.touch(ctx, p);
        if self.nodes.contains_key(p) {
            return Ok(());
        }
        self.create(ctx, p, &[])
    }

    fn rm(&mut self, ctx: &mut Ctx<'_>, p: &str) -> Result<(), Errno> {
        let parent = path::parent(p).ok_or(Errno::Inval)?.to_owned();
        if !self.nodes.contains_key(p) {
            self.touch(ctx, p);
            // As xenstored: removing a missing node under an existing parent succeeds.
            self.touch(ctx, &parent);
            return if self.nodes.contains_key(&parent) {
                Ok(())
            } else {
                Err(Errno::NoEnt)
            };
        }
        let perms = self.node_for(ctx, p, true)?.perms.clone();
        self.touch(ctx, &parent);
        let prefix = format!("{p}/");
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for q in doomed.iter().map(String::as_str).chain([p]) {
            self.touch(ctx, q);
            if let Some(old) = self.nodes.get(q) {
                if q != p {
                    // As xenstored's delnode_sub: each deleted node fires the watches on
                    // it, for the domains that could read it.
                    ctx.log.changes.push(Change {
                        path: q.to_owned(),
                        exact: true,
                        perms: old.perms.clone(),
                    });
                }
            }
            self.remove_one(q);
            ctx.log.written.insert(q.to_owned());
        }
        self.bump(ctx, &parent);
        ctx.log.changes.push(Change {
            path: p.to_owned(),
            exact: false,
            perms,
        });
        Ok(())
    }

    fn set_perms(&mut self, ctx: &mut Ctx<'_>, p: &str, perms: &Perms) -> Result<(), Errno> {
        if perms.acl.len() > xen_xenbus::xenstore::MAX_ACL {
            return Err(Errno::Inval);
        }
        let old = self.node_for(ctx, p, false)?.perms.clone();
        if !ctx.privileged() {
            if old.owner != ctx.who {
                return Err(Errno::Acces);
            }
            if perms.owner != old.owner {
                return Err(Errno::Perm);
            }
        }
        let Some(mut node) = self.nodes.get(p).cloned() else {
            return Err(Errno::NoEnt);
        };
        node.perms = perms.clone();
        self.put(p, node);
        self.bump(ctx, p);
        ctx.log.changes.push(Change {
            path: p.to_owned(),
            exact: false,
            perms: perms.clone(),
        });
        Ok(())
    }
}

struct WatchReg {
    path: String,
    token: String,
    /// For a relative watch, the home prefix to strip from event paths.
    strip: Option<String>,
}

struct Txn {
    base: Arc<Tree>,
    tree: Arc<Tree>,
    log: Log,
}

struct Conn {
    domid: Domid,
    watches: Vec<WatchReg>,
    txs: HashMap<u32, Txn>,
    queue: VecDeque<WatchEvent>,
    dropped: u64,
}

struct Inner {
    tree: Arc<Tree>,
    generation: u64,
    quota: Quota,
    live: BTreeSet<u16>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_tx: u32,
    /// Events were queued: wake the waiters.
    wake: bool,
}

/// The host's xenstore.
pub struct Store {
    inner: Mutex<Inner>,
    events: Condvar,
}

impl Default for Store {
    fn default() -> Self {
        let mut tree = Tree::new();
        let mut generation = 0;
        let quota = Quota::default();
        let mut log = Log::default();
        let mut ctx = Ctx {
            who: Domid::DOM0,
            generation: &mut generation,
            quota: &quota,
            log: &mut log,
        };
        for p in ["/local", "/local/domain", "/tool", "/vm"] {
            // Privileged creation of a fresh path cannot fail.
            let _ = tree.mkdir(&mut ctx, p);
        }
        Store {
            inner: Mutex::new(Inner {
                tree: Arc::new(tree),
                generation,
                quota,
                live: BTreeSet::new(),
                conns: HashMap::new(),
                next_conn: 1,
                next_tx: 1,
                wake: false,
            }),
            events: Condvar::new(),
        }
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The special watch path fired when a domain is created.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// The special watch path fired when a domain is destroyed.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

impl Inner {
    fn abs(&self, domid: Domid, p: &str) -> Result<String, Errno> {
        Self::abs_for(domid, p)
    }

    /// Queues `changes` to every watch that covers them and whose domain may read them.
    fn fire(&mut self, changes: &[Change]) -> bool {
        let mut any = false;
        let max = self.quota.max_queued_events;
        for conn in self.conns.values_mut() {
            for c in changes {
                if !may(conn.domid, &c.perms, false) && !c.path.starts_with('@') {
                    continue;
                }
                for w in &conn.watches {
                    let hit = if c.exact {
                        c.path == w.path
                    } else {
                        path::is_at_or_under(&c.path, &w.path) || c.path == w.path
                    };
                    if !hit {
                        continue;
                    }
                    let p = c.path.as_str();
                    let shown = match &w.strip {
                        Some(home) => p.strip_prefix(home.as_str()).unwrap_or(p),
                        None => p,
                    };
                    if conn.queue.len() >= max {
                        conn.dropped += 1;
                    } else {
                        conn.queue.push_back(WatchEvent {
                            path: shown.to_owned(),
                            token: w.token.clone(),
                        });
                        any = true;
                    }
                }
            }
        }
        any
    }

    fn special(&mut self, name: &str) -> bool {
        self.fire(&[Change {
            path: name.to_owned(),
            exact: false,
            perms: Perms::private(Domid::DOM0),
        }])
    }

    fn op(&mut self, conn_id: u64, tx: Tx, req: Request) -> Result<Reply, Errno> {
        let conn = self.conns.get(&conn_id).ok_or(Errno::Io)?;
        let who = conn.domid;
        if !self.live.contains(&who.0) {
            return Err(Errno::Io);
        }
        match req {
            Request::TxStart => {
                if who != Domid::DOM0 && conn.txs.len() >= self.quota.max_transactions {
                    return Err(Errno::NoSpc);
                }
                let id = loop {
                    let id = self.next_tx;
                    self.next_tx = self.next_tx.wrapping_add(1).max(1);
                    if self.conns.values().all(|c| !c.txs.contains_key(&id)) {
                        break id;
                    }
                };
                let txn = Txn {
                    base: self.tree.clone(),
                    tree: self.tree.clone(),
                    log: Log::default(),
                };
                if let Some(c) = self.conns.get_mut(&conn_id) {
                    c.txs.insert(id, txn);
                }
                return Ok(Reply::Tx(Tx(id)));
            }
            Request::TxEnd(commit) => {
                let txn = self
                    .conns
                    .get_mut(&conn_id)
                    .and_then(|c| c.txs.remove(&tx.0))
                    .ok_or(Errno::NoEnt)?;
                if commit {
                    self.commit(who, txn)?;
                }
                return Ok(Reply::Ok);
            }
            Request::Watch(p, token) => return self.watch(conn_id, who, &p, token),
            Request::Unwatch(p, token) => {
                let abs = if p.starts_with('@') {
                    p
                } else {
                    self.abs(who, &p)?
                };
                let c = self.conns.get_mut(&conn_id).ok_or(Errno::Io)?;
                let before = c.watches.len();
                c.watches.retain(|w| !(w.path == abs && w.token == token));
                return if c.watches.len() < before {
                    Ok(Reply::Ok)
                } else {
                    Err(Errno::NoEnt)
                };
            }
            _ => {}
        }
        let quota = self.quota;
        let mut generation = self.generation;
        let mut own_log = Log::default();
        let mutating = matches!(
            req,
            Request::Write(..) | Request::Mkdir(_) | Request::Rm(_) | Request::SetPerms(..)
        );
        let result = if tx == Tx::NONE {
            let mut ctx = Ctx {
                who,
                generation: &mut generation,
                quota: &quota,
                log: &mut own_log,
            };
            if mutating {
                Self::tree_op(Arc::make_mut(&mut self.tree), &mut ctx, req)
            } else {
                Self::read_op(&self.tree, &mut ctx, req)
            }
        } else {
            let conn = self.conns.get_mut(&conn_id).ok_or(Errno::Io)?;
            let txn = conn.txs.get_mut(&tx.0).ok_or(Errno::NoEnt)?;
            let mut ctx = Ctx {
                who,
                generation: &mut generation,
                quota: &quota,
                log: &mut txn.log,
            };
            if mutating {
                Self::tree_op(Arc::make_mut(&mut txn.tree), &mut ctx, req)
            } else {
                Self::read_op(&txn.tree, &mut ctx, req)
            }
        };
        self.generation = generation;
        if !own_log.changes.is_empty() && self.fire(&own_log.changes) {
            self.wake = true;
        }
        result
    }

    fn abs_for(who: Domid, p: &str) -> Result<String, Errno> {
        path::check(p)?;
        if p.starts_with('/') {
            Ok(p.to_owned())
        } else if p.starts_with('@') {
            Err(Errno::Inval)
        } else {
            Ok(path::join(&path::home(who), p))
        }
    }

    fn read_op(tree: &Tree, ctx: &mut Ctx<'_>, req: Request) -> Result<Reply, Errno> {
        let who = ctx.who;
        match req {
            Request::Read(p) => tree.read(ctx, &Self::abs_for(who, &p)?).map(Reply::Value),
            Request::Directory(p) => tree
                .directory(ctx, &Self::abs_for(who, &p)?)
                .map(Reply::Names),
            Request::GetPerms(p) => {
                let a = Self::abs_for(who, &p)?;
                tree.node_for(ctx, &a, false)
                    .map(|n| Reply::Perms(n.perms.clone()))
            }
            _ => Err(Errno::Inval),
        }
    }

    fn tree_op(tree: &mut Tree, ctx: &mut Ctx<'_>, req: Request) -> Result<Reply, Errno> {
        let who = ctx.who;
        match req {
            Request::Write(p, v) => tree
                .write(ctx, &Self::abs_for(who, &p)?, &v)
                .map(|()| Reply::Ok),
            Request::Mkdir(p) => tree
                .mkdir(ctx, &Self::abs_for(who, &p)?)
                .map(|()| Reply::Ok),
            Request::Rm(p) => tree.rm(ctx, &Self::abs_for(who, &p)?).map(|()| Reply::Ok),
            Request::SetPerms(p, perms) => tree
                .set_perms(ctx, &Self::abs_for(who, &p)?, &perms)
                .map(|()| Reply::Ok),
            _ => Err(Errno::Inval),
        }
    }

    fn watch(&mut self, conn_id: u64, who: Domid, p: &str, token: String) -> Result<Reply, Errno> {
        if token.len() > path::REL_PATH_MAX || token.contains('\0') {
            return Err(Errno::Inval);
        }
        let (abs, strip) = if p.starts_with('@') {
            if p != INTRODUCE_DOMAIN && p != RELEASE_DOMAIN {
                return Err(Errno::Inval);
            }
            (p.to_owned(), None)
        } else {
            let a = self.abs(who, p)?;
            let strip = (!p.starts_with('/')).then(|| format!("{}/", path::home(who)));
            (a, strip)
        };
        let max_watches = self.quota.max_watches;
        let max_queued = self.quota.max_queued_events;
        let c = self.conns.get_mut(&conn_id).ok_or(Errno::Io)?;
        if c.watches.iter().any(|w| w.path == abs && w.token == token) {
            return Err(Errno::Exist);
        }
        if who != Domid::DOM0 && c.watches.len() >= max_watches {
            return Err(Errno::NoSpc);
        }
        c.watches.push(WatchReg {
            path: abs,
            token: token.clone(),
            strip,
        });
        // Fires once when set, with the path as given.
        if c.queue.len() < max_queued {
            c.queue.push_back(WatchEvent {
                path: p.to_owned(),
                token,
            });
        } else {
            c.dropped += 1;
        }
        self.wake = true;
        Ok(Reply::Ok)
    }

    fn commit(&mut self, who: Domid, txn: Txn) -> Result<(), Errno> {
        for (p, g) in &txn.log.touched {
            if self.tree.gen_of(p) != *g {
                return Err(Errno::Again);
            }
        }
        if who != Domid::DOM0 {
            let grew = txn
                .tree
                .owned_by(who)
                .saturating_sub(txn.base.owned_by(who));
            if grew > 0 && self.tree.owned_by(who) + grew > self.quota.max_nodes {
                return Err(Errno::NoSpc);
            }
        }
        let tree = Arc::make_mut(&mut self.tree);
        for p in &txn.log.written {
            match txn.tree.nodes.get(p) {
                Some(n) => {
                    self.generation += 1;
                    tree.put(
                        p,
                        Node {
                            generation: self.generation,
                            ..n.clone()
                        },
                    );
                }
                None => tree.remove_one(p),
            }
        }
        if self.fire(&txn.log.changes) {
            self.wake = true;
        }
        Ok(())
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Store {
    /// Runs one request for connection `conn` (transaction `tx`, or [`Tx::NONE`]).
    pub fn request(&self, conn: u64, tx: Tx, req: Request) -> Result<Reply, Errno> {
        let mut inner = lock(&self.inner);
        let r = inner.op(conn, tx, req);
        if std::mem::take(&mut inner.wake) {
            self.events.notify_all();
        }
        r
    }

    /// The next watch event of `conn`, waiting at most `timeout`. A connection whose domain
    /// is gone gets `EIO`.
    pub fn wait_event(&self, conn: u64, timeout: Duration) -> Result<Option<WatchEvent>, Errno> {
        let deadline = Instant::now().checked_add(timeout);
        let mut inner = lock(&self.inner);
        loop {
            let c = inner.conns.get_mut(&conn).ok_or(Errno::Io)?;
            let domid = c.domid;
            if let Some(e) = c.queue.pop_front() {
                return Ok(Some(e));
            }
            if !inner.live.contains(&domid.0) {
                return Err(Errno::Io);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return Ok(None);
            }
            inner = self
                .events
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Opens a connection for `domid`.
    pub fn open(&self, domid: Domid) -> u64 {
        let mut inner = lock(&self.inner);
        let id = inner.next_conn;
        inner.next_conn += 1;
        inner.conns.insert(
            id,
            Conn {
                domid,
                watches: Vec::new(),
                txs: HashMap::new(),
                queue: VecDeque::new(),
                dropped: 0,
            },
        );
        id
    }

    /// Closes a connection: its watches and open transactions go.
    pub fn close(&self, conn: u64) {
        lock(&self.inner).conns.remove(&conn);
    }

    /// Watch events dropped for `conn` because its queue was full.
    pub fn dropped_events(&self, conn: u64) -> u64 {
        lock(&self.inner).conns.get(&conn).map_or(0, |c| c.dropped)
    }

    /// The quotas in force.
    pub fn quota(&self) -> Quota {
        lock(&self.inner).quota
    }

    /// Changes the quotas (toolstack configuration).
    pub fn set_quota(&self, quota: Quota) {
        lock(&self.inner).quota = quota;
    }

    /// Nodes `domid` owns.
    pub fn nodes_owned(&self, domid: Domid) -> usize {
        lock(&self.inner).tree.owned_by(domid)
    }

    /// Total nodes in the tree.
    pub fn node_count(&self) -> usize {
        lock(&self.inner).tree.nodes.len()
    }

    /// What the toolstack does when a domain is created: `/local/domain/<id>` with `name`,
    /// `domid`, `device`, `control` (owned by domain 0, readable by the domain), and `data`
    /// and `control/shutdown` (owned by the domain); then `@introduceDomain` fires.
    pub(crate) fn introduce(&self, domid: Domid, name: &str) {
        let mut inner = lock(&self.inner);
        inner.live.insert(domid.0);
        let home = path::home(domid);
        let ro = Perms::shared_read(Domid::DOM0, domid);
        let ro = if domid == Domid::DOM0 {
            Perms::private(Domid::DOM0)
        } else {
            ro
        };
        let mine = Perms::private(domid);
        let id = domid.0.to_string();
        let nodes: [(String, &[u8], &Perms); 7] = [
            (home.clone(), b"", &ro),
            (format!("{home}/name"), name.as_bytes(), &ro),
            (format!("{home}/domid"), id.as_bytes(), &ro),
            (format!("{home}/device"), b"", &ro),
            (format!("{home}/control"), b"", &ro),
            (format!("{home}/control/shutdown"), b"", &mine),
            (format!("{home}/data"), b"", &mine),
        ];
        let quota = inner.quota;
        let mut generation = inner.generation;
        let mut log = Log::default();
        {
            let tree = Arc::make_mut(&mut inner.tree);
            let mut ctx = Ctx {
                who: Domid::DOM0,
                generation: &mut generation,
                quota: &quota,
                log: &mut log,
            };
            for (p, v, perms) in nodes {
                // Privileged writes of well-formed paths cannot fail.
                let _ = tree.write(&mut ctx, &p, v);
                let _ = tree.set_perms(&mut ctx, &p, perms);
            }
        }
        inner.generation = generation;
        inner.fire(&log.changes);
        inner.special(INTRODUCE_DOMAIN);
        self.events.notify_all();
    }

    /// What happens when a domain is destroyed: the toolstack removes `/local/domain/<id>`,
    /// the domain's connections die (waiters get `EIO`), nodes it still owns elsewhere pass
    /// to domain 0, and `@releaseDomain` fires.
    pub(crate) fn release(&self, domid: Domid) {
        let mut inner = lock(&self.inner);
        inner.live.remove(&domid.0);
        for c in inner.conns.values_mut() {
            if c.domid == domid {
                c.txs.clear();
                c.watches.clear();
            }
        }
        let quota = inner.quota;
        let mut generation = inner.generation;
        let mut log = Log::default();
        {
            let tree = Arc::make_mut(&mut inner.tree);
            let mut ctx = Ctx {
                who: Domid::DOM0,
                generation: &mut generation,
                quota: &quota,
                log: &mut log,
            };
            let _ = tree.rm(&mut ctx, &path::home(domid));
            let orphans: Vec<String> = tree
                .nodes
                .iter()
                .filter(|(_, n)| n.perms.owner == domid)
                .map(|(k, _)| k.clone())
                .collect();
            for p in orphans {
                if let Some(mut n) = tree.nodes.get(&p).cloned() {
                    n.perms.owner = Domid::DOM0;
                    tree.put(&p, n);
                    tree.bump(&mut ctx, &p);
                }
            }
        }
        inner.generation = generation;
        inner.fire(&log.changes);
        inner.special(RELEASE_DOMAIN);
        self.events.notify_all();
    }
}

/// A xenstore connection of a simulated domain (an open `/dev/xen/xenbus`): the
/// [`Xenstore`] its drivers use. Dropping it removes its watches and aborts its
/// transactions.
pub struct SimXenstore {
    host: Host,
    conn: u64,
    domid: Domid,
}

impl std::fmt::Debug for SimXenstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimXenstore")
            .field("domid", &self.domid)
            .field("conn", &self.conn)
            .finish()
    }
}

impl SimXenstore {
    fn store(&self) -> &Store {
        &self.host.inner.xenstore
    }

    fn req(&self, tx: Tx, r: Request) -> Result<Reply, Errno> {
        self.store().request(self.conn, tx, r)
    }

    /// Watch events dropped because this connection's queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.store().dropped_events(self.conn)
    }
}

impl Drop for SimXenstore {
    fn drop(&mut self) {
        self.store().close(self.conn);
    }
}

fn unexpected<T>(_: Reply) -> Result<T, Errno> {
    Err(Errno::Io)
}

impl Xenstore for SimXenstore {
    fn domid(&self) -> Domid {
        self.domid
    }
    fn now(&self) -> Duration {
        epoch().elapsed()
    }
    fn read(&self, tx: Tx, path: &str) -> Result<Vec<u8>, Errno> {
        match self.req(tx, Request::Read(path.to_owned()))? {
            Reply::Value(v) => Ok(v),
            r => unexpected(r),
        }
    }
    fn write(&self, tx: Tx, path: &str, value: &[u8]) -> Result<(), Errno> {
        self.req(tx, Request::Write(path.to_owned(), value.to_vec()))
            .map(drop)
    }
    fn mkdir(&self, tx: Tx, path: &str) -> Result<(), Errno> {
        self.req(tx, Request::Mkdir(path.to_owned())).map(drop)
    }
    fn rm(&self, tx: Tx, path: &str) -> Result<(), Errno> {
        self.req(tx, Request::Rm(path.to_owned())).map(drop)
    }
    fn directory(&self, tx: Tx, path: &str) -> Result<Vec<String>, Errno> {
        match self.req(tx, Request::Directory(path.to_owned()))? {
            Reply::Names(v) => Ok(v),
            r => unexpected(r),
        }
    }
    fn get_perms(&self, tx: Tx, path: &str) -> Result<Perms, Errno> {
        match self.req(tx, Request::GetPerms(path.to_owned()))? {
            Reply::Perms(p) => Ok(p),
            r => unexpected(r),
        }
    }
    fn set_perms(&self, tx: Tx, path: &str, perms: &Perms) -> Result<(), Errno> {
        self.req(tx, Request::SetPerms(path.to_owned(), perms.clone()))
            .map(drop)
    }
    fn transaction_start(&self) -> Result<Tx, Errno> {
        match self.req(Tx::NONE, Request::TxStart)? {
            Reply::Tx(t) => Ok(t),
            r => unexpected(r),
        }
    }
    fn transaction_end(&self, tx: Tx, commit: bool) -> Result<(), Errno> {
        self.req(tx, Request::TxEnd(commit)).map(drop)
    }
    fn watch(&self, path: &str, token: &str) -> Result<(), Errno> {
        self.req(Tx::NONE, Request::Watch(path.to_owned(), token.to_owned()))
            .map(drop)
    }
    fn unwatch(&self, path: &str, token: &str) -> Result<(), Errno> {
        self.req(
            Tx::NONE,
            Request::Unwatch(path.to_owned(), token.to_owned()),
        )
        .map(drop)
    }
    fn poll_watch(&self) -> Result<Option<WatchEvent>, Errno> {
        self.store().wait_event(self.conn, Duration::ZERO)
    }
    fn wait_watch(&self, timeout: Duration) -> Result<Option<WatchEvent>, Errno> {
        self.store().wait_event(self.conn, timeout)
    }
}

impl Domain {
    /// Opens a xenstore connection for this domain.
    pub fn xenstore(&self) -> SimXenstore {
        let host = self.host().clone();
        let conn = host.inner.xenstore.open(self.domid());
        SimXenstore {
            host,
            conn,
            domid: self.domid(),
        }
    }
}

impl Host {
    /// The host's xenstore (quotas, counters; drivers use [`Domain::xenstore`]).
    pub fn xenstore(&self) -> &Store {
        &self.inner.xenstore
    }
}
