//! The grant-reference allocator.
//!
//! A free list over the refs of a v1 table. Refs `0..8` (`GNTTAB_NR_RESERVED_ENTRIES`: console,
//! xenstore) are never handed out. A ref leaves the allocator as an [`OwnedRef`], which is not
//! `Copy` or `Clone` and goes back only by value: a ref cannot be freed twice, nor while a grant
//! made with it is still live (the grant owns it until its end-access succeeds). Each ref
//! remembers which allocator it came from, and no other allocator takes it: allocator ids are
//! 64-bit and never wrap (the counter refuses to go past its last value, which at one
//! allocator a nanosecond would take five centuries to reach), so no two allocators of one
//! process share an id.

use crate::abi::{GrantRef, NR_RESERVED_ENTRIES};
use crate::error::GrantError;
use alloc::vec::Vec;

/// A grant reference owned by whoever holds this value. Not `Copy`, not `Clone`.
#[derive(Debug, PartialEq, Eq)]
pub struct OwnedRef {
    gref: GrantRef,
    owner: u64,
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
    id: u64,
}

/// The next allocator id. A lock rather than an `AtomicU64`: not every `no_std` target has
/// 64-bit atomics, and an allocator is made once per grant table.
static NEXT_ALLOCATOR: spin::Mutex<u64> = spin::Mutex::new(1);

/// A fresh allocator id, never one handed out before.
fn next_id() -> u64 {
    take_id(&mut NEXT_ALLOCATOR.lock())
}

/// Takes the id `next` holds and advances it; refuses (panics) rather than wrap and hand an
/// id out twice. Five centuries at one allocator a nanosecond: a panic no peer can cause.
fn take_id(next: &mut u64) -> u64 {
    let id = *next;
    *next = id
        .checked_add(1)
        .expect("grant-ref allocator ids exhausted (2^64 allocators made)");
    id
}

impl RefAllocator {
    /// An allocator for refs `8..capacity`.
    pub fn new(capacity: u32) -> Self {
        // Pop from the end: hand out low refs first, as Xen guests usually do.
        let free = (NR_RESERVED_ENTRIES..capacity.max(NR_RESERVED_ENTRIES))
            .rev()
            .collect();
        let id = next_id();
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
    fn allocator_ids_do_not_wrap() {
        // Past 2^32 allocators (where a 32-bit id wrapped and two allocators shared one),
        // every id is still new and a ref is still refused by the other allocator.
        {
            let mut next = NEXT_ALLOCATOR.lock();
            *next = (*next).max(u64::from(u32::MAX));
        }
        let mut a = RefAllocator::new(16);
        let mut b = RefAllocator::new(16);
        assert!(a.id > u64::from(u32::MAX) - 1 && b.id > a.id);
        assert_ne!(a.id as u32, 0, "sanity: the test is past the 32-bit range");
        let r = a.alloc().unwrap();
        let r = b.free(r).unwrap_err();
        assert!(a.free(r).is_ok());
    }

    #[test]
    fn the_id_counter_refuses_to_wrap() {
        let mut next = u64::from(u32::MAX);
        assert_eq!(take_id(&mut next), u64::from(u32::MAX));
        assert_eq!(take_id(&mut next), 1 << 32, "past 2^32, not back to 0");
        let mut last = u64::MAX;
        let r = std::panic::catch_unwind(move || take_id(&mut last));
        assert!(r.is_err(), "the last id is never handed out to wrap");
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
