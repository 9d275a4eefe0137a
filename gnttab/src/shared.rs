//! The shared-memory accessor: the only way this project touches memory a peer can write.
//!
//! DESIGN invariant 7: never form a Rust reference (`&T`, `&[u8]`) into memory another domain
//! may write concurrently. [`SharedMem`] is a bounds-checked view of such memory that offers
//! only atomic loads, stores and read-modify-writes, and volatile copies into and out of
//! private memory. A value copied out is a private snapshot: validate it, then use it, and never
//! read the shared copy again (XSA-155).
//!
//! Under `cfg(loom)` the same API is backed by loom atomics so that every lock-free protocol
//! built on it (end-access against the hypervisor's map, ring indices, vchan notify bytes) can
//! be model-checked without changing a line of the protocol code.
//!
//! The access type parameter says what *we* may do: a [`SharedMem<ReadOnly>`] has no store
//! methods, so a read-only foreign mapping cannot be written through (DESIGN invariant 3).
//!
//! # Offsets
//!
//! Offsets and lengths are the caller's own (constants, or values already validated); an
//! offset out of bounds or a misaligned atomic is a bug in the caller and panics. Never pass a
//! peer-controlled value without checking it first: use [`SharedMem::get`] for a fallible view.
#![allow(unsafe_code)] // The one module of this crate that touches raw memory.

use crate::access::{Access, ReadOnly, Writable};
use core::marker::PhantomData;
pub use core::sync::atomic::Ordering;
use zerocopy::{FromBytes, Immutable, IntoBytes};

#[cfg(not(loom))]
use core::ptr::NonNull;
#[cfg(not(loom))]
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32};
#[cfg(loom)]
use loom::sync::atomic::AtomicU32;

/// A memory fence, the `xen_mb()` of `ring.h` when given `SeqCst`.
///
/// Under `cfg(loom)` this is loom's fence, so models see it.
#[inline]
pub fn fence(order: Ordering) {
    #[cfg(not(loom))]
    core::sync::atomic::fence(order);
    #[cfg(loom)]
    loom::sync::atomic::fence(order);
}

/// A view of memory that a peer may read or write concurrently.
///
/// `'a` ties the view to whatever keeps the memory alive (a page, a mapping guard): the borrow
/// checker rejects a view that outlives it. `A` is [`Writable`] or [`ReadOnly`].
pub struct SharedMem<'a, A: Access = Writable> {
    #[cfg(not(loom))]
    ptr: NonNull<u8>,
    #[cfg(loom)]
    words: &'a [AtomicU32],
    #[cfg(loom)]
    base: usize,
    len: usize,
    _life: PhantomData<(&'a [u8], A)>,
}

impl<A: Access> Clone for SharedMem<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<A: Access> Copy for SharedMem<'_, A> {}

// SAFETY: the view gives out no references into the memory, only atomic and volatile
// accesses, which may happen from any thread; the memory itself is kept alive by `'a`.
#[cfg(not(loom))]
unsafe impl<A: Access> Send for SharedMem<'_, A> {}
// SAFETY: as for `Send`: every access through `&SharedMem` is atomic or volatile.
#[cfg(not(loom))]
unsafe impl<A: Access> Sync for SharedMem<'_, A> {}

impl<A: Access> core::fmt::Debug for SharedMem<'_, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedMem")
            .field("len", &self.len)
            .field("access", &A::NAME)
            .finish()
    }
}

#[inline(always)]
#[track_caller]
fn check(off: usize, size: usize, len: usize) {
    match off.checked_add(size) {
        Some(end) if end <= len => {}
        _ => out_of_bounds(off, size, len),
    }
}

/// The panic of [`check`], out of line so that the hot path of every access is one compare
/// and branch, with no panic arguments prepared on the way.
#[cold]
#[inline(never)]
#[track_caller]
fn out_of_bounds(off: usize, size: usize, len: usize) -> ! {
    panic!("shared memory access {off}+{size} out of bounds (len {len})")
}

#[inline]
#[track_caller]
fn check_atomic(off: usize, size: usize, len: usize) {
    check(off, size, len);
    assert!(
        off % size == 0,
        "misaligned {size}-byte atomic at offset {off}"
    );
}

#[cfg(not(loom))]
impl<'a, A: Access> SharedMem<'a, A> {
    /// Wraps raw memory shared with a peer.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads (and, for `A = Writable`, writes) of `len` bytes for all
    /// of `'a`, aligned to 8 bytes, and during `'a` that memory must be accessed by this
    /// process only through `SharedMem` (atomics and volatile copies), never through Rust
    /// references. Other domains or processes may access it in any way.
    pub unsafe fn from_raw_parts(ptr: NonNull<u8>, len: usize) -> Self {
        debug_assert!(
            ptr.as_ptr() as usize % 8 == 0,
            "shared memory must be 8-aligned"
        );
        SharedMem {
            ptr,
            len,
            _life: PhantomData,
        }
    }

    /// The address of the first byte (for platform code: hypercall arguments, `munmap`).
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    #[inline]
    fn at(&self, off: usize) -> *mut u8 {
        // SAFETY: callers checked `off <= len`, so the result stays within (or one past) the
        // allocation described by `ptr`/`len` (the contract of `from_raw_parts`).
        unsafe { self.ptr.as_ptr().add(off) }
    }

    #[inline]
    fn sub_unchecked(&self, off: usize, len: usize) -> Self {
        SharedMem {
            ptr: NonNull::new(self.at(off)).expect("in-bounds pointer is non-null"),
            len,
            _life: PhantomData,
        }
    }
}

#[cfg(loom)]
impl<'a, A: Access> SharedMem<'a, A> {
    #[inline]
    fn sub_unchecked(&self, off: usize, len: usize) -> Self {
        SharedMem {
            words: self.words,
            base: self.base + off,
            len,
            _life: PhantomData,
        }
    }

    fn word(&self, off: usize) -> (&'a AtomicU32, u32) {
        let abs = self.base + off;
        (&self.words[abs / 4], ((abs % 4) * 8) as u32)
    }

