//! The granting side: pages, the [`Grantor`] platform trait, the [`Granted`] typestate and the
//! reclaim queue.
//!
//! The lifecycle (DESIGN invariants 1 and 2):
//!
//! ```text
//!   Page ──grant──▶ Granted<G, A> ──end_access──▶ Ok(G::Ended)      (the page, or Released)
//!                        │                 └────▶ Err(StillInUse)   (the grant, never the page)
//!                        └──drop──▶ reclaim queue ──reclaim()──▶ ended once the peer lets go
//! ```
//!
//! There is no way to ask "is it still mapped?" (XSA-396): the only question is the
//! end-access itself, which either ends the grant atomically or fails.
//!
//! # Why safe code cannot get a page back without a successful end-access
//!
//! * The raw operations ([`Grantor::grant_page`], [`Grantor::try_end`],
//!   [`Grantor::finish_end`]) are `unsafe fn`s of an `unsafe trait`. A safe program can neither
//!   call them nor implement [`Grantor`] (an implementation needs `unsafe impl`), so the only
//!   raw grant records (`G::Grant`) that exist are the ones inside a [`Granted`] or inside a
//!   platform's [`ReclaimQueue`]; neither hands one out.
//! * [`ReclaimQueue`] has no public way in or out: [`Granted`]'s drop puts a grant in, and
//!   [`Grantor::reclaim`] takes one out only after its end succeeded.
//! * Every step that can unwind holds the grant where the unwind puts it back in the reclaim
//!   queue: [`Granted::end_access`] asks the platform with the grant still inside the
//!   `Granted` (whose drop queues it), and [`Grantor::reclaim`] keeps the grants it is working
//!   on in a guard that returns them to the queue. A panic in a platform call never drops a
//!   live grant with its page.
#![allow(unsafe_code)] // The `unsafe` raw methods of `Grantor`: declared here, called with their argument.

use crate::abi::{Domid, Frame, GrantRef};
use crate::access::{Access, ReadOnly, Writable};
use crate::error::GrantError;
use crate::shared::SharedMem;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::marker::PhantomData;

/// A 4 KiB page of this domain's memory, page-aligned, private while it is not granted.
///
/// Its contents are reached through a [`SharedMem`] view even while private, so that the
/// same code works on memory a peer may later see.
pub trait Page: Send + 'static {
    /// The frame number the platform (and so the hypervisor) knows this page by.
    fn frame(&self) -> Frame;
    /// The page's 4096 bytes.
    fn mem(&self) -> SharedMem<'_, Writable>;
}

