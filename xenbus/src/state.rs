//! `XenbusState` (`xen/include/public/io/xenbus.h`).

use core::fmt;

/// The state a frontend or backend publishes in its `state` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum XenbusState {
    /// 0: not known (also: the node is being created).
    Unknown = 0,
    /// 1: the device is being set up.
    Initialising = 1,
    /// 2: a backend waits for the frontend's ring details (and may wait for hotplug).
    InitWait = 2,
    /// 3: the frontend has published its ring details (blkfront; netfront skips this).
    Initialised = 3,
    /// 4: ready for I/O.
    Connected = 4,
    /// 5: shutting down.
    Closing = 5,
    /// 6: shut down.
    Closed = 6,
    /// 7: reconfiguration requested.
    Reconfiguring = 7,
    /// 8: reconfigured.
    Reconfigured = 8,
}

impl XenbusState {
    /// All states, by value.
    pub const ALL: [XenbusState; 9] = [
        XenbusState::Unknown,
        XenbusState::Initialising,
        XenbusState::InitWait,
        XenbusState::Initialised,
        XenbusState::Connected,
        XenbusState::Closing,
        XenbusState::Closed,
        XenbusState::Reconfiguring,
        XenbusState::Reconfigured,
    ];

    /// The state with this number, if it is one.
    pub fn from_u64(v: u64) -> Option<Self> {
        usize::try_from(v)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// The number written to xenstore.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// The decimal string written to the `state` node.
    pub const fn as_str(self) -> &'static str {
        match self {
            XenbusState::Unknown => "0",
            XenbusState::Initialising => "1",
            XenbusState::InitWait => "2",
            XenbusState::Initialised => "3",
            XenbusState::Connected => "4",
            XenbusState::Closing => "5",
            XenbusState::Closed => "6",
            XenbusState::Reconfiguring => "7",
            XenbusState::Reconfigured => "8",
        }
    }

    /// Closing or Closed.
    pub const fn is_closing_or_closed(self) -> bool {
        matches!(self, XenbusState::Closing | XenbusState::Closed)
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_xenbus_h() {
        for (i, s) in XenbusState::ALL.iter().enumerate() {
            assert_eq!(s.as_u8() as usize, i);
            assert_eq!(s.as_str().parse::<usize>().unwrap(), i);
            assert_eq!(XenbusState::from_u64(i as u64), Some(*s));
        }
        assert_eq!(XenbusState::from_u64(9), None);
        assert_eq!(XenbusState::from_u64(u64::MAX), None);
    }
}
