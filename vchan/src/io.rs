//! `std::io::Read` and `Write` for a connected channel (feature `std`).
//!
//! Both block up to [`Options::timeout`](crate::Options::timeout). A read returns `Ok(0)` at
//! the end of the stream; errors map to `std::io::ErrorKind`s (`WouldBlock`, `TimedOut`,
//! `BrokenPipe` after the peer closed, `ConnectionAborted` for a broken channel).

use crate::channel::{Side, Vchan};
use xen_xenbus::{EventChannels, Xenstore};

impl<S: Side, E: EventChannels, X: Xenstore> std::io::Read for Vchan<S, E, X> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Vchan::read(self, buf).map_err(Into::into)
    }
}

impl<S: Side, E: EventChannels, X: Xenstore> std::io::Write for Vchan<S, E, X> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Vchan::write(self, buf).map_err(Into::into)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        // A plain write is published and signalled before it returns; this signals for bytes
        // `write_more` held back.
        Vchan::flush(self).map_err(Into::into)
    }
}