/// The granting half of a platform: allocates pages, grants them, ends grants.
///
/// Drivers are generic over it and use it only through [`Granted`] and
/// [`reclaim`](Grantor::reclaim); the raw operations are `unsafe` and only this crate's
/// typestate calls them. See the crate documentation for how the simulator, a unikernel and
/// Linux's `/dev/xen/gntalloc` implement it.
///
/// A `Grantor` is a cheap handle (clone it freely): every clone shares one table, one ref
/// allocator and one reclaim queue.
///
/// # Safety
///
/// An implementation is trusted by [`Granted`] to keep invariants 1 and 2. It must:
///
/// * grant in [`grant_page`](Grantor::grant_page) only the page it was given, under a grant
///   reference no other live grant of this platform uses, to exactly the peer and access asked
///   for; on failure hand the page back untouched and leave nothing granted; never unwind
///   after the grant became visible to the hypervisor (the page would be dropped while
///   granted);
/// * in [`try_end`](Grantor::try_end) return `true` only if, at that instant, no peer holds a
///   mapping or copy of the grant and no later map or copy can succeed (Xen's end-access
///   compare-and-swap); `true` again for a grant already ended; `false` otherwise, leaving the
///   grant live and untouched;
/// * in [`finish_end`](Grantor::finish_end) turn an ended grant into what the caller gets
///   back, freeing its reference for reuse only then;
/// * return from [`grant_mem`](Grantor::grant_mem) a view of exactly the granted memory;
/// * return the same [`ReclaimQueue`] from every clone, and keep the provided
///   [`reclaim`](Grantor::reclaim) (do not override it).
pub unsafe trait Grantor: Clone + Send + Sync + 'static {
    /// A private page.
    type Page: Page;
    /// The platform's record of one live grant: its ref and its memory.
    type Grant: Send + 'static;
    /// What a successful end-access hands back: the page where the platform can prove the end
    /// (its own grant table), or a token where the kernel ends it later (gntalloc).
    type Ended: Send + 'static;

    /// This domain's id.
    fn domid(&self) -> Domid;
    /// A fresh, zeroed private page.
    fn alloc_page(&self) -> Result<Self::Page, GrantError>;
    /// Grants `page` to `peer`. On failure the page comes back untouched.
    ///
    /// # Safety
    ///
    /// Only the typestate calls this: the caller must keep the returned grant in a [`Granted`]
    /// (or the reclaim queue) until [`try_end`](Grantor::try_end) returned `true` for it, and
    /// never drop it before.
    unsafe fn grant_page(
        &self,
        page: Self::Page,
        peer: Domid,
        readonly: bool,
    ) -> Result<Self::Grant, (Self::Page, GrantError)>;
    /// The reference of a live grant.
    fn grant_ref(grant: &Self::Grant) -> GrantRef;
    /// The memory of a live grant (the peer may be using it).
    fn grant_mem(grant: &Self::Grant) -> SharedMem<'_, Writable>;
    /// Tries to end a grant: `true` if no peer had it pinned and no new pin can be taken
    /// (the grant is ended), `false` if the peer still uses it (nothing changed).
    ///
    /// # Safety
    ///
    /// `grant` must have been made by this grantor (or a clone of it).
    unsafe fn try_end(&self, grant: &mut Self::Grant) -> bool;
    /// What an ended grant gives back (the page, or the platform's token).
    ///
    /// # Safety
    ///
    /// [`try_end`](Grantor::try_end) must have returned `true` for `grant`.
    unsafe fn finish_end(&self, grant: Self::Grant) -> Self::Ended;
    /// Where grants that could not be ended wait.
    fn reclaim_queue(&self) -> &ReclaimQueue<Self::Grant>;

    /// Retries every grant in the reclaim queue; those that end are returned, the others stay.
    ///
    /// Drivers call this from their poll loop (or a platform timer does); a grant leaves the
    /// queue only through a successful end. If a platform call panics, every grant not yet
    /// ended is back in the queue before the panic goes on.
    fn reclaim(&self) -> Reclaimed<Self::Ended> {
        let q = self.reclaim_queue();
        let mut work = PutBack {
            queue: q,
            grants: q.take_all(),
        };
        let mut ended = Vec::new();
        let mut still_busy = 0;
        let mut i = 0;
        while i < work.grants.len() {
            // SAFETY: every grant in this grantor's queue was made by it (only `Granted`'s
            // drop and this loop put grants there).
            if unsafe { self.try_end(&mut work.grants[i]) } {
                if let Some(grant) = work.grants.remove(i) {
                    // SAFETY: `try_end` just returned true for this grant.
                    ended.push(unsafe { self.finish_end(grant) });
                }
            } else {
                still_busy += 1;
                i += 1;
            }
        }
        q.note_reclaimed(ended.len());
        drop(work);
        Reclaimed { ended, still_busy }
    }
}

/// The grants a [`Grantor::reclaim`] pass is working on: whatever is left when it goes out of
/// scope, normally or by unwinding, goes back to the queue.
struct PutBack<'a, T> {
    queue: &'a ReclaimQueue<T>,
    grants: VecDeque<T>,
}

impl<T> Drop for PutBack<'_, T> {
    fn drop(&mut self) {
        for grant in self.grants.drain(..) {
            self.queue.push_back(grant);
        }
    }
}

/// What one [`Grantor::reclaim`] pass did.
#[derive(Debug)]
#[must_use = "reclaimed pages are handed back here"]
pub struct Reclaimed<E> {
    /// Grants ended in this pass, with what their end gave back.
    pub ended: Vec<E>,
    /// Grants still pinned by a peer, left in the queue.
    pub still_busy: usize,
}