    fn rmw_sub(&self, off: usize, bits: u32, f: impl Fn(u32) -> u32, order: Ordering) -> u32 {
        let (w, shift) = self.word(off);
        let mask = if bits == 32 {
            u32::MAX
        } else {
            ((1u32 << bits) - 1) << shift
        };
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            let old = (cur & mask) >> shift;
            let new = (cur & !mask) | ((f(old) << shift) & mask);
            match w.compare_exchange(cur, new, order, Ordering::Relaxed) {
                Ok(_) => return old,
                Err(now) => cur = now,
            }
        }
    }

    fn load_sub(&self, off: usize, bits: u32, order: Ordering) -> u32 {
        let (w, shift) = self.word(off);
        let mask = if bits == 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        (w.load(order) >> shift) & mask
    }
}

impl<'a, A: Access> SharedMem<'a, A> {
    /// Length of the view in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty view.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A sub-view of `len` bytes at `off`, or `None` if it does not fit.
    #[inline]
    pub fn get(&self, off: usize, len: usize) -> Option<SharedMem<'a, A>> {
        let end = off.checked_add(len)?;
        (end <= self.len).then(|| self.sub_unchecked(off, len))
    }

    /// A sub-view of `len` bytes at `off`.
    ///
    /// # Panics
    ///
    /// If the range does not fit.
    #[inline]
    #[track_caller]
    pub fn sub(&self, off: usize, len: usize) -> SharedMem<'a, A> {
        check(off, len, self.len);
        self.sub_unchecked(off, len)
    }

    /// The same memory, without the right to write it.
    pub fn read_only(self) -> SharedMem<'a, ReadOnly> {
        SharedMem {
            #[cfg(not(loom))]
            ptr: self.ptr,
            #[cfg(loom)]
            words: self.words,
            #[cfg(loom)]
            base: self.base,
            len: self.len,
            _life: PhantomData,
        }
    }

    /// Atomic load of the byte at `off`.
    #[inline]
    #[track_caller]
    pub fn load_u8(&self, off: usize, order: Ordering) -> u8 {
        check_atomic(off, 1, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds (checked); bytes are always aligned; the memory is only
            // accessed atomically or volatilely by this process (`from_raw_parts` contract).
            unsafe { AtomicU8::from_ptr(self.at(off)) }.load(order)
        }
        #[cfg(loom)]
        {
            self.load_sub(off, 8, order) as u8
        }
    }

    /// Atomic load of the `u16` at `off` (2-aligned).
    #[inline]
    #[track_caller]
    pub fn load_u16(&self, off: usize, order: Ordering) -> u16 {
        check_atomic(off, 2, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and 2-aligned (checked, base is 8-aligned); atomic-only
            // access per the `from_raw_parts` contract.
            unsafe { AtomicU16::from_ptr(self.at(off).cast()) }.load(order)
        }
        #[cfg(loom)]
        {
            self.load_sub(off, 16, order) as u16
        }
    }

    /// Atomic load of the `u32` at `off` (4-aligned).
    #[inline]
    #[track_caller]
    pub fn load_u32(&self, off: usize, order: Ordering) -> u32 {
        check_atomic(off, 4, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and 4-aligned (checked, base is 8-aligned); atomic-only
            // access per the `from_raw_parts` contract.
            unsafe { AtomicU32::from_ptr(self.at(off).cast()) }.load(order)
        }
        #[cfg(loom)]
        {
            self.load_sub(off, 32, order)
        }
    }

    /// Copies `dst.len()` bytes at `off` into private memory, each byte read once.
    ///
    /// The copy is volatile: the compiler may not re-read shared memory later in place of
    /// `dst`, which is what makes a single copy a defence against double fetches.
    #[inline(always)]
    #[track_caller]
    pub fn read_bytes(&self, off: usize, dst: &mut [u8]) {
        check(off, dst.len(), self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: the range is in bounds (checked) and `dst` is private memory that
            // cannot overlap shared memory (it is a Rust reference, which we never form into
            // shared memory).
            unsafe { volatile_copy_in_wide(self.at(off), dst) }
        }
        #[cfg(loom)]
        {
            for (i, b) in dst.iter_mut().enumerate() {
                *b = self.load_sub(off + i, 8, Ordering::Relaxed) as u8;
            }
        }
    }

    /// Copies a wire value out of shared memory (once) into a private `T`.
    #[inline]
    #[track_caller]
    pub fn read<T: FromBytes + IntoBytes>(&self, off: usize) -> T {
        let mut v = T::new_zeroed();
        self.read_bytes(off, v.as_mut_bytes());
        v
    }
}

impl<'a> SharedMem<'a, Writable> {
    /// Atomic store of the byte at `off`.
    #[inline]
    #[track_caller]
    pub fn store_u8(&self, off: usize, v: u8, order: Ordering) {
        check_atomic(off, 1, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds (checked); atomic-only access per `from_raw_parts`; `A` is
            // `Writable`, so the creator promised the memory is writable.
            unsafe { AtomicU8::from_ptr(self.at(off)) }.store(v, order)
        }
        #[cfg(loom)]
        {
            self.rmw_sub(off, 8, |_| v as u32, order);
        }
    }

    /// Atomic store of the `u16` at `off` (2-aligned).
    #[inline]
    #[track_caller]
    pub fn store_u16(&self, off: usize, v: u16, order: Ordering) {
        check_atomic(off, 2, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and aligned (checked); writable, atomic-only access.
            unsafe { AtomicU16::from_ptr(self.at(off).cast()) }.store(v, order)
        }
        #[cfg(loom)]
        {
            self.rmw_sub(off, 16, |_| v as u32, order);
        }
    }

    /// Atomic store of the `u32` at `off` (4-aligned).
    #[inline]
    #[track_caller]
    pub fn store_u32(&self, off: usize, v: u32, order: Ordering) {
        check_atomic(off, 4, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and aligned (checked); writable, atomic-only access.
            unsafe { AtomicU32::from_ptr(self.at(off).cast()) }.store(v, order)
        }
        #[cfg(loom)]
        {
            let (w, _) = self.word(off);
            w.store(v, order)
        }
    }

