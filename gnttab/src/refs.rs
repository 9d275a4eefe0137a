//! The grant-reference allocator.
//!
//! A free list over the refs of a v1 table. Refs `0..8` (`GNTTAB_NR_RESERVED_ENTRIES`: console,
//! xenstore) are never handed out. A ref leaves the allocator as an [`OwnedRef`], which is not
//! `Copy` or `Clone` and goes back only by value: a ref cannot be freed twice, nor while a grant
//! made with it is still live (the grant owns it until its end-access succeeds). Each ref
//! remembers which allocator it came from, and no other allocator takes it.

use crate::abi::{GrantRef, NR_RESERVED_ENTRIES};
use crate::error::GrantError;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

/// A grant reference owned by whoever holds this value. Not `Copy`, not `Clone`.
#[derive(Debug, PartialEq, Eq)]
pub struct OwnedRef {
    gref: GrantRef,
    owner: u32,
}

impl OwnedRef {
    /// The reference number.
    pub fn gref(&self) -> GrantRef {
        self.gref
    }
}

/// Free list of grant references for a table of `capacity` entries.
#[derive(Debug)]
pub struct RefAllocator {
    free: Vec<u32>,
    capacity: u32,
    id: u32,
}

static NEXT_ALLOCATOR: AtomicU32 = AtomicU32::new(1);

impl RefAllocator {
    /// An allocator for refs `8..capacity`.
    pub fn new(capacity: u32) -> Self {
        // Pop from the end: hand out low refs first, as Xen guests usually do.
        let free = (NR_RESERVED_ENTRIES..capacity.max(NR_RESERVED_ENTRIES))
            .rev()
            .collect();
        let id = NEXT_ALLOCATOR.fetch_add(1, Ordering::Relaxed);
        RefAllocator { free, capacity, id }
    }

    /// Entries in the table, reserved ones included.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Refs that can still be allocated.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Takes a free ref.
    pub fn alloc(&mut self) -> Result<OwnedRef, GrantError> {
        let owner = self.id;
        self.free
            .pop()
            .map(|r| OwnedRef {
                gref: GrantRef(r),
                owner,
            })
            .ok_or(GrantError::NoFreeRefs)
    }

    /// Takes `n` refs, all or none.
    pub fn alloc_many(&mut self, n: usize) -> Result<Vec<OwnedRef>, GrantError> {
        if self.free.len() < n {
            return Err(GrantError::NoFreeRefs);
        }
        Ok((0..n).filter_map(|_| self.alloc().ok()).collect())
    }

    /// Gives a ref back. A ref cannot be freed twice (freeing consumes it); a ref of another
    /// allocator is refused and handed back.
    pub fn free(&mut self, r: OwnedRef) -> Result<(), OwnedRef> {
        if r.owner != self.id {
            return Err(r);
        }
        self.free.push(r.gref.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_refs_are_never_handed_out_and_exhaustion_is_an_error() {
        let mut a = RefAllocator::new(16);
        assert_eq!(a.available(), 8);
        let refs: Vec<_> = (0..8).map(|_| a.alloc().unwrap()).collect();
        assert!(refs.iter().all(|r| r.gref().0 >= 8 && r.gref().0 < 16));
        assert_eq!(a.alloc(), Err(GrantError::NoFreeRefs));
        let mut seen: Vec<u32> = refs.iter().map(|r| r.gref().0).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 8, "refs are unique");
        for r in refs {
            a.free(r).unwrap();
        }
        assert_eq!(a.available(), 8);
        assert_eq!(a.alloc_many(9), Err(GrantError::NoFreeRefs));
        assert_eq!(a.available(), 8, "a failed alloc_many takes nothing");
        assert_eq!(a.alloc_many(8).unwrap().len(), 8);
    }

    #[test]
    fn a_ref_of_another_allocator_is_refused() {
        let mut a = RefAllocator::new(16);
        let mut b = RefAllocator::new(16);
        let r = a.alloc().unwrap();
        let r = b.free(r).unwrap_err();
        assert_eq!(b.available(), 8, "b's free list did not grow");
        assert_eq!(b.alloc_many(8).unwrap().len(), 8);
        assert!(a.free(r).is_ok());
    }
}
