//! The v1 grant-entry protocol, both halves, over a [`SharedMem`] holding the table.
//!
//! The guest half ([`write_entry`], [`try_end_access`]) is what a granting domain does to its
//! own table; [`crate::GrantTable`] uses it on every platform where the guest owns its table
//! (a unikernel with hypercalls, the simulator). The hypervisor half (`hypervisor`, public
//! with the `hypervisor` feature) is Xen's `_set_status_v1` / `reduce_status_for_pin` logic;
//! the simulator runs it for foreign maps and copies, and the loom model races it against
//! [`try_end_access`].
//!
//! These functions act on whatever view they are given. On a real grant table that view
//! comes only from [`crate::TablePlatform::table`], an `unsafe fn` reserved to
//! [`crate::GrantTable`]: no safe program can clear a peer's pin or write an entry for a ref
//! the allocator never handed out.
//!
//! All accesses to the first word of an entry (`flags` and `domid`) are 32-bit atomics. Xen
//! itself compare-and-swaps that word as a whole (`union grant_combo`); the guest's end-access
//! does the same, keeping `domid` as it was, which is equivalent to Linux's 16-bit CAS on
//! `flags` and avoids mixing access sizes on one location.

use crate::abi::{
    GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_SUB_PAGE, GTF_TYPE_MASK, GTF_WRITING,
    GntStatus, GrantRef,
};
use crate::shared::{Ordering, SharedMem};

const ENTRY: usize = 8;

fn word0(gref: GrantRef) -> usize {
    gref.0 as usize * ENTRY
}

/// Number of v1 entries a table view holds.
pub fn capacity(table: SharedMem<'_>) -> u32 {
    u32::try_from(table.len() / ENTRY).unwrap_or(u32::MAX)
}

/// Packs `flags` and `domid` as Xen's `grant_combo` word (little-endian layout of the entry).
pub const fn combo(flags: u16, domid: u16) -> u32 {
    flags as u32 | (domid as u32) << 16
}

/// Splits a `grant_combo` word into `(flags, domid)`.
pub const fn split(word: u32) -> (u16, u16) {
    (word as u16, (word >> 16) as u16)
}

/// Reads the `(flags, domid)` of an entry (for tests and diagnostics; never a basis for a
/// decision to reuse a page: that is [`try_end_access`]'s job alone).
pub fn read_combo(table: SharedMem<'_>, gref: GrantRef) -> (u16, u16) {
    split(table.load_u32(word0(gref), Ordering::Acquire))
}

/// Grants `frame` to `domid`: writes `frame`, then publishes `flags|domid` with release
/// ordering (the `wmb()` between them in the header's protocol).
///
/// The entry must be invalid (flags 0) and owned by the caller (a freshly allocated ref).
pub fn write_entry(table: SharedMem<'_>, gref: GrantRef, domid: u16, frame: u32, readonly: bool) {
    let base = word0(gref);
    table.store_u32(base + 4, frame, Ordering::Relaxed);
    let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
    table.store_u32(base, combo(flags, domid), Ordering::Release);
}