    /// Atomic compare-and-swap of the `u32` at `off`; returns the previous value either way.
    #[track_caller]
    pub fn compare_exchange_u32(
        &self,
        off: usize,
        current: u32,
        new: u32,
        success: Ordering,
        failure: Ordering,
    ) -> Result<u32, u32> {
        check_atomic(off, 4, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and aligned (checked); writable, atomic-only access.
            unsafe { AtomicU32::from_ptr(self.at(off).cast()) }
                .compare_exchange(current, new, success, failure)
        }
        #[cfg(loom)]
        {
            let (w, _) = self.word(off);
            w.compare_exchange(current, new, success, failure)
        }
    }

    /// Atomic OR into the byte at `off`; returns the previous value.
    #[track_caller]
    pub fn fetch_or_u8(&self, off: usize, bits: u8, order: Ordering) -> u8 {
        check_atomic(off, 1, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds (checked); writable, atomic-only access.
            unsafe { AtomicU8::from_ptr(self.at(off)) }.fetch_or(bits, order)
        }
        #[cfg(loom)]
        {
            self.rmw_sub(off, 8, |o| o | bits as u32, order) as u8
        }
    }

    /// Atomic AND into the byte at `off`; returns the previous value.
    #[track_caller]
    pub fn fetch_and_u8(&self, off: usize, bits: u8, order: Ordering) -> u8 {
        check_atomic(off, 1, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds (checked); writable, atomic-only access.
            unsafe { AtomicU8::from_ptr(self.at(off)) }.fetch_and(bits, order)
        }
        #[cfg(loom)]
        {
            self.rmw_sub(off, 8, |o| o & bits as u32, order) as u8
        }
    }

    /// Atomic AND into the `u16` at `off` (2-aligned); returns the previous value.
    #[track_caller]
    pub fn fetch_and_u16(&self, off: usize, bits: u16, order: Ordering) -> u16 {
        check_atomic(off, 2, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and aligned (checked); writable, atomic-only access.
            unsafe { AtomicU16::from_ptr(self.at(off).cast()) }.fetch_and(bits, order)
        }
        #[cfg(loom)]
        {
            self.rmw_sub(off, 16, |o| o & bits as u32, order) as u16
        }
    }

    /// Atomic AND into the `u32` at `off` (4-aligned); returns the previous value.
    #[track_caller]
    pub fn fetch_and_u32(&self, off: usize, bits: u32, order: Ordering) -> u32 {
        check_atomic(off, 4, self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds and aligned (checked); writable, atomic-only access.
            unsafe { AtomicU32::from_ptr(self.at(off).cast()) }.fetch_and(bits, order)
        }
        #[cfg(loom)]
        {
            let (w, _) = self.word(off);
            w.fetch_and(bits, order)
        }
    }

    /// Copies private bytes into shared memory at `off` (volatile).
    #[inline(always)]
    #[track_caller]
    pub fn write_bytes(&self, off: usize, src: &[u8]) {
        check(off, src.len(), self.len);
        #[cfg(not(loom))]
        {
            // SAFETY: in bounds (checked), writable; `src` is private memory and cannot
            // overlap shared memory.
            unsafe { volatile_copy_out_wide(src, self.at(off)) }
        }
        #[cfg(loom)]
        {
            for (i, b) in src.iter().enumerate() {
                self.rmw_sub(off + i, 8, |_| *b as u32, Ordering::Relaxed);
            }
        }
    }

    /// Copies a private wire value into shared memory at `off`.
    #[inline]
    #[track_caller]
    pub fn write<T: IntoBytes + Immutable>(&self, off: usize, v: &T) {
        self.write_bytes(off, v.as_bytes());
    }

    /// Sets `len` bytes at `off` to `byte` (for zeroing pages before they are shared: XSA-403).
    #[track_caller]
    pub fn fill(&self, off: usize, len: usize, byte: u8) {
        check(off, len, self.len);
        let chunk = [byte; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk.len());
            self.write_bytes(off + done, &chunk[..n]);
            done += n;
        }
    }

    /// Copies `len` bytes from `src` (another shared view) to `off`, through a private bounce
    /// buffer so that each source byte is read exactly once.
    #[track_caller]
    pub fn copy_from<B: Access>(
        &self,
        off: usize,
        src: SharedMem<'_, B>,
        src_off: usize,
        len: usize,
    ) {
        check(off, len, self.len);
        check(src_off, len, src.len);
        let mut buf = [0u8; 512];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            src.read_bytes(src_off + done, &mut buf[..n]);
            self.write_bytes(off + done, &buf[..n]);
            done += n;
        }
    }
}

/// The shape of an array of equal slots in shared memory (a ring's entries): the distance
/// between two slots, a compile-time constant so that slot copies are unrolled.
pub trait SlotLayout {
    /// Bytes from one slot to the next (and the most a slot access may copy). Not zero.
    const STRIDE: usize;
}

/// A view of a power-of-two number of slots of [`SlotLayout::STRIDE`] bytes each, checked
/// to lie inside its [`SharedMem`] once, when it is made ([`SharedMem::slots`]).
///
/// Slots are named by a free-running `u32` index (a ring index) reduced modulo the number of
/// slots (`index & mask`, as `ring.h`'s `MASK_RING_IDX`), so every index names a slot inside
/// the view: accesses need no bounds check. A value copied in or out may be at most a slot
/// long (checked at compile time). Copies are volatile, each byte once, as
/// [`SharedMem::read_bytes`].
pub struct SharedSlots<'a, L: SlotLayout, A: Access = Writable> {
    mem: SharedMem<'a, A>,
    mask: u32,
    _layout: PhantomData<fn() -> L>,
}

impl<L: SlotLayout, A: Access> Clone for SharedSlots<'_, L, A> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<L: SlotLayout, A: Access> Copy for SharedSlots<'_, L, A> {}

impl<L: SlotLayout, A: Access> core::fmt::Debug for SharedSlots<'_, L, A> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedSlots")
            .field("count", &self.count())
            .field("stride", &L::STRIDE)
            .finish()
    }
}

