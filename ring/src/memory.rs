//! The memory a ring lives in.
//!
//! A ring reaches its memory only through [`RingMemory`], whose methods are built on
//! [`SharedMem`] (atomics for the indices, volatile copies for entries): no Rust reference is
//! ever formed into the ring (DESIGN invariant 7), and under `cfg(loom)` every access is a loom
//! access.
//!
//! Two layouts are supported:
//!
//! * **contiguous**: one [`SharedMem`] view covers the whole ring (a single granted page, a
//!   [`SharedRegion`], a contiguous mapping of several pages);
//! * **a list of pages** ([`PageRing`]): 1 to 16 separate 4 KiB pages (one grant each, as
//!   blkif's `ring-ref0..N`), where an entry may straddle a page boundary (112-byte blkif
//!   entries do); such an entry is copied in two volatile pieces.
//!
//! The ring *owns* its memory value, so a frontend keeps its granted page(s) alive exactly as
//! long as the ring: a `FrontRing` over a `Granted` page or a `PageRing<Granted<..>>` gives
//! them back with [`FrontRing::into_parts`](crate::FrontRing::into_parts).
//!
//! [`FrontMemory`] marks memory a frontend may initialise: its own pages. It is not
//! implemented for foreign mappings nor for bare [`SharedMem`] views (which could be views of
//! a mapping), so a backend cannot build a [`FrontRing`](crate::FrontRing) over the
//! frontend's page (DESIGN invariant 5).

use crate::abi::{HEADER_SIZE, MAX_RING_PAGES, PAGE_SIZE, entry_offset};
use crate::protocol::{Protocol, slot_size};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;
use xen_gnttab::{
    ForeignMap, ForeignMapper, Granted, Grantor, SharedMem, SharedRegion, SharedSlots, SlotLayout,
    Writable,
};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Memory a ring lives in, reached only through [`SharedMem`] accessors.
///
/// Offsets are byte offsets from the start of the ring (the header). The ring only passes
/// offsets it computed from its own validated size, never peer data.
pub trait RingMemory {
    /// The size of the ring memory in bytes (header included).
    fn ring_bytes(&self) -> usize;
    /// A view of the first bytes of the ring; at least the 64-byte header.
    fn header(&self) -> SharedMem<'_, Writable>;
    /// Copies `dst.len()` bytes at `off` into private memory, each byte read once (volatile).
    fn read_at(&self, off: usize, dst: &mut [u8]);
    /// Copies `src` into the ring at `off` (volatile).
    fn write_at(&self, off: usize, src: &[u8]);
    /// The whole ring as one view, if it is contiguous memory: batch operations then check
    /// the entries' bounds once per batch instead of once per entry. `None` (the default)
    /// makes every entry go through [`read_at`](Self::read_at) and
    /// [`write_at`](Self::write_at).
    #[inline]
    fn contiguous(&self) -> Option<SharedMem<'_, Writable>> {
        None
    }
}

/// Memory that belongs to the frontend, which alone may initialise a ring in it.
///
/// Implement it only for memory your frontend owns (its pages, granted or not yet). Not
/// implemented for foreign mappings or [`SharedMem`] views.
pub trait FrontMemory: RingMemory {}

impl RingMemory for SharedMem<'_, Writable> {
    #[inline]
    fn ring_bytes(&self) -> usize {
        self.len()
    }
    #[inline]
    fn header(&self) -> SharedMem<'_, Writable> {
        *self
    }
    #[inline(always)]
    fn read_at(&self, off: usize, dst: &mut [u8]) {
        self.read_bytes(off, dst)
    }
    #[inline(always)]
    fn write_at(&self, off: usize, src: &[u8]) {
        self.write_bytes(off, src)
    }
    #[inline]
    fn contiguous(&self) -> Option<SharedMem<'_, Writable>> {
        Some(*self)
    }
}

/// Implements [`RingMemory`] for a type with a method giving its whole contiguous view.
macro_rules! contiguous {
    ($(impl[$($g:tt)*] $ty:ty => |$s:ident| $view:expr;)*) => {$(
        impl<$($g)*> RingMemory for $ty {
            #[inline]
            fn ring_bytes(&self) -> usize {
                let $s = self;
                $view.len()
            }
            #[inline]
            fn header(&self) -> SharedMem<'_, Writable> {
                let $s = self;
                $view
            }
            #[inline(always)]
            fn read_at(&self, off: usize, dst: &mut [u8]) {
                let $s = self;
                $view.read_bytes(off, dst)
            }
            #[inline(always)]
            fn write_at(&self, off: usize, src: &[u8]) {
                let $s = self;
                $view.write_bytes(off, src)
            }
            #[inline]
            fn contiguous(&self) -> Option<SharedMem<'_, Writable>> {
                let $s = self;
                Some($view)
            }
        }
    )*};
}