/// Counters of a reclaim queue, for reporting.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ReclaimStats {
    /// Grants waiting now.
    pub pending: usize,
    /// Grants ever queued.
    pub queued_total: u64,
    /// Grants ever ended from the queue.
    pub reclaimed_total: u64,
}

/// Grants that could not be ended (the peer still had them pinned) or were dropped while live.
///
/// Nothing leaves it except through a successful end-access (see [`Grantor::reclaim`]).
pub struct ReclaimQueue<T> {
    inner: spin::Mutex<(VecDeque<T>, ReclaimStats)>,
}

impl<T> Default for ReclaimQueue<T> {
    fn default() -> Self {
        ReclaimQueue {
            inner: spin::Mutex::new((VecDeque::new(), ReclaimStats::default())),
        }
    }
}

impl<T> fmt::Debug for ReclaimQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReclaimQueue")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T> ReclaimQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a grant that must not be reused yet (a [`Granted`] dropped while live).
    pub(crate) fn push(&self, grant: T) {
        let mut g = self.inner.lock();
        g.0.push_back(grant);
        g.1.queued_total += 1;
        g.1.pending = g.0.len();
    }

    fn push_back(&self, grant: T) {
        let mut g = self.inner.lock();
        g.0.push_back(grant);
        g.1.pending = g.0.len();
    }

    fn take_all(&self) -> VecDeque<T> {
        let mut g = self.inner.lock();
        g.1.pending = 0;
        core::mem::take(&mut g.0)
    }

    fn note_reclaimed(&self, n: usize) {
        self.inner.lock().1.reclaimed_total += n as u64;
    }

    /// Grants waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().0.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters.
    pub fn stats(&self) -> ReclaimStats {
        self.inner.lock().1
    }
}

/// A page granted to another domain, with access `A` for the peer.
///
/// The page was moved in and comes back only from an [`end_access`](Granted::end_access) that
/// succeeded. Dropping a `Granted` does not free anything: the grant goes to the grantor's
/// reclaim queue. Not `Clone`: one grant, one owner.
///
/// ```
/// use xen_gnttab::{Domid, Granted, Grantor, ReadOnly, local::LocalTable};
///
/// let table = LocalTable::new_local(Domid(1), 64);
/// let page = table.alloc_page().unwrap();
/// let granted = Granted::<_, ReadOnly>::new(&table, page, Domid(2)).unwrap();
/// granted.mem().write_bytes(0, b"hello");
/// // Nobody mapped it: the end succeeds and the page comes back.
/// let page = granted.end_access().unwrap();
/// # let _ = page;
/// ```
pub struct Granted<G: Grantor, A: Access> {
    /// Always `Some` while the value exists; taken only by `end_access` (which consumes
    /// `self`) and by `drop`.
    grant: Option<G::Grant>,
    grantor: G,
    peer: Domid,
    _access: PhantomData<A>,
}

impl<G: Grantor, A: Access> fmt::Debug for Granted<G, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Granted")
            .field("gref", &self.gref())
            .field("peer", &self.peer)
            .field("access", &A::NAME)
            .finish()
    }
}

impl<G: Grantor, A: Access> Granted<G, A> {
    fn from_grant(grantor: G, grant: G::Grant, peer: Domid) -> Self {
        Granted {
            grant: Some(grant),
            grantor,
            peer,
            _access: PhantomData,
        }
    }

    fn live(&self) -> &G::Grant {
        match &self.grant {
            Some(g) => g,
            None => unreachable!("a Granted always holds its grant until consumed"),
        }
    }

    /// Grants `page` to `peer`; on failure the page comes back with the error.
    pub fn new(grantor: &G, page: G::Page, peer: Domid) -> Result<Self, (G::Page, GrantError)> {
        if !peer.is_real() {
            return Err((page, GrantError::InvalidDomain(peer)));
        }
        // SAFETY: the grant goes straight into a `Granted`, which gives it up only to a
        // `try_end` that returned true (`end_access`) or to the reclaim queue (drop).
        let grant = unsafe { grantor.grant_page(page, peer, A::READONLY) }?;
        Ok(Self::from_grant(grantor.clone(), grant, peer))
    }