impl<'a, A: Access> SharedMem<'a, A> {
    /// The `count` slots of layout `L` starting at `off`, or `None` if `count` is not a power
    /// of two, the stride is zero, or they do not fit in this view.
    #[inline]
    pub fn slots<L: SlotLayout>(&self, off: usize, count: u32) -> Option<SharedSlots<'a, L, A>> {
        if !count.is_power_of_two() || L::STRIDE == 0 {
            return None;
        }
        let bytes = (count as usize).checked_mul(L::STRIDE)?;
        Some(SharedSlots {
            mem: self.get(off, bytes)?,
            mask: count - 1,
            _layout: PhantomData,
        })
    }
}

impl<'a, L: SlotLayout, A: Access> SharedSlots<'a, L, A> {
    /// The number of slots (a power of two).
    #[inline]
    pub fn count(&self) -> u32 {
        self.mask + 1
    }

    /// Byte offset (in the view) of the slot `index` names, and a proof-carrying comment:
    /// `(index & mask) * STRIDE + STRIDE <= count * STRIDE <= mem.len` (checked in `slots`).
    #[inline(always)]
    fn offset(&self, index: u32) -> usize {
        (index & self.mask) as usize * L::STRIDE
    }

    /// Copies a `T` out of the start of slot `index mod count` (once, volatile).
    #[inline(always)]
    pub fn read<T: FromBytes + IntoBytes>(&self, index: u32) -> T {
        const {
            assert!(
                core::mem::size_of::<T>() <= L::STRIDE,
                "value larger than a slot"
            )
        };
        let mut v = T::new_zeroed();
        let off = self.offset(index);
        #[cfg(not(loom))]
        {
            // SAFETY: `off + size_of::<T>() <= off + STRIDE <= mem.len` (`offset`, and the
            // compile-time check above), so the range is inside the view; `v` is private
            // memory and cannot overlap it.
            unsafe { volatile_copy_in(self.mem.at(off), v.as_mut_bytes()) }
        }
        #[cfg(loom)]
        self.mem.read_bytes(off, v.as_mut_bytes());
        v
    }
}

impl<'a, L: SlotLayout> SharedSlots<'a, L, Writable> {
    /// Copies `v` into the start of slot `index mod count` (once, volatile).
    #[inline(always)]
    pub fn write<T: IntoBytes + Immutable>(&self, index: u32, v: &T) {
        const {
            assert!(
                core::mem::size_of::<T>() <= L::STRIDE,
                "value larger than a slot"
            )
        };
        let off = self.offset(index);
        #[cfg(not(loom))]
        {
            // SAFETY: in the view, as in `read`; writable (`A = Writable`); `v` is private.
            unsafe { volatile_copy_out(v.as_bytes(), self.mem.at(off)) }
        }
        #[cfg(loom)]
        self.mem.write_bytes(off, v.as_bytes());
    }
}

/// A plain word the volatile copies move in one access: `u16`, `u32`, `u64`, and on x86-64
/// the 16-byte SSE2 vector (part of the x86-64 baseline), which is what C compilers use for
/// struct copies.
///
/// # Safety
///
/// Implementors are plain integers or integer vectors: every bit pattern is valid and they
/// have no padding.
#[cfg(not(loom))]
unsafe trait Word: Copy {}
// SAFETY: integers: every bit pattern valid, no padding.
#[cfg(not(loom))]
unsafe impl Word for u16 {}
// SAFETY: as for `u16`.
#[cfg(not(loom))]
unsafe impl Word for u32 {}
// SAFETY: as for `u16`.
#[cfg(not(loom))]
unsafe impl Word for u64 {}

/// A word at any address: `read_volatile`/`write_volatile` through a pointer to this type
/// need no alignment, and the compiler emits one unaligned access of the word's size where
/// the target has them (x86-64, AArch64: what a C compiler emits for a struct copy), or
/// splits it into smaller accesses where it has not. Either way each byte is accessed once.
#[cfg(not(loom))]
#[repr(C, packed)]
#[derive(Clone, Copy)]
struct Unaligned<W: Word>(W);

/// Reads the word at `src + i` with a single volatile load and stores it into `dst[i..]`.
///
/// # Safety
///
/// `src + i` must be valid for reads of `size_of::<W>()` bytes, and
/// `i + size_of::<W>() <= dst.len()`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn load_word<W: Word>(src: *const u8, dst: &mut [u8], i: usize) {
    // SAFETY: valid for reads (caller); `Unaligned<W>` has alignment 1; `W` has no invalid
    // bit patterns (`Word`).
    let w = unsafe { src.add(i).cast::<Unaligned<W>>().read_volatile() };
    debug_assert!(i + core::mem::size_of::<W>() <= dst.len());
    // SAFETY: `dst[i..i + size_of::<W>()]` is private memory inside `dst` (caller); an
    // unaligned write needs no alignment.
    unsafe { dst.as_mut_ptr().add(i).cast::<W>().write_unaligned(w.0) };
}

/// Takes the word at `src[i..]` and writes it to `dst + i` with a single volatile store.
///
/// # Safety
///
/// `dst + i` must be valid for writes of `size_of::<W>()` bytes, and
/// `i + size_of::<W>() <= src.len()`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn store_word<W: Word>(src: &[u8], dst: *mut u8, i: usize) {
    debug_assert!(i + core::mem::size_of::<W>() <= src.len());
    // SAFETY: `src[i..i + size_of::<W>()]` is private memory inside `src` (caller); any
    // bytes make a valid `W` (`Word`); an unaligned read needs no alignment.
    let w = unsafe { src.as_ptr().add(i).cast::<W>().read_unaligned() };
    // SAFETY: valid for writes (caller); `Unaligned<W>` has alignment 1.
    unsafe {
        dst.add(i)
            .cast::<Unaligned<W>>()
            .write_volatile(Unaligned(w))
    };
}