contiguous! {
    impl[] SharedRegion => |s| s.mem();
    impl[G: Grantor] Granted<G, Writable> => |s| s.mem();
    impl[M: ForeignMapper] ForeignMap<M, Writable> => |s| s.mem();
}

impl FrontMemory for SharedRegion {}
impl<G: Grantor> FrontMemory for Granted<G, Writable> {}

macro_rules! forward {
    ($($ptr:ident),*) => {$(
        impl<M: RingMemory + ?Sized> RingMemory for $ptr<M> {
            #[inline]
            fn ring_bytes(&self) -> usize {
                (**self).ring_bytes()
            }
            #[inline]
            fn header(&self) -> SharedMem<'_, Writable> {
                (**self).header()
            }
            #[inline(always)]
            fn read_at(&self, off: usize, dst: &mut [u8]) {
                (**self).read_at(off, dst)
            }
            #[inline(always)]
            fn write_at(&self, off: usize, src: &[u8]) {
                (**self).write_at(off, src)
            }
            #[inline]
            fn contiguous(&self) -> Option<SharedMem<'_, Writable>> {
                (**self).contiguous()
            }
        }
        impl<M: FrontMemory + ?Sized> FrontMemory for $ptr<M> {}
    )*};
}
forward!(Box, Arc);

impl<M: RingMemory + ?Sized> RingMemory for &M {
    #[inline]
    fn ring_bytes(&self) -> usize {
        (**self).ring_bytes()
    }
    #[inline]
    fn header(&self) -> SharedMem<'_, Writable> {
        (**self).header()
    }
    #[inline(always)]
    fn read_at(&self, off: usize, dst: &mut [u8]) {
        (**self).read_at(off, dst)
    }
    #[inline(always)]
    fn write_at(&self, off: usize, src: &[u8]) {
        (**self).write_at(off, src)
    }
    #[inline]
    fn contiguous(&self) -> Option<SharedMem<'_, Writable>> {
        (**self).contiguous()
    }
}
impl<M: FrontMemory + ?Sized> FrontMemory for &M {}

/// One 4 KiB page of a [`PageRing`].
pub trait RingPage {
    /// The page's memory (must be exactly [`PAGE_SIZE`] bytes; [`PageRing::new`] checks).
    fn page(&self) -> SharedMem<'_, Writable>;
}

impl<P: RingPage + ?Sized> RingPage for &P {
    fn page(&self) -> SharedMem<'_, Writable> {
        (**self).page()
    }
}
impl RingPage for SharedMem<'_, Writable> {
    fn page(&self) -> SharedMem<'_, Writable> {
        *self
    }
}
impl RingPage for SharedRegion {
    fn page(&self) -> SharedMem<'_, Writable> {
        self.mem()
    }
}
impl<G: Grantor> RingPage for Granted<G, Writable> {
    fn page(&self) -> SharedMem<'_, Writable> {
        self.mem()
    }
}
impl<M: ForeignMapper> RingPage for ForeignMap<M, Writable> {
    fn page(&self) -> SharedMem<'_, Writable> {
        self.mem()
    }
}

/// Why pages could not form a [`PageRing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageListError {
    /// A ring spans 1 to 16 pages.
    #[error("a ring spans 1 to {MAX_RING_PAGES} pages, not {0}")]
    PageCount(usize),
    /// Page `index` is not exactly one page long.
    #[error("ring page {index} is {len} bytes, not {PAGE_SIZE}")]
    PageSize {
        /// Which page.
        index: usize,
        /// Its length.
        len: usize,
    },
}

/// A ring over a list of separate pages (one grant or mapping each), in ring order.
///
/// Entries may straddle page boundaries; such an entry is copied in two volatile pieces,
/// still reading every byte exactly once.
#[derive(Debug)]
pub struct PageRing<P> {
    pages: Vec<P>,
}

impl<P: RingPage> PageRing<P> {
    /// Checks that there are 1 to 16 pages of exactly 4 KiB each.
    pub fn new(pages: Vec<P>) -> Result<Self, (Vec<P>, PageListError)> {
        if pages.is_empty() || pages.len() > MAX_RING_PAGES {
            let n = pages.len();
            return Err((pages, PageListError::PageCount(n)));
        }
        if let Some((index, len)) = pages
            .iter()
            .map(|p| p.page().len())
            .enumerate()
            .find(|&(_, len)| len != PAGE_SIZE)
        {
            return Err((pages, PageListError::PageSize { index, len }));
        }
        Ok(PageRing { pages })
    }

    /// The pages, in ring order.
    pub fn pages(&self) -> &[P] {
        &self.pages
    }

    /// Gives the pages back.
    pub fn into_pages(self) -> Vec<P> {
        self.pages
    }