    /// Grants every page to `peer`, all or nothing: on failure the grants already made go to
    /// the reclaim queue (a peer may have guessed their refs) and the pages not yet granted
    /// come back with the error.
    pub fn new_many(
        grantor: &G,
        pages: Vec<G::Page>,
        peer: Domid,
    ) -> Result<Vec<Self>, (Vec<G::Page>, GrantError)> {
        let mut out = Vec::with_capacity(pages.len());
        let mut rest = pages.into_iter();
        while let Some(page) = rest.next() {
            match Self::new(grantor, page, peer) {
                Ok(g) => out.push(g),
                Err((page, e)) => {
                    let mut back = alloc::vec![page];
                    back.extend(rest);
                    drop(out);
                    return Err((back, e));
                }
            }
        }
        Ok(out)
    }

    /// The grant reference to hand to the peer.
    pub fn gref(&self) -> GrantRef {
        G::grant_ref(self.live())
    }

    /// The domain the page is granted to.
    pub fn peer(&self) -> Domid {
        self.peer
    }

    /// The granted memory. The peer may be writing it: copy out, validate, never trust.
    pub fn mem(&self) -> SharedMem<'_, Writable> {
        G::grant_mem(self.live())
    }

    /// Ends the grant. Succeeds only if the peer has no pin on it at that instant; then no
    /// later map or copy can succeed, and the page (or the platform's token) comes back.
    /// Otherwise the grant comes back, still live.
    pub fn end_access(mut self) -> Result<G::Ended, StillInUse<G, A>> {
        let Some(grant) = self.grant.as_mut() else {
            unreachable!("a Granted always holds its grant until consumed")
        };
        // SAFETY: the grant was made by `self.grantor` (`new`). It stays inside `self` while
        // the platform looks at it, so an unwind from `try_end` drops `self`, whose `Drop`
        // queues the grant for reclaim: it is never dropped live.
        if unsafe { self.grantor.try_end(grant) } {
            let Some(grant) = self.grant.take() else {
                unreachable!("a Granted always holds its grant until consumed")
            };
            // SAFETY: `try_end` returned true for this grant just now.
            Ok(unsafe { self.grantor.finish_end(grant) })
        } else {
            Err(StillInUse(self))
        }
    }

    /// Gives up on ending the grant now: it goes to the reclaim queue (the same as dropping it).
    pub fn into_reclaim(self) {
        drop(self)
    }
}

impl<G: Grantor, A: Access> Drop for Granted<G, A> {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            self.grantor.reclaim_queue().push(grant);
        }
    }
}

/// A grant whose end-access failed because the peer still has it pinned.
///
/// It holds the live grant, never the page. Retry with [`StillInUse::retry`], or drop it:
/// the grant then waits in the reclaim queue.
pub struct StillInUse<G: Grantor, A: Access>(Granted<G, A>);

impl<G: Grantor, A: Access> StillInUse<G, A> {
    /// The grant, still live.
    pub fn into_granted(self) -> Granted<G, A> {
        self.0
    }

    /// The grant reference that is still in use.
    pub fn gref(&self) -> GrantRef {
        self.0.gref()
    }

    /// Tries the end-access again.
    pub fn retry(self) -> Result<G::Ended, StillInUse<G, A>> {
        self.0.end_access()
    }
}

impl<G: Grantor, A: Access> fmt::Debug for StillInUse<G, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StillInUse").field(&self.0).finish()
    }
}

impl<G: Grantor, A: Access> fmt::Display for StillInUse<G, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "grant {} is still in use by {}",
            self.0.gref(),
            self.0.peer
        )
    }
}

impl<G: Grantor, A: Access> core::error::Error for StillInUse<G, A> {}

/// A read-only grant.
pub type GrantedRo<G> = Granted<G, ReadOnly>;
/// A writable grant.
pub type GrantedRw<G> = Granted<G, Writable>;