/// Reads the 16 bytes at `src + i` with one `movdqu` and stores them into `dst[i..]`.
///
/// An `asm!` block rather than a volatile read of an [`Unaligned`] vector: LLVM lowers a
/// volatile access of a 16-byte packed value through a stack slot (two more moves a word,
/// which doubled the cost of a 64-byte ring write), while the block is the one instruction.
/// It is as good as volatile for our purpose: the block is not `pure`, so the compiler runs
/// it exactly as often as the program says, neither dropping nor repeating the access.
///
/// # Safety
///
/// `src + i` must be valid for reads of 16 bytes, and `i + 16 <= dst.len()`.
#[cfg(all(not(loom), target_arch = "x86_64"))]
#[inline(always)]
unsafe fn load_vec(src: *const u8, dst: &mut [u8], i: usize) {
    use core::arch::x86_64::__m128i;
    let w: __m128i;
    // SAFETY: `src + i` is valid for a 16-byte read (caller); `movdqu` needs no alignment
    // and touches nothing else (readonly, no stack).
    unsafe {
        core::arch::asm!(
            "movdqu {w}, xmmword ptr [{p}]",
            p = in(reg) src.add(i),
            w = out(xmm_reg) w,
            options(nostack, preserves_flags, readonly),
        )
    };
    debug_assert!(i + 16 <= dst.len());
    // SAFETY: `dst[i..i + 16]` is private memory inside `dst` (caller); an unaligned write
    // needs no alignment.
    unsafe { dst.as_mut_ptr().add(i).cast::<__m128i>().write_unaligned(w) };
}

/// Takes the 16 bytes at `src[i..]` and writes them to `dst + i` with one `movdqu` (see
/// [`load_vec`] for why in assembly).
///
/// # Safety
///
/// `dst + i` must be valid for writes of 16 bytes, and `i + 16 <= src.len()`.
#[cfg(all(not(loom), target_arch = "x86_64"))]
#[inline(always)]
unsafe fn store_vec(src: &[u8], dst: *mut u8, i: usize) {
    use core::arch::x86_64::__m128i;
    debug_assert!(i + 16 <= src.len());
    // SAFETY: `src[i..i + 16]` is private memory inside `src` (caller); any bytes make a
    // valid vector; an unaligned read needs no alignment.
    let w = unsafe { src.as_ptr().add(i).cast::<__m128i>().read_unaligned() };
    // SAFETY: `dst + i` is valid for a 16-byte write (caller); `movdqu` needs no alignment
    // and writes nothing else.
    unsafe {
        core::arch::asm!(
            "movdqu xmmword ptr [{p}], {w}",
            p = in(reg) dst.add(i),
            w = in(xmm_reg) w,
            options(nostack, preserves_flags),
        )
    };
}

/// How a volatile copy of `n` bytes proceeds: calls `word(size, i)` for each access, in
/// order, covering `[0, n)` exactly once: 16-byte vectors (x86-64) four a turn, then at most
/// two more vectors, then `u64`s (at most one on x86-64), then at most one `u32`, one `u16`
/// and one byte.
///
/// The plan depends on `n` only, never on the address (the words may be unaligned), so for a
/// wire struct, whose size is a constant, the compiler unrolls the copy into straight-line
/// loads or stores with no branch: a 12-byte netif slot is a `u64` and a `u32`, a 4-byte
/// response one `u32`, a 112-byte blkif slot seven vectors (as a C compiler copies them).
/// For a length known only at run time, what is left after the four-vector turns takes one
/// test per power of two (the tail of a 64-byte ring write cost more than its copy when it
/// was a loop per word size).
#[cfg(not(loom))]
#[inline(always)]
fn word_plan(n: usize, mut word: impl FnMut(usize, usize)) {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        // Four vectors a turn: long copies (ring payloads) run near memcpy speed.
        while i + 64 <= n {
            word(16, i);
            word(16, i + 16);
            word(16, i + 32);
            word(16, i + 48);
            i += 64;
        }
        // Fewer than 64 bytes left.
        if (n - i) & 32 != 0 {
            word(16, i);
            word(16, i + 16);
            i += 32;
        }
        if (n - i) & 16 != 0 {
            word(16, i);
            i += 16;
        }
    }
    // Fewer than 16 bytes left on x86-64: one `u64` at most.
    #[cfg(target_arch = "x86_64")]
    if (n - i) & 8 != 0 {
        word(8, i);
        i += 8;
    }
    #[cfg(not(target_arch = "x86_64"))]
    while i + 8 <= n {
        word(8, i);
        i += 8;
    }
    for size in [4, 2, 1] {
        if (n - i) & size != 0 {
            word(size, i);
            i += size;
        }
    }
}