/// Tries to end a grant: succeeds, setting the flags to 0, only if the peer holds no pin
/// (`GTF_reading`/`GTF_writing` clear) at the instant of the compare-and-swap.
///
/// After `true`, Xen will refuse every new map or copy of the entry (the type is no longer
/// `GTF_permit_access`), so the page may be reused. After `false`, the page must not be reused.
#[must_use = "a failed end-access means the peer may still use the page"]
pub fn try_end_access(table: SharedMem<'_>, gref: GrantRef) -> bool {
    let off = word0(gref);
    let mut cur = table.load_u32(off, Ordering::Relaxed);
    loop {
        let (flags, _) = split(cur);
        if flags & (GTF_READING | GTF_WRITING) != 0 {
            return false;
        }
        match table.compare_exchange_u32(
            off,
            cur,
            cur & 0xFFFF_0000,
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Xen's side of the v1 protocol, as `xen/common/grant_table.c` implements it.
///
/// The hypervisor's half, not a driver's: public only with the `hypervisor` feature, which the
/// simulator (`xen-sim`) enables; the crate's own [`crate::local`] platform uses it to play
/// the peer. Like the guest half it only acts on a view the caller already holds, and no safe
/// program holds a view of a real grant table ([`crate::TablePlatform::table`] is `unsafe`).
#[cfg(feature = "hypervisor")]
pub mod hypervisor {
    pub use super::xen::*;
}

#[cfg(not(feature = "hypervisor"))]
pub(crate) mod hypervisor {
    pub(crate) use super::xen::{reduce_status, set_status};
}

mod xen {
    use super::*;

    /// How many compare-and-swap attempts Xen makes before it calls an entry unstable.
    pub const MAX_TRIES: u32 = 5;

    /// `_set_status_v1`: pin the entry for `mapper`.
    ///
    /// * `pinned`: the active entry already has pins (Xen then skips the type and domid check);
    /// * `mapflag`: a map (true) or a copy (false); maps also refuse `GTF_sub_page`;
    /// * `readonly`: a read-only pin sets only `GTF_reading`; a writable one also sets
    ///   `GTF_writing` and fails on a `GTF_readonly` entry.
    ///
    /// Fails with `GNTST_general_error` on a bad type or domid, a write pin of a read-only
    /// grant, or after [`MAX_TRIES`] failed compare-and-swaps ("unstable").
    pub fn set_status(
        table: SharedMem<'_>,
        gref: GrantRef,
        mapper: u16,
        readonly: bool,
        mapflag: bool,
        pinned: bool,
    ) -> Result<(), GntStatus> {
        let off = word0(gref);
        set_status_with(
            table.load_u32(off, Ordering::Relaxed),
            |old, new| {
                table.compare_exchange_u32(off, old, new, Ordering::SeqCst, Ordering::SeqCst)
            },
            mapper,
            readonly,
            mapflag,
            pinned,
        )
    }

    /// [`set_status`] over any compare-and-swap of the entry's first word: `first` is the word
    /// as first read, `cas(old, new)` returns the previous value (`Err` when it was not `old`).
    pub fn set_status_with(
        first: u32,
        mut cas: impl FnMut(u32, u32) -> Result<u32, u32>,
        mapper: u16,
        readonly: bool,
        mapflag: bool,
        pinned: bool,
    ) -> Result<(), GntStatus> {
        let mask = GTF_TYPE_MASK | if mapflag { GTF_SUB_PAGE } else { 0 };
        let mut scombo = first;
        let mut retries = 0;
        loop {
            let (flags, domid) = split(scombo);
            if !pinned && ((flags & mask) != GTF_PERMIT_ACCESS || domid != mapper) {
                return Err(GntStatus::GeneralError);
            }
            let mut nflags = flags | GTF_READING;
            if !readonly {
                nflags |= GTF_WRITING;
                if flags & GTF_READONLY != 0 {
                    return Err(GntStatus::GeneralError);
                }
            }
            match cas(scombo, combo(nflags, domid)) {
                Ok(_) => return Ok(()),
                Err(prev) => {
                    // Xen: `if ( retries++ == 4 ) PIN_FAIL(... "unstable")`.
                    if retries == MAX_TRIES - 1 {
                        return Err(GntStatus::GeneralError);
                    }
                    retries += 1;
                    scombo = prev;
                }
            }
        }
    }

    /// `reduce_status_for_pin`: clear `GTF_writing` when the last writable pin goes and
    /// `GTF_reading` when the last pin goes.
    pub fn reduce_status(
        table: SharedMem<'_>,
        gref: GrantRef,
        no_writers_left: bool,
        no_pins_left: bool,
    ) {
        let off = word0(gref);
        let mut clear = 0u16;
        if no_writers_left {
            clear |= GTF_WRITING;
        }
        if no_pins_left {
            clear |= GTF_READING;
        }
        if clear != 0 {
            table.fetch_and_u32(off, !(clear as u32), Ordering::SeqCst);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::hypervisor::*;
    use super::*;
    use crate::shared::SharedRegion;

    #[test]
    fn map_needs_permit_access_and_the_right_domid() {
        let r = SharedRegion::new_zeroed(4096);
        let t = r.mem();
        let g = GrantRef(9);
        assert_eq!(
            set_status(t, g, 3, true, true, false),
            Err(GntStatus::GeneralError)
        );
        write_entry(t, g, 3, 0x1234, true);
        assert_eq!(read_combo(t, g), (GTF_PERMIT_ACCESS | GTF_READONLY, 3));
        assert_eq!(t.load_u32(g.0 as usize * 8 + 4, Ordering::Relaxed), 0x1234);
        assert_eq!(
            set_status(t, g, 4, true, true, false),
            Err(GntStatus::GeneralError)
        );
        assert_eq!(
            set_status(t, g, 3, false, true, false),
            Err(GntStatus::GeneralError),
            "rw map of ro grant"
        );
        assert_eq!(set_status(t, g, 3, true, true, false), Ok(()));
        assert!(!try_end_access(t, g), "end fails while pinned");
        reduce_status(t, g, true, true);
        assert!(try_end_access(t, g));
        assert_eq!(read_combo(t, g).0, 0);
        assert_eq!(
            set_status(t, g, 3, true, true, false),
            Err(GntStatus::GeneralError),
            "no map after end"
        );
    }

    #[test]
    fn writable_pins_set_writing_and_sub_page_is_refused_for_maps_only() {
        let r = SharedRegion::new_zeroed(4096);
        let t = r.mem();
        let g = GrantRef(10);
        write_entry(t, g, 7, 1, false);
        set_status(t, g, 7, false, true, false).unwrap();
        assert_eq!(
            read_combo(t, g).0,
            GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING
        );
        reduce_status(t, g, true, false);
        assert_eq!(read_combo(t, g).0, GTF_PERMIT_ACCESS | GTF_READING);
        reduce_status(t, g, true, true);
        t.store_u32(
            g.0 as usize * 8,
            combo(GTF_PERMIT_ACCESS | GTF_SUB_PAGE, 7),
            Ordering::Relaxed,
        );
        assert_eq!(
            set_status(t, g, 7, true, true, false),
            Err(GntStatus::GeneralError)
        );
        assert_eq!(set_status(t, g, 7, true, false, false), Ok(()));
    }

    /// A guest that keeps rewriting its entry (here: toggling `GTF_PWT` between every read and
    /// compare-and-swap of the hypervisor) makes Xen give up after exactly five tries.
    #[test]
    fn an_unstable_entry_fails_after_five_tries() {
        use crate::abi::GTF_PWT;
        let valid = combo(GTF_PERMIT_ACCESS, 3);
        for succeed_on in 1..=6u32 {
            let mut calls = 0;
            let res = set_status_with(
                valid,
                |old, _new| {
                    calls += 1;
                    if calls == succeed_on {
                        Ok(old)
                    } else {
                        Err(old ^ u32::from(GTF_PWT))
                    }
                },
                3,
                true,
                true,
                false,
            );
            if succeed_on <= MAX_TRIES {
                assert_eq!(res, Ok(()), "succeeds on try {succeed_on}");
                assert_eq!(calls, succeed_on);
            } else {
                assert_eq!(res, Err(GntStatus::GeneralError), "unstable");
                assert_eq!(calls, MAX_TRIES, "Xen tries exactly five times");
            }
        }
        // A guest that invalidates the entry between the tries is caught by the re-check.
        let mut calls = 0;
        let res = set_status_with(
            valid,
            |_, _| {
                calls += 1;
                Err(0)
            },
            3,
            true,
            true,
            false,
        );
        assert_eq!((res, calls), (Err(GntStatus::GeneralError), 1));
    }
}
