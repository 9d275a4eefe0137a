//! Type-level access rights: [`ReadOnly`] and [`Writable`].
//!
//! They parameterise grants ([`crate::Granted`]), foreign mappings ([`crate::ForeignMap`]) and
//! shared-memory views ([`crate::SharedMem`]), so that a read-only grant and a writable one,
//! or a read-only mapping and a writable one, are different types (DESIGN invariant 3). The
//! trait is sealed: no other access kind can exist.

mod sealed {
    pub trait Sealed {}
}

/// An access right. Sealed: implemented only by [`ReadOnly`] and [`Writable`].
pub trait Access: sealed::Sealed + Send + Sync + 'static {
    /// True for [`ReadOnly`].
    const READONLY: bool;
    /// A name for messages.
    const NAME: &'static str;
}

/// The peer (or we, through a mapping) may only read.
#[derive(Debug)]
pub enum ReadOnly {}

/// The peer (or we, through a mapping) may read and write.
#[derive(Debug)]
pub enum Writable {}

impl sealed::Sealed for ReadOnly {}
impl sealed::Sealed for Writable {}

impl Access for ReadOnly {
    const READONLY: bool = true;
    const NAME: &'static str = "read-only";
}

impl Access for Writable {
    const READONLY: bool = false;
    const NAME: &'static str = "writable";
}