/// Volatile copy from shared memory into private memory, each shared byte read exactly once,
/// in whole words ([`word_plan`]).
///
/// # Safety
///
/// `src` must be valid for reads of `dst.len()` bytes and must not overlap `dst`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn volatile_copy_in(src: *const u8, dst: &mut [u8]) {
    // Every word `word_plan` gives lies inside `[0, dst.len())`: valid for reads (caller)
    // and within `dst`, which is what each access below needs.
    word_plan(dst.len(), |size, i| match size {
        // SAFETY: in range (above).
        1 => dst[i] = unsafe { src.add(i).read_volatile() },
        // SAFETY: in range (above).
        2 => unsafe { load_word::<u16>(src, dst, i) },
        // SAFETY: in range (above).
        4 => unsafe { load_word::<u32>(src, dst, i) },
        // SAFETY: in range (above).
        8 => unsafe { load_word::<u64>(src, dst, i) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: in range (above).
        _ => unsafe { load_vec(src, dst, i) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("no 16-byte words off x86-64"),
    });
}

/// Volatile copy into shared memory, the mirror of [`volatile_copy_in`] (each shared byte
/// written exactly once, in whole words).
///
/// # Safety
///
/// `dst` must be valid for writes of `src.len()` bytes and must not overlap `src`.
#[cfg(not(loom))]
#[inline(always)]
unsafe fn volatile_copy_out(src: &[u8], dst: *mut u8) {
    // Every word `word_plan` gives lies inside `[0, src.len())`: valid for writes (caller)
    // and within `src`, which is what each access below needs.
    word_plan(src.len(), |size, i| match size {
        // SAFETY: in range (above).
        1 => unsafe { dst.add(i).write_volatile(src[i]) },
        // SAFETY: in range (above).
        2 => unsafe { store_word::<u16>(src, dst, i) },
        // SAFETY: in range (above).
        4 => unsafe { store_word::<u32>(src, dst, i) },
        // SAFETY: in range (above).
        8 => unsafe { store_word::<u64>(src, dst, i) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: in range (above).
        _ => unsafe { store_vec(src, dst, i) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("no 16-byte words off x86-64"),
    });
}

/// Copies of at least this many bytes use 32-byte AVX2 words where the CPU has them.
#[cfg(not(loom))]
const WIDE_MIN: usize = 256;

/// [`volatile_copy_in`], in 32-byte AVX2 words for long copies on CPUs that have them (ring
/// payloads: about twice the throughput of 16-byte words, and under QEMU's TCG, which
/// emulates AVX2 with host vectors, about three times).
///
/// # Safety
///
/// As for [`volatile_copy_in`].
#[cfg(not(loom))]
#[inline(always)]
unsafe fn volatile_copy_in_wide(src: *const u8, dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if dst.len() >= WIDE_MIN && avx2::available() {
        // SAFETY: the caller's guarantees, and AVX2 is available (checked).
        unsafe { avx2::copy_in(src, dst) };
        return;
    }
    // SAFETY: the caller's guarantees.
    unsafe { volatile_copy_in(src, dst) }
}

/// [`volatile_copy_out`], in 32-byte AVX2 words for long copies on CPUs that have them.
///
/// # Safety
///
/// As for [`volatile_copy_out`].
#[cfg(not(loom))]
#[inline(always)]
unsafe fn volatile_copy_out_wide(src: &[u8], dst: *mut u8) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= WIDE_MIN && avx2::available() {
        // SAFETY: the caller's guarantees, and AVX2 is available (checked).
        unsafe { avx2::copy_out(src, dst) };
        return;
    }
    // SAFETY: the caller's guarantees.
    unsafe { volatile_copy_out(src, dst) }
}

/// AVX2 volatile copies: each shared byte is still accessed exactly once, in whole 32-byte
/// words, then the baseline plan for the last 0-31 bytes.
#[cfg(all(not(loom), target_arch = "x86_64"))]
mod avx2 {
    use super::{volatile_copy_in, volatile_copy_out};
    use core::arch::x86_64::{__m256i, _mm256_zeroupper};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// 0: not yet known, 1: no AVX2, 2: AVX2.
    static STATE: AtomicU8 = AtomicU8::new(0);

    /// Whether the CPU has AVX2 and the OS saves the YMM registers (CPUID.1:ECX OSXSAVE and
    /// AVX, XCR0 bits 1-2, CPUID.7.0:EBX bit 5), found once.
    #[inline(always)]
    pub fn available() -> bool {
        match STATE.load(Ordering::Relaxed) {
            0 => detect(),
            s => s == 2,
        }
    }

    #[cold]
    #[inline(never)]
    fn detect() -> bool {
        use core::arch::x86_64::{__cpuid, __cpuid_count};
        let max = __cpuid(0).eax;
        let l1 = __cpuid(1);
        let osxsave_avx = l1.ecx & (1 << 27) != 0 && l1.ecx & (1 << 28) != 0;
        let yes = max >= 7
            && osxsave_avx
            // SAFETY: OSXSAVE is set, so the OS enabled XGETBV.
            && unsafe { xcr0() } & 0b110 == 0b110
            && __cpuid_count(7, 0).ebx & (1 << 5) != 0;
        STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
        yes
    }

    /// XCR0.
    ///
    /// # Safety
    ///
    /// The CPU must have XGETBV enabled (CPUID.1:ECX.OSXSAVE).
    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        // SAFETY: XGETBV is enabled (caller); register 0 (XCR0) always exists.
        unsafe { core::arch::x86_64::_xgetbv(0) }
    }

    /// The 32-byte words of a wide copy of `n` bytes: calls `word(i)` for each, in order,
    /// four a turn, and returns where they stop (the last `n - i < 32` bytes are the
    /// caller's). Shared by both directions, as [`word_plan`](super::word_plan) is.
    #[inline(always)]
    fn wide_plan(n: usize, mut word: impl FnMut(usize)) -> usize {
        let mut i = 0;
        while i + 128 <= n {
            word(i);
            word(i + 32);
            word(i + 64);
            word(i + 96);
            i += 128;
        }
        while i + 32 <= n {
            word(i);
            i += 32;
        }
        i
    }

    /// [`load_vec`](super::load_vec) for 32 bytes: one `vmovdqu` from `src + i` into
    /// `dst[i..]`.
    ///
    /// # Safety
    ///
    /// `src + i` must be valid for reads of 32 bytes, `i + 32 <= dst.len()`, and the CPU
    /// has AVX.
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn load_ymm(src: *const u8, dst: &mut [u8], i: usize) {
        let w: __m256i;
        // SAFETY: `src + i` is valid for a 32-byte read (caller); `vmovdqu` needs no
        // alignment and touches nothing else.
        unsafe {
            core::arch::asm!(
                "vmovdqu {w}, ymmword ptr [{p}]",
                p = in(reg) src.add(i),
                w = out(ymm_reg) w,
                options(nostack, preserves_flags, readonly),
            )
        };
        debug_assert!(i + 32 <= dst.len());
        // SAFETY: `dst[i..i + 32]` is private memory inside `dst` (caller).
        unsafe { dst.as_mut_ptr().add(i).cast::<__m256i>().write_unaligned(w) };
    }

    /// [`store_vec`](super::store_vec) for 32 bytes: one `vmovdqu` from `src[i..]` to
    /// `dst + i`.
    ///
    /// # Safety
    ///
    /// `dst + i` must be valid for writes of 32 bytes, `i + 32 <= src.len()`, and the CPU
    /// has AVX.
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn store_ymm(src: &[u8], dst: *mut u8, i: usize) {
        debug_assert!(i + 32 <= src.len());
        // SAFETY: `src[i..i + 32]` is private memory inside `src` (caller); any bytes make
        // a valid vector.
        let w = unsafe { src.as_ptr().add(i).cast::<__m256i>().read_unaligned() };
        // SAFETY: `dst + i` is valid for a 32-byte write (caller); `vmovdqu` needs no
        // alignment and writes nothing else.
        unsafe {
            core::arch::asm!(
                "vmovdqu ymmword ptr [{p}], {w}",
                p = in(reg) dst.add(i),
                w = in(ymm_reg) w,
                options(nostack, preserves_flags),
            )
        };
    }

    /// # Safety
    ///
    /// As for [`volatile_copy_in`](super::volatile_copy_in), and the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn copy_in(src: *const u8, dst: &mut [u8]) {
        // Every word `wide_plan` gives lies inside `[0, dst.len())`: valid for reads
        // (caller) and within `dst`.
        // SAFETY: in range (above).
        let i = wide_plan(dst.len(), |i| unsafe { load_ymm(src, dst, i) });
        // The tail's words are legacy-SSE `movdqu` (assembly text, not re-encoded): clear
        // the upper halves first, or each costs an SSE/AVX transition (a false dependency
        // on newer cores). The compiler does not know the assembly touched YMM registers.
        _mm256_zeroupper();
        // SAFETY: `src + i` is valid for the bytes left, which `dst[i..]` holds.
        unsafe { volatile_copy_in(src.add(i), &mut dst[i..]) }
    }

    /// # Safety
    ///
    /// As for [`volatile_copy_out`](super::volatile_copy_out), and the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn copy_out(src: &[u8], dst: *mut u8) {
        // Every word `wide_plan` gives lies inside `[0, src.len())`: valid for writes
        // (caller) and within `src`.
        // SAFETY: in range (above).
        let i = wide_plan(src.len(), |i| unsafe { store_ymm(src, dst, i) });
        // As in `copy_in`.
        _mm256_zeroupper();
        // SAFETY: `dst + i` is valid for the bytes left, which `src[i..]` holds.
        unsafe { volatile_copy_out(&src[i..], dst.add(i)) }
    }
}

