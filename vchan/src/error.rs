//! Typed errors of the channel.

use crate::abi::LayoutError;
use crate::ring::Broken;
use alloc::string::String;
use xen_gnttab::GrantError;
use xen_xenbus::{EvtchnError, XenbusError};

/// Everything a vchan operation can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VchanError {
    /// A non-blocking call found nothing to read or no room to write.
    #[error("operation would block")]
    WouldBlock,
    /// A blocking call (or a connect or accept) ran out of time.
    #[error("timed out")]
    TimedOut,
    /// Writing after the peer closed its end.
    #[error("the peer closed the channel")]
    PeerClosed,
    /// The peer wrote impossible values into shared memory; the channel is disconnected
    /// and stays broken.
    #[error("channel broken: {0}")]
    Broken(#[from] Broken),
    /// A packet larger than the ring can never be sent or received whole.
    #[error("packet of {len} bytes does not fit a ring of {ring}")]
    TooLarge {
        /// The packet.
        len: usize,
        /// The ring.
        ring: usize,
    },
    /// The orders (or sizes) do not describe a valid channel.
    #[error("bad ring layout: {0}")]
    Layout(#[from] LayoutError),
    /// The server's xenstore entries are unusable (a zero ref or port, unparsable values).
    #[error("bad rendezvous at {path}: {why}")]
    Rendezvous {
        /// The xenstore directory.
        path: String,
        /// What was wrong.
        why: &'static str,
    },
    /// The shared page is not a channel waiting for a client (its live bytes say otherwise).
    #[error("shared page not ready: server live {srv_live}, client live {cli_live}")]
    NotListening {
        /// `srv_live` as read.
        srv_live: u8,
        /// `cli_live` as read.
        cli_live: u8,
    },
    /// Xenstore failed.
    #[error(transparent)]
    Xenbus(#[from] XenbusError),
    /// The event channel failed.
    #[error("event channel: {0}")]
    Evtchn(#[from] EvtchnError),
    /// Granting or mapping failed.
    #[error("grant: {0}")]
    Grant(#[from] GrantError),
}

#[cfg(feature = "std")]
impl From<VchanError> for std::io::Error {
    fn from(e: VchanError) -> Self {
        use std::io::ErrorKind;
        let kind = match &e {
            VchanError::WouldBlock => ErrorKind::WouldBlock,
            VchanError::TimedOut => ErrorKind::TimedOut,
            VchanError::PeerClosed => ErrorKind::BrokenPipe,
            VchanError::Broken(_) => ErrorKind::ConnectionAborted,
            VchanError::TooLarge { .. } | VchanError::Layout(_) => ErrorKind::InvalidInput,
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}