    /// Calls `f(page view, offset in page, range of the buffer)` for each page piece of
    /// `[off, off + len)`.
    #[inline]
    fn pieces(
        &self,
        off: usize,
        len: usize,
        mut f: impl FnMut(SharedMem<'_, Writable>, usize, usize, usize),
    ) {
        let mut done = 0;
        while done < len {
            let at = off + done;
            let (page, in_page) = (at / PAGE_SIZE, at % PAGE_SIZE);
            let n = (len - done).min(PAGE_SIZE - in_page);
            f(self.pages[page].page(), in_page, done, done + n);
            done += n;
        }
    }
}

impl<P: RingPage> RingMemory for PageRing<P> {
    fn ring_bytes(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }
    #[inline]
    fn header(&self) -> SharedMem<'_, Writable> {
        self.pages[0].page()
    }
    #[inline]
    fn read_at(&self, off: usize, dst: &mut [u8]) {
        self.pieces(off, dst.len(), |m, o, a, b| m.read_bytes(o, &mut dst[a..b]))
    }
    #[inline]
    fn write_at(&self, off: usize, src: &[u8]) {
        self.pieces(off, src.len(), |m, o, a, b| m.write_bytes(o, &src[a..b]))
    }
    /// A ring of one page is contiguous; entries of a longer one may straddle pages.
    #[inline]
    fn contiguous(&self) -> Option<SharedMem<'_, Writable>> {
        match &self.pages[..] {
            [one] => Some(one.page()),
            _ => None,
        }
    }
}

/// The slot layout of protocol `P`'s ring: [`slot_size`] bytes apart.
pub(crate) struct SlotOf<P>(PhantomData<P>);

impl<P: Protocol> SlotLayout for SlotOf<P> {
    const STRIDE: usize = slot_size::<P>();
}

/// A ring's entries for the length of one batch: when the memory is contiguous, a
/// [`SharedSlots`] view whose bounds were checked once (then each entry is an unrolled copy
/// at `index & mask`); otherwise each entry goes through [`RingMemory::read_at`] /
/// [`RingMemory::write_at`].
pub(crate) enum Entries<'a, P: Protocol, M> {
    Flat(SharedSlots<'a, SlotOf<P>>),
    Paged(&'a M, u32),
}

impl<'a, P: Protocol, M: RingMemory> Entries<'a, P, M> {
    /// The `size` entries of the ring in `mem` (`size` from the validated layout).
    #[inline]
    pub(crate) fn new(mem: &'a M, size: u32) -> Self {
        match mem.contiguous().and_then(|m| m.slots(HEADER_SIZE, size)) {
            Some(slots) => Entries::Flat(slots),
            None => Entries::Paged(mem, size - 1),
        }
    }

    /// Copies the request or response in slot `index` (masked) out, once.
    #[inline(always)]
    pub(crate) fn read<T: FromBytes + IntoBytes>(&self, index: u32) -> T {
        match self {
            Entries::Flat(slots) => slots.read(index),
            Entries::Paged(mem, mask) => {
                let mut v = T::new_zeroed();
                mem.read_at(
                    entry_offset(index & mask, slot_size::<P>()),
                    v.as_mut_bytes(),
                );
                v
            }
        }
    }

    /// Copies `v` into slot `index` (masked), once.
    #[inline(always)]
    pub(crate) fn write<T: IntoBytes + Immutable>(&self, index: u32, v: &T) {
        match self {
            Entries::Flat(slots) => slots.write(index, v),
            Entries::Paged(mem, mask) => {
                mem.write_at(entry_offset(index & mask, slot_size::<P>()), v.as_bytes())
            }
        }
    }
}

impl<P: RingPage + FrontMemory> FrontMemory for PageRing<P> {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn page_ring_checks_pages_and_straddles() {
        let err = PageRing::<SharedRegion>::new(Vec::new()).unwrap_err();
        assert_eq!(err.1, PageListError::PageCount(0));
        let err = PageRing::new(alloc::vec![SharedRegion::new_zeroed(2048)]).unwrap_err();
        assert_eq!(
            err.1,
            PageListError::PageSize {
                index: 0,
                len: 2048
            }
        );
        let many = (0..17)
            .map(|_| SharedRegion::new_zeroed(PAGE_SIZE))
            .collect();
        assert_eq!(
            PageRing::new(many).unwrap_err().1,
            PageListError::PageCount(17)
        );

        let ring = PageRing::new(
            (0..3)
                .map(|_| SharedRegion::new_zeroed(PAGE_SIZE))
                .collect(),
        )
        .unwrap();
        let data: [u8; 112] = core::array::from_fn(|i| i as u8);
        ring.write_at(PAGE_SIZE - 50, &data);
        let mut back = [0u8; 112];
        ring.read_at(PAGE_SIZE - 50, &mut back);
        assert_eq!(back, data);
        let mut tail = [0u8; 62];
        ring.pages()[1].mem().read_bytes(0, &mut tail);
        assert_eq!(tail[..], data[50..]);
        assert_eq!(ring.ring_bytes(), 3 * PAGE_SIZE);
    }
}