/// An owned, zero-initialised, page-aligned allocation meant to be shared: page memory,
/// grant-table frames, simulated rings.
///
/// It is only reachable through [`SharedMem`] views, so handing it to a peer never creates
/// aliasing references.
pub struct SharedRegion {
    #[cfg(not(loom))]
    ptr: NonNull<u8>,
    #[cfg(loom)]
    words: alloc::boxed::Box<[AtomicU32]>,
    len: usize,
}

// SAFETY: the region owns its allocation and only hands out `SharedMem` views, whose accesses
// are atomic or volatile; nothing in it is tied to a thread.
#[cfg(not(loom))]
unsafe impl Send for SharedRegion {}
// SAFETY: see `Send`: shared use goes only through atomic/volatile accessors.
#[cfg(not(loom))]
unsafe impl Sync for SharedRegion {}

impl core::fmt::Debug for SharedRegion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SharedRegion")
            .field("len", &self.len)
            .finish()
    }
}

#[cfg(not(loom))]
fn region_layout(len: usize) -> core::alloc::Layout {
    core::alloc::Layout::from_size_align(len.max(1), crate::abi::PAGE_SIZE)
        .expect("region size overflows a layout")
}

impl SharedRegion {
    /// Allocates `len` zeroed bytes aligned to a page.
    ///
    /// # Panics
    ///
    /// If `len` is not a multiple of 8, or the allocation fails.
    pub fn new_zeroed(len: usize) -> Self {
        assert!(len % 8 == 0, "shared region length must be a multiple of 8");
        #[cfg(not(loom))]
        {
            let layout = region_layout(len);
            // SAFETY: the layout has non-zero size (`max(1)`).
            let raw = unsafe { alloc::alloc::alloc_zeroed(layout) };
            let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::alloc::handle_alloc_error(layout));
            SharedRegion { ptr, len }
        }
        #[cfg(loom)]
        {
            let words = (0..len / 4).map(|_| AtomicU32::new(0)).collect();
            SharedRegion { words, len }
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty region.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A writable view of the whole region.
    #[inline]
    pub fn mem(&self) -> SharedMem<'_, Writable> {
        #[cfg(not(loom))]
        {
            // SAFETY: the region owns `len` bytes at `ptr`, page-aligned, alive for the borrow
            // of `self`; it never hands out references, only views.
            unsafe { SharedMem::from_raw_parts(self.ptr, self.len) }
        }
        #[cfg(loom)]
        {
            SharedMem {
                words: &self.words,
                base: 0,
                len: self.len,
                _life: PhantomData,
            }
        }
    }
}

#[cfg(not(loom))]
impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new_zeroed` with exactly this layout, freed once.
        unsafe { alloc::alloc::dealloc(self.ptr.as_ptr(), region_layout(self.len)) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn atomics_and_copies_round_trip() {
        let r = SharedRegion::new_zeroed(64);
        let m = r.mem();
        m.store_u32(4, 0xdead_beef, Ordering::Release);
        assert_eq!(m.load_u32(4, Ordering::Acquire), 0xdead_beef);
        assert_eq!(m.load_u16(4, Ordering::Relaxed), 0xbeef);
        assert_eq!(m.load_u8(7, Ordering::Relaxed), 0xde);
        assert_eq!(m.fetch_or_u8(0, 3, Ordering::SeqCst), 0);
        assert_eq!(m.fetch_and_u8(0, !1, Ordering::SeqCst), 3);
        assert_eq!(m.load_u8(0, Ordering::Relaxed), 2);
        assert_eq!(
            m.compare_exchange_u32(4, 1, 2, Ordering::SeqCst, Ordering::Relaxed),
            Err(0xdead_beef)
        );
        let src: [u8; 29] = core::array::from_fn(|i| i as u8 + 1);
        m.write_bytes(3, &src);
        let mut back = [0u8; 29];
        m.read_bytes(3, &mut back);
        assert_eq!(back, src);
        let v: [u8; 4] = m.sub(3, 8).read(1);
        assert_eq!(v, [2, 3, 4, 5]);
        m.fill(0, 64, 0xaa);
        assert_eq!(m.load_u32(60, Ordering::Relaxed), 0xaaaa_aaaa);
    }

    /// The word paths of the volatile copies (every 4-aligned shape, each 16-byte phase) and
    /// the byte paths: every byte lands where it belongs and nothing around it is touched.
    #[test]
    fn volatile_copies_cover_exactly_the_range_at_every_alignment() {
        let r = SharedRegion::new_zeroed(512);
        let m = r.mem();
        for off in 0..40 {
            for len in 0..=130 {
                m.fill(0, 512, 0xee);
                let src: alloc::vec::Vec<u8> = (0..len).map(|i| (i as u8) ^ 0x5a).collect();
                m.write_bytes(off, &src);
                let mut all = [0u8; 512];
                m.read_bytes(0, &mut all);
                assert!(all[..off].iter().all(|&b| b == 0xee), "before {off}+{len}");
                assert_eq!(&all[off..off + len], &src[..], "{off}+{len}");
                assert!(
                    all[off + len..].iter().all(|&b| b == 0xee),
                    "after {off}+{len}"
                );
                let mut back = alloc::vec![0u8; len];
                m.read_bytes(off, &mut back);
                assert_eq!(back, src, "read {off}+{len}");
            }
        }
    }

    /// The plan of the volatile copies tiles `[0, n)`: words in order, each starting where
    /// the last ended, none past the end, so each byte is accessed exactly once.
    #[test]
    fn word_plans_tile_the_range_exactly_once() {
        for n in 0..300 {
            let mut next = 0;
            word_plan(n, |size, i| {
                assert!(matches!(size, 1 | 2 | 4 | 8 | 16), "size {size} for {n}");
                assert_eq!(i, next, "word at {i}, expected {next}, for {n}");
                next = i + size;
            });
            assert_eq!(next, n, "plan for {n} ends at {next}");
        }
    }

    /// The wide (AVX2) copies, taken from `WIDE_MIN` bytes on: every 32-byte phase, every
    /// tail length, exactly the range.
    #[test]
    fn wide_copies_cover_exactly_the_range_at_every_alignment() {
        let r = SharedRegion::new_zeroed(1024);
        let m = r.mem();
        for off in 0..33 {
            for len in (WIDE_MIN..WIDE_MIN + 70).chain([511, 512, 640, 900]) {
                m.fill(0, 1024, 0xee);
                let src: alloc::vec::Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                m.write_bytes(off, &src);
                let mut all = [0u8; 1024];
                m.read_bytes(0, &mut all);
                assert!(all[..off].iter().all(|&b| b == 0xee), "before {off}+{len}");
                assert_eq!(&all[off..off + len], &src[..], "{off}+{len}");
                assert!(
                    all[off + len..].iter().all(|&b| b == 0xee),
                    "after {off}+{len}"
                );
                let mut back = alloc::vec![0u8; len];
                m.read_bytes(off, &mut back);
                assert_eq!(back, src, "read {off}+{len}");
            }
        }
    }

    /// Slot views: checked once when made (power of two, inside the view), then every `u32`
    /// index names a slot inside them (modulo the count), copies go exactly to that slot.
    #[test]
    fn slots_are_checked_once_and_wrap_by_mask() {
        struct Twelve;
        impl SlotLayout for Twelve {
            const STRIDE: usize = 12;
        }
        let r = SharedRegion::new_zeroed(128);
        let m = r.mem();
        assert!(m.slots::<Twelve>(64, 3).is_none(), "not a power of two");
        assert!(m.slots::<Twelve>(0, 0).is_none());
        assert!(m.slots::<Twelve>(40, 8).is_none(), "40 + 96 > 128");
        assert!(m.slots::<Twelve>(usize::MAX, 1).is_none());
        let s = m.slots::<Twelve>(32, 8).unwrap();
        assert_eq!(s.count(), 8);
        m.fill(0, 128, 0xee);
        for i in 0..8u32 {
            // Indices far apart name the same slot modulo 8, across the u32 wrap.
            s.write(i.wrapping_sub(8 * 1000), &[i as u8 + 1; 12]);
        }
        s.write(u32::MAX, &[0x77u8; 4]); // slot 7, first 4 bytes only
        let mut all = [0u8; 128];
        m.read_bytes(0, &mut all);
        assert!(all[..32].iter().all(|&b| b == 0xee));
        for i in 0..8 {
            let want = if i == 7 { 8 } else { i as u8 + 1 };
            let slot = &all[32 + 12 * i..32 + 12 * (i + 1)];
            let head = if i == 7 { 0x77 } else { want };
            assert!(slot[..4].iter().all(|&b| b == head), "slot {i}");
            assert!(slot[4..].iter().all(|&b| b == want), "slot {i}");
            let v: [u8; 12] = s.read(i as u32 + 8);
            assert_eq!(&v[..], slot);
        }
    }

    #[test]
    fn views_are_bounds_checked() {
        let r = SharedRegion::new_zeroed(16);
        let m = r.mem();
        assert!(m.get(8, 8).is_some());
        assert!(m.get(9, 8).is_none());
        assert!(m.get(usize::MAX, 2).is_none());
        let res = std::panic::catch_unwind(|| r.mem().load_u32(14, Ordering::Relaxed));
        assert!(res.is_err());
        let res = std::panic::catch_unwind(|| r.mem().load_u32(2, Ordering::Relaxed));
        assert!(res.is_err(), "misaligned atomic must be refused");
    }

    #[test]
    fn copy_from_goes_through_private_memory() {
        let a = SharedRegion::new_zeroed(1024);
        let b = SharedRegion::new_zeroed(1024);
        let data: [u8; 700] = core::array::from_fn(|i| (i * 7) as u8);
        a.mem().write_bytes(10, &data);
        b.mem().copy_from(100, a.mem().read_only(), 10, 700);
        let mut out = [0u8; 700];
        b.mem().read_bytes(100, &mut out);
        assert_eq!(out, data);
    }
}
